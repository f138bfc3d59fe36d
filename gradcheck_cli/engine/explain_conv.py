"""conv2d's backward as the worked examples write it, for a layer declaring ``ConvSums``
(pure data; engine/explain.py puts it in a step).

For one example, o (C, H, W) the layer's input, d (O, Ho, Wo) its delta, w (O, C, kh, kw):

- the kernel gradient ``dE/dw[k,c,m,n] = sum_ij d[k,i,j] * o[c, s_h i + m, s_w j + n]``
  and the bias gradient ``dE/db[k] = sum_ij d[k,i,j]``, entry by entry;
- the input gradient as the sum over every output that read a pixel of ``d * w``;
- the same input gradient by the textbook identity: the FULL convolution of the delta
  with the kernel, written as the delta zero-padded by (kh - 1, kw - 1) and
  cross-correlated with the kernel rotated by 180 degrees. With a stride s > 1 the
  delta is first dilated (s - 1 zeros between its entries); with padding p the result
  is the padded input's, so p rows and columns are cut from each side; rows and
  columns no window reached get 0. Every entry is compared with what backward gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..network import Node
from .sums import Accumulation, Factor, Listing, Sum, index_label, make_sum


@dataclass
class FullConvolution:
    """The input gradient by the full-convolution identity (module docstring).

    steps: what is done to the delta, in words, in order; rotated: rot180(w) (O, C, kh,
    kw); padded: the delta dilated and zero-padded (O, Hp, Wp); result: the input's
    gradient it gives (C, H, W); agrees: it equals backward's, entry by entry; sums:
    chosen entries as sums over the rotated kernel."""

    title: str
    formula: str
    steps: list[str]
    rotated: np.ndarray
    padded: np.ndarray
    result: np.ndarray
    agrees: bool
    sums: Accumulation = field(default_factory=lambda: Accumulation("", ""))
    dilated: bool = False  # a stride > 1 put zeros between the delta's entries


def _sizes(*pairs: tuple[str, int]) -> str:
    return " ".join(f"sum_{{{v}<{n}}}" for v, n in pairs)


class _Labels:
    """How o, d and w entries are written: 2-D indices for a one-channel conv."""

    def __init__(self, spec: Node, simple: bool):
        self.g = spec.layer.geometry
        self.simple = simple

    def o(self, c: int, r: int, s: int) -> str:
        """An input pixel, from its padded coordinates (r, s)."""
        rr, ss = r - self.g.ph, s - self.g.pw
        return f"o{index_label(rr, ss)}" if self.simple else f"o{index_label(c, rr, ss)}"

    def d(self, k: int, i: int, j: int) -> str:
        return f"d{index_label(i, j)}" if self.simple else f"d{index_label(k, i, j)}"

    def w(self, k: int, c: int, m: int, n: int, name: str = "w") -> str:
        return f"{name}{index_label(m, n)}" if self.simple else f"{name}{index_label(k, c, m, n)}"


def conv_details(
    spec: Node,
    o: np.ndarray,
    d: np.ndarray,
    do: np.ndarray,
    own: dict[str, np.ndarray],
    listing: Listing,
) -> list:
    """The kernel, bias and input gradients of one example: o (C, H, W) its input, d
    (O, Ho, Wo) its delta, do (C, H, W) what backward gave for o, own: its parameter
    gradients (this example's share)."""
    g = spec.layer.geometry
    n_out, ho, wo = d.shape
    n_in = o.shape[0]
    labels = _Labels(spec, n_out == 1 and n_in == 1)
    row = f"{g.sh}i+m" if g.sh != 1 else "i+m"
    col = f"{g.sw}j+n" if g.sw != 1 else "j+n"
    ranges = _sizes(("i", ho), ("j", wo))
    legend = "o = the layer's input, d = its delta dE/d(output)"
    if g.ph or g.pw:
        legend += f", o zero-padded by ({g.ph}, {g.pw}) (padding adds nothing)"
    if labels.simple:
        formula = f"dE/dw[m,n] = {ranges} d[i,j] * o[{row}, {col}]"
    else:
        formula = f"dE/dw[k,c,m,n] = {ranges} d[k,i,j] * o[c, {row}, {col}]"
    formula += f"   for m < {g.kh}, n < {g.kw}"
    opad = np.pad(o, ((0, 0), (g.ph, g.ph), (g.pw, g.pw)))
    h, w = o.shape[1:]

    def o_factor(c: int, r: int, s: int) -> Factor:
        inside = g.ph <= r < g.ph + h and g.pw <= s < g.pw + w
        return Factor(labels.o(c, r, s), float(opad[c, r, s]), "input" if inside else "padding")

    key = f"{spec.owner}.weight"
    kernel = Accumulation(
        "kernel gradient: every output position adds its contribution (shared weights)",
        formula,
        legend,
        entries=n_out * n_in * g.kh * g.kw,
        key=key,
    )
    dw = own["weight"].reshape(n_out, n_in, g.kh, g.kw)
    for flat in listing.chosen(key, kernel.entries):
        kk, c, m, n = np.unravel_index(flat, dw.shape)
        products = [
            (
                Factor(labels.d(kk, i, j), float(d[kk, i, j]), "delta"),
                o_factor(c, i * g.sh + m, j * g.sw + n),
            )
            for i in range(ho)
            for j in range(wo)
        ]
        target = f"dE/{labels.w(kk, c, m, n, 'dw')}"
        kernel.sums.append(
            make_sum(target, products, dw[kk, c, m, n], max_terms=listing.terms(key))
        )
    details: list = [kernel]
    if "bias" in own:
        key = f"{spec.owner}.bias"
        bias = Accumulation(
            "bias gradient: the sum of the delta over the output positions",
            f"dE/db[k] = {ranges} d[k,i,j]",
            entries=n_out,
            key=key,
        )
        for kk in listing.chosen(key, n_out):
            products = [
                (Factor(labels.d(kk, i, j), float(d[kk, i, j]), "delta"),)
                for i, j in np.ndindex(ho, wo)
            ]
            value = own["bias"].reshape(-1)[kk]
            bias.sums.append(
                make_sum(f"dE/db{index_label(kk)}", products, value, max_terms=listing.terms(key))
            )
        details.append(bias)
    details.append(_conv_input(spec, d, do, labels, listing))
    details.append(full_convolution(spec, d, do, labels, listing))
    return details


def _conv_input(
    spec: Node, d: np.ndarray, do: np.ndarray, labels: _Labels, listing: Listing
) -> Accumulation:
    """Each input pixel gets the SUM over every output that read it of d * w."""
    g = spec.layer.geometry
    weight = spec.params["weight"]
    n_out, ho, wo = d.shape
    n_in, h, w = do.shape
    step_r = f"{g.sh}i" if g.sh != 1 else "i"
    step_c = f"{g.sw}j" if g.sw != 1 else "j"
    if labels.simple:
        formula = f"dE/do[r,s] = sum over (i,j) d[i,j] * w[r-{step_r}, s-{step_c}]"
    else:
        formula = f"dE/do[c,r,s] = sum over (k,i,j) d[k,i,j] * w[k, c, r-{step_r}, s-{step_c}]"
    formula += f"   (outputs whose {g.kh}x{g.kw} window covers it; none: 0)"
    key = spec.inputs[0]
    acc = Accumulation(
        "input gradient: a pixel read by several outputs gets the SUM of their gradients",
        formula,
        entries=n_in * h * w,
        key=key,
    )
    for flat in listing.chosen(key, acc.entries):
        c, r, s = np.unravel_index(flat, do.shape)
        rp, sp = r + g.ph, s + g.pw
        products = []
        for kk, i, j in np.ndindex(n_out, ho, wo):
            m, n = rp - i * g.sh, sp - j * g.sw
            if 0 <= m < g.kh and 0 <= n < g.kw:
                products.append(
                    (
                        Factor(labels.d(kk, i, j), float(d[kk, i, j]), "delta"),
                        Factor(labels.w(kk, c, m, n), float(weight[kk, c, m, n]), "weight"),
                    )
                )
        target = f"dE/d{labels.o(c, rp, sp)}"
        acc.sums.append(make_sum(target, products, do[c, r, s], max_terms=listing.terms(key)))
    return acc


def full_convolution(
    spec: Node, d: np.ndarray, do: np.ndarray, labels: _Labels, listing: Listing
) -> FullConvolution:
    """The input gradient as the full convolution of the delta with the kernel: the
    delta (dilated by the stride) zero-padded by (kh - 1, kw - 1), cross-correlated with
    rot180(w), then cut to the input (module docstring)."""
    g = spec.layer.geometry
    weight = np.asarray(spec.params["weight"], dtype=np.float64)
    n_out, ho, wo = d.shape
    n_in, h, w = do.shape
    hd, wd = (ho - 1) * g.sh + 1, (wo - 1) * g.sw + 1
    dilated = np.zeros((n_out, hd, wd))
    dilated[:, :: g.sh, :: g.sw] = d
    padded = np.pad(dilated, ((0, 0), (g.kh - 1, g.kh - 1), (g.kw - 1, g.kw - 1)))
    rotated = weight[:, :, ::-1, ::-1]
    full_h, full_w = hd + g.kh - 1, wd + g.kw - 1
    full = np.zeros((n_in, h + 2 * g.ph, w + 2 * g.pw))  # the padded input's gradient
    for m, n in np.ndindex(g.kh, g.kw):
        window = padded[:, m : m + full_h, n : n + full_w]  # (O, full_h, full_w)
        full[:, :full_h, :full_w] += np.einsum("kab,kc->cab", window, rotated[:, :, m, n])
    result = full[:, g.ph : g.ph + h, g.pw : g.pw + w]
    steps = _steps(g, (ho, wo), (h, w), (full_h, full_w), n_out)
    what = "d" if labels.simple else "d[k]"
    formula = (
        f"dE/do = full convolution of {what} with w = {what} zero-padded by "
        f"({g.kh - 1}, {g.kw - 1}), cross-correlated with rot180(w)"
        + ("" if labels.simple else ", summed over the output channels k")
    )
    slack = 64 * np.finfo(np.float64).eps * (np.abs(padded).sum() * np.abs(weight).max() + 1e-300)
    agrees = bool(np.all(np.abs(result - np.asarray(do, dtype=np.float64)) <= slack))
    key = spec.inputs[0]
    sums = Accumulation(
        "the same input gradient entry by entry, from the padded delta dp and rot180(w)",
        (
            "dE/do[r,s] = sum_{m,n} dp[r+m, s+n] * rot180(w)[m,n]"
            if labels.simple
            else "dE/do[c,r,s] = sum_{k,m,n} dp[k, r+m, s+n] * rot180(w)[k,c,m,n]"
        )
        + ("   (r, s in the padded input)" if g.ph or g.pw else ""),
        entries=n_in * h * w,
        key=key,
    )
    for flat in listing.chosen(key, sums.entries):
        c, r, s = np.unravel_index(flat, do.shape)
        entry = _FullEntry(c, r + g.ph, s + g.pw, do[c, r, s])
        sums.sums.append(
            _full_sum(entry, padded, rotated, (full_h, full_w), g, labels, listing.terms(key))
        )
    return FullConvolution(
        "input gradient by the textbook identity: the full convolution of the delta with "
        "the kernel (the 180-degree-rotated kernel slid over the zero-padded delta)",
        formula,
        steps,
        rotated,
        padded,
        result,
        agrees,
        sums,
        dilated=g.sh > 1 or g.sw > 1,
    )


@dataclass(frozen=True)
class _FullEntry:
    """An input entry: channel c, padded coordinates (r, s), what backward gave."""

    c: int
    r: int
    s: int
    value: np.generic


def _full_sum(
    entry: _FullEntry,
    padded: np.ndarray,
    rotated: np.ndarray,
    full: tuple[int, int],
    g,
    labels: _Labels,
    max_terms: int | None,
) -> Sum:
    """One entry of the full convolution as its sum over the rotated kernel."""
    c, r, s = entry.c, entry.r, entry.s
    n_out, kh, kw = padded.shape[0], rotated.shape[2], rotated.shape[3]
    target = f"dE/d{labels.o(c, r, s)}"
    if r >= full[0] or s >= full[1]:
        return make_sum(target, [], entry.value)  # no window reached it
    hp, wp = padded.shape[1:]
    products = []
    for k, m, n in np.ndindex(n_out, kh, kw):
        a, b = r + m, s + n
        inner = kh - 1 <= a < hp - (kh - 1) and kw - 1 <= b < wp - (kw - 1)
        on_grid = (a - (kh - 1)) % g.sh == 0 and (b - (kw - 1)) % g.sw == 0
        kind = "delta" if inner and on_grid else ("dilation" if inner else "padding")
        dp_label = f"dp{index_label(a, b)}" if labels.simple else f"dp{index_label(k, a, b)}"
        rot = labels.w(k, c, m, n, "rot180(w)")
        products.append(
            (
                Factor(dp_label, float(padded[k, a, b]), kind),
                Factor(rot, float(rotated[k, c, m, n]), "weight"),
            )
        )
    return make_sum(target, products, entry.value, max_terms=max_terms)


def _steps(g, out_hw, in_hw, full_hw, n_out) -> list[str]:
    """What is done to the delta, in words, for this geometry."""
    (ho, wo), (h, w), (fh, fw) = out_hw, in_hw, full_hw
    steps = []
    if g.sh > 1 or g.sw > 1:
        steps.append(
            f"stride ({g.sh}, {g.sw}): the identity in its simple form holds for stride 1, "
            f"so the {ho}x{wo} delta is first dilated: {g.sh - 1} zero row(s) and "
            f"{g.sw - 1} zero column(s) between its entries, giving "
            f"{(ho - 1) * g.sh + 1}x{(wo - 1) * g.sw + 1}"
        )
    steps.append(
        f"zero-padded by {g.kh - 1} row(s) and {g.kw - 1} column(s) on each side, and "
        f"cross-correlated with rot180(w): a {fh}x{fw} result"
    )
    hp, wp = h + 2 * g.ph, w + 2 * g.pw
    if fh < hp or fw < wp:
        steps.append(
            f"the windows never reached the last {hp - fh} row(s) and {wp - fw} column(s) of "
            "the (padded) input: their gradient is 0"
        )
    if g.ph or g.pw:
        steps.append(
            f"padding ({g.ph}, {g.pw}): the result is the padded input's gradient, so "
            f"{g.ph} row(s) and {g.pw} column(s) are cut from each side, giving {h}x{w}"
        )
    if n_out > 1:
        steps.append(f"each input channel sums this over the {n_out} output channels")
    return steps
