"""Random stacks of the built-in layers against PyTorch's autograd, float64, to 1e-8 relative.

Issue 2's acceptance criterion: "Analytic gradients of random stacks of the built-in layers
agree with an independent autodiff framework to 1e-8 relative".

Each stack is drawn from a numpy seed (the test id, ``stack-<seed>``): an input (image,
2-D plane or flat vector; batched or not), up to a few image layers (conv2d, maxpool2d,
avgpool2d, activations, softmax over channels, dropout), an optional flatten and flat
layers (dense, activations, softmax, dropout), batchnorm after any of them where a batch
statistic has more than one value (drawn from a second seeded stream, so the rest of each
stack is what it was before batchnorm existed), the layers of issue 11 (gelu and
layernorm after any layer, upsample2d and transpose after an image layer,
global_avgpool2d in place of the flatten; drawn from a third seeded stream, so a stack
that gets none of them is what it was before), and one of the four losses with
``reduction: sum`` or ``mean``. It is written as a config mapping and built through the
public config path (``problem_from_dict``), then gradcheck's analytic pass runs. The same
network is rebuilt in torch from the problem's own arrays (``problem.x`` and every
layer's ``params``) and the hyper-parameters in the generated config; only dropout's mask
is taken from gradcheck (a forward of the layer on ones), since torch draws its own.

The loss, every layer's delta (dE/d its output), the input gradient and every parameter
gradient must agree element-wise to ``rtol=1e-8`` with ``atol = 1e-12 * max|tensor|``
(exact zeros, e.g. behind a ReLU, have no relative error to speak of); a tensor that is
0 in exact arithmetic is held to rounding level instead (see ``assert_agree``).

Inputs and weights are continuous random values, so ReLU kinks and max-pool ties are
measure-zero events; the exact zeros ReLU and dropout produce can tie or sit on a kink
further up, but every path through them carries a zero gradient. upsample2d's copies do
tie in a max-pool window after it, and there both sides route the gradient to the first
maximum in row-major order.

Skipped when torch is not installed (it is not a dependency). More stacks:
``GRADCHECK_TORCH_STACKS=5000 pytest tests/test_stacks_vs_torch.py``.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gradcheck_cli.config import problem_from_dict  # noqa: E402
from gradcheck_cli.engine.passes import analytic_pass, problem_params  # noqa: E402
from gradcheck_cli.protocol import LAYERS, LOSSES, ORIGINS, takes_several  # noqa: E402

STACKS = int(os.environ.get("GRADCHECK_TORCH_STACKS", "200"))
RTOL = 1e-8
ATOL_FRACTION = 1e-12  # atol = ATOL_FRACTION * the tensor's largest magnitude
VANISHING = 1e-10  # a parameter gradient below VANISHING * its layer's delta is 0 (noise)
ROUNDING = 1e-12  # atol >= ROUNDING * the largest gradient of the stack (rounding floor)

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
LOSSES_USED = ("cross_entropy", "mse", "softmax_cross_entropy", "upstream")


# --------------------------------------------------------------------------- generator


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _out_hw(hw, kernel, stride, padding) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    return (hw[0] + 2 * ph - kh) // sh + 1, (hw[1] + 2 * pw - kw) // sw + 1


def _int_or_pair(rng: np.random.Generator, a: int, b: int):
    """[a, b], or just a when a == b three times in four: both config spellings get used."""
    return [a, b] if a != b or rng.random() < 0.25 else a


def _conv(rng: np.random.Generator, shape: tuple[int, ...]):
    """A random conv2d item valid for the image ``shape`` (C, H, W), and its output shape."""
    c, h, w = shape
    while True:
        kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
        if rng.random() < 0.6:
            kw = kh
        sh, sw = (int(s) for s in rng.integers(1, 3, size=2))
        if rng.random() < 0.6:
            sw = sh
        ph, pw = (int(p) for p in rng.integers(0, 2, size=2))
        if rng.random() < 0.6:
            pw = ph
        if h + 2 * ph >= kh and w + 2 * pw >= kw:
            break
    out = int(rng.integers(1, 4))
    item: dict = {"type": "conv2d", "out_channels": out}
    item["kernel_size"] = _int_or_pair(rng, kh, kw)
    if (sh, sw) != (1, 1) or rng.random() < 0.3:
        item["stride"] = _int_or_pair(rng, sh, sw)
    if (ph, pw) != (0, 0) or rng.random() < 0.3:
        item["padding"] = _int_or_pair(rng, ph, pw)
    _weights(rng, item, (out, c, kh, kw), fan_in=c * kh * kw)
    return item, (out, *_out_hw((h, w), (kh, kw), (sh, sw), (ph, pw)))


def _dense(rng: np.random.Generator, n_in: int, n_out: int | None = None):
    out = int(rng.integers(1, 6)) if n_out is None else n_out
    item: dict = {"type": "dense", "out_features": out}
    _weights(rng, item, (out, n_in), fan_in=n_in)
    return item, (out,)


def _weights(rng: np.random.Generator, item: dict, shape: tuple[int, ...], fan_in: int) -> None:
    """Explicit random weights half the time (else the config's seed makes them)."""
    if rng.random() < 0.25:
        item["bias"] = False
    if rng.random() < 0.5:
        w = rng.standard_normal(shape) * (1.5 / np.sqrt(fan_in))
        if item["type"] == "conv2d" and shape[:2] == (1, 1) and rng.random() < 0.5:
            w = w[0, 0]  # a 2-D kernel: one in, one out channel
        item["weight"] = w.tolist()
        if item.get("bias", True):
            item["bias"] = (0.5 * rng.standard_normal(shape[0])).tolist()


def _pool(rng: np.random.Generator, shape: tuple[int, ...]):
    """A kernel-2 max/avg pool valid for ``shape``, or None when none fits."""
    c, h, w = shape
    stride = 1 if rng.random() < 0.4 else 2  # stride 1: overlapping windows
    padding = 1 if rng.random() < 0.2 else 0
    if h + 2 * padding < 2 or w + 2 * padding < 2:
        return None
    item: dict = {"type": str(rng.choice(["maxpool2d", "avgpool2d"])), "kernel_size": 2}
    if stride == 1 or rng.random() < 0.2:
        item["stride"] = stride
    if padding:
        item["padding"] = padding
    return item, (c, *_out_hw((h, w), 2, stride, padding))


def _activation(rng: np.random.Generator) -> dict:
    kind = str(rng.choice(ACTIVATIONS))
    item: dict = {"type": kind}
    if kind == "leaky_relu" and rng.random() < 0.8:
        item["negative_slope"] = float(rng.uniform(0.01, 0.5))
    return item


def _dropout(rng: np.random.Generator) -> dict:
    return {"type": "dropout", "p": float(rng.uniform(0.1, 0.6)), "seed": int(rng.integers(100))}


def _image_layer(rng: np.random.Generator, shape: tuple[int, ...], first: bool):
    while True:
        kind = rng.choice(
            ["conv", "pool", "act", "softmax", "dropout"], p=[0.4, 0.25, 0.2, 0.07, 0.08]
        )
        if first and kind not in ("conv", "pool"):
            continue  # a 2-D input is one channel only before an image layer
        if kind == "conv":
            return _conv(rng, shape)
        if kind == "pool":
            made = _pool(rng, shape)
            if made is not None:
                return made
        elif kind == "act":
            return _activation(rng), shape
        elif kind == "softmax" and shape[0] > 1:  # over one channel it is constant 1
            return {"type": "softmax"}, shape
        elif kind == "dropout":
            return _dropout(rng), shape


def _flat_layer(rng: np.random.Generator, shape: tuple[int, ...]):
    while True:
        kind = rng.choice(["dense", "act", "softmax", "dropout"], p=[0.45, 0.3, 0.1, 0.15])
        if kind == "dense":
            return _dense(rng, shape[0])
        if kind == "act":
            return _activation(rng), shape
        if kind == "softmax" and shape[0] > 1:
            return {"type": "softmax"}, shape
        if kind == "dropout":
            return _dropout(rng), shape


def _target(rng: np.random.Generator, loss: str, out: tuple[int, ...], n: int, batched: bool):
    """(key, value as written): the loss's target or grad for an (n, *out) output."""
    if loss in ("mse", "upstream"):
        t = rng.standard_normal((n, *out))
    elif len(out) == 1 and rng.random() < 0.4:  # class indices need a flat output
        k = rng.integers(0, out[0], size=n)
        return "target", (k.tolist() if batched else int(k[0]))
    else:  # a distribution over axis 1, sometimes not normalised
        t = rng.uniform(0.05, 1.0, size=(n, *out))
        if rng.random() < 0.8:
            t /= t.sum(axis=1, keepdims=True)
        if rng.random() < 0.3:  # some zero entries (0 * log(y) counts as 0), never all
            zero = rng.random(t.shape) < 0.3
            zero.reshape(n, -1)[np.arange(n), rng.integers(0, zero[0].size, size=n)] = False
            t = np.where(zero, 0.0, t)
    key = "grad" if loss == "upstream" else "target"
    return key, (t.tolist() if batched else t[0].tolist())


def _maybe_batchnorm(extra: np.random.Generator, layers: list, shape: tuple, n: int) -> None:
    """Sometimes a batchnorm after the last layer, when each statistic has several values.

    gamma and beta are random, not 1 and 0: a feature that is constant over the batch (a
    padded border, a unit ReLU kills for every example) normalises to exactly beta, and
    beta = 0 would put the next ReLU on its kink.
    """
    if extra.random() < 0.15 and n * int(np.prod(shape[1:])) > 1:
        c = shape[0]
        gamma = extra.uniform(0.5, 2.0, c) * extra.choice([-1.0, 1.0], c)
        item = {"type": "batchnorm", "gamma": gamma.tolist(), "beta": extra.normal(size=c).tolist()}
        if extra.random() < 0.3:
            item["eps"] = 1e-3
        layers.append(item)


def _maybe_new_layer(new: np.random.Generator, layers: list, shape: tuple) -> tuple:
    """Sometimes one of issue 11's single-input layers after the last layer; the shape after.

    upsample2d and transpose change the shape, so the layers drawn after them differ from
    the stack without them (those are new stacks); gelu and layernorm keep it. layernorm's
    gamma and beta are random, as batchnorm's are, so that beta = 0 never puts a ReLU
    further up on its kink (a ReLU that zeroes a whole example normalises to beta).
    """
    if new.random() >= 0.12:
        return shape
    kinds = ["gelu", "layernorm"] + (["upsample2d", "transpose"] if len(shape) == 3 else [])
    kind = str(new.choice(kinds))
    if kind == "gelu":
        layers.append({"type": "gelu"})
        return shape
    if kind == "layernorm":
        if int(np.prod(shape)) < 2:  # one value: y = beta whatever x, nothing to compare
            return shape
        gamma = new.uniform(0.5, 2.0, shape) * new.choice([-1.0, 1.0], shape)
        item = {"type": "layernorm", "gamma": gamma.tolist()}
        item["beta"] = new.normal(size=shape).tolist()
        if new.random() < 0.3:
            item["eps"] = 1e-3
        layers.append(item)
        return shape
    c, h, w = shape
    if kind == "upsample2d":
        sh, sw = (int(s) for s in new.integers(1, 4, size=2))
        if (sh, sw) == (1, 1) or h * w * sh * sw > 64:  # keep the stacks small
            return shape
        layers.append({"type": "upsample2d", "scale": sh if sh == sw else [sh, sw]})
        return (c, h * sh, w * sw)
    axes = [int(a) for a in new.permutation(3)]
    if axes == [0, 1, 2]:
        return shape
    layers.append({"type": "transpose", "axes": axes})
    return tuple(shape[a] for a in axes)


def random_config(seed: int) -> dict:
    """A valid random config: any mix of built-in layers, any loss and reduction."""
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # batchnorm's draws: rng's sequence unchanged
    new = np.random.default_rng([seed, 2])  # issue 11's layers: the same, for the others
    batched = rng.random() < 0.6
    n = int(rng.integers(1, 4)) if batched else 1
    form = str(rng.choice(["image", "plane", "flat"], p=[0.5, 0.15, 0.35]))
    loss = str(rng.choice(sorted(LOSSES_USED)))
    layers: list[dict] = []

    if form == "flat":
        shape: tuple[int, ...] = (int(rng.integers(2, 9)),)
        written: tuple[int, ...] = shape
    else:
        c = 1 if form == "plane" else int(rng.integers(1, 4))
        shape = (c, int(rng.integers(3, 8)), int(rng.integers(3, 8)))
        written = shape[1:] if form == "plane" else shape
    x = rng.standard_normal((n, *written)) * rng.uniform(0.5, 2.0)

    if form != "flat":
        for k in range(int(rng.integers(1 if form == "plane" else 0, 4))):
            item, shape = _image_layer(rng, shape, first=k == 0)
            layers.append(item)
            _maybe_batchnorm(extra, layers, shape, n)
            shape = _maybe_new_layer(new, layers, shape)
        if rng.random() < 0.8:
            if new.random() < 0.15:  # the mean of each channel instead
                layers.append({"type": "global_avgpool2d"})
                shape = (shape[0],)
            else:
                layers.append({"type": "flatten"})
                shape = (int(np.prod(shape)),)
    if len(shape) == 1:
        for _ in range(int(rng.integers(0, 4))):
            item, shape = _flat_layer(rng, shape)
            layers.append(item)
            _maybe_batchnorm(extra, layers, shape, n)
            shape = _maybe_new_layer(new, layers, shape)
        if rng.random() < 0.6:
            item, shape = _dense(rng, shape[0], int(rng.integers(1, 6)))
            layers.append(item)
    if not any(item["type"] in ("conv2d", "dense") for item in layers):
        if len(shape) == 1:
            item, shape = _dense(rng, shape[0])
        else:
            item, shape = _conv(rng, shape)
        layers.append(item)
    if loss in ("cross_entropy", "softmax_cross_entropy") and shape[0] < 2:
        # one class: softmax is constant, the gradient identically 0; widen the head
        if len(shape) == 1:
            item, shape = _dense(rng, shape[0], int(rng.integers(2, 6)))
        else:
            item = {"type": "conv2d", "out_channels": int(rng.integers(2, 4)), "kernel_size": 1}
            shape = (item["out_channels"], *shape[1:])
        layers.append(item)
    if loss == "cross_entropy" and layers[-1]["type"] not in ("softmax", "sigmoid"):
        layers.append({"type": "softmax" if rng.random() < 0.8 else "sigmoid"})  # y > 0

    if batched:
        inp: object = {"value": x.tolist(), "batched": True}
    elif rng.random() < 0.1:
        inp = {"shape": list(written)}  # seeded random input
    else:
        inp = x[0].tolist()
    key, value = _target(rng, loss, shape, n, batched)
    loss_block: dict = {"type": loss, key: value}
    if rng.random() < 0.5:
        loss_block["reduction"] = str(rng.choice(["sum", "mean"]))
    return {
        "name": f"stack-{seed}",
        "seed": seed,
        "input": inp,
        "layers": layers,
        "loss": loss_block,
    }


# --------------------------------------------------------------------------- torch side


def torch_layer(item: dict, spec, h, params: dict, variant: dict):
    kind = item["type"]
    if kind == "conv2d":
        stride, padding = _pair(item.get("stride", 1)), _pair(item.get("padding", 0))
        return F.conv2d(h, params["weight"], params.get("bias"), stride, padding)
    if kind in ("maxpool2d", "avgpool2d"):
        k = _pair(item["kernel_size"])
        stride = _pair(item.get("stride", item["kernel_size"]))
        padding = _pair(item.get("padding", 0))
        if kind == "maxpool2d":
            return F.max_pool2d(h, k, stride, padding)
        include = variant.get("count_include_pad", True)
        return F.avg_pool2d(h, k, stride, padding, count_include_pad=include)
    if kind == "relu":
        return F.relu(h)
    if kind == "leaky_relu":
        return F.leaky_relu(h, item.get("negative_slope", 0.01))
    if kind == "sigmoid":
        return torch.sigmoid(h)
    if kind == "tanh":
        return torch.tanh(h)
    if kind == "softmax":
        return F.softmax(h, dim=variant.get("softmax_dim", 1))
    if kind == "flatten":
        return torch.flatten(h, 1)
    if kind == "dense":
        return F.linear(h, params["weight"], params.get("bias"))
    if kind == "batchnorm":  # BatchNorm1d/2d in training
        eps = item.get("eps", 1e-5)
        out = F.batch_norm(h, None, None, params["gamma"], params["beta"], training=True, eps=eps)
        # torch's CPU batch_norm backward misreads a grad_output whose strides look
        # channels-last while its input is contiguous (a transpose right after it, on an
        # image of width 1): wrong input and gamma gradients (the slip pytorch#64100 fixed
        # in sync batch norm). Hand it a contiguous one.
        out.register_hook(lambda grad: grad.contiguous())
        return out
    if kind == "gelu":
        return F.gelu(h, approximate="none")
    if kind == "layernorm":  # torch.nn.LayerNorm(in_shape)
        shape = tuple(h.shape[1:])
        eps = item.get("eps", 1e-5)
        return F.layer_norm(h, shape, params["gamma"], params["beta"], eps=eps)
    if kind == "upsample2d":
        return F.interpolate(h, scale_factor=_pair(item["scale"]), mode="nearest")
    if kind == "transpose":
        return h.permute(0, *(a + 1 for a in item["axes"]))
    if kind == "global_avgpool2d":
        return F.adaptive_avg_pool2d(h, 1).flatten(1)
    if kind == "dropout":
        # torch draws its own mask: apply gradcheck's (scaled 1/(1-p) where kept)
        mask, _ = spec.layer.forward(np.ones(tuple(h.shape)), {})
        return h * torch.tensor(mask)
    raise AssertionError(f"no torch counterpart for layer type {kind!r}")


def torch_loss(block: dict, y, n: int, batched: bool):
    kind = block["type"]
    raw = np.asarray(block["grad" if kind == "upstream" else "target"], dtype=float)
    if not batched:
        raw = raw[np.newaxis]
    if kind in ("cross_entropy", "softmax_cross_entropy") and raw.ndim == 1:
        k = torch.tensor(raw.astype(np.int64))
        logp = torch.log(y) if kind == "cross_entropy" else y
        per = (F.nll_loss if kind == "cross_entropy" else F.cross_entropy)(
            logp, k, reduction="none"
        )
    else:
        t = torch.tensor(raw.reshape(tuple(y.shape)))
        if kind == "mse":
            terms = 0.5 * (t - y) ** 2
        elif kind == "upstream":
            terms = t * y
        elif kind == "cross_entropy":
            terms = -t * torch.log(y)
        else:
            terms = -t * F.log_softmax(y, dim=1)
        per = terms.reshape(n, -1).sum(1)
    return per.mean() if block.get("reduction", "sum") == "mean" else per.sum()


def torch_gradients(problem, cfg: dict, variant: dict | None = None):
    """(loss, {name: gradient}) of the same network in torch autograd.

    Names: ``<layer>.delta`` (dE/d of the layer's output) from the last layer down,
    ``input``, then ``<layer>.<param>``.
    """
    variant = variant or {}
    x = torch.tensor(problem.x, requires_grad=True)
    params = {
        spec.name: {k: torch.tensor(v, requires_grad=True) for k, v in spec.params.items()}
        for spec in problem.layers
    }
    h, outputs = x, {}
    for item, spec in zip(cfg["layers"], problem.layers, strict=True):
        assert spec.type == item["type"]
        h = outputs[spec.name] = torch_layer(item, spec, h, params[spec.name], variant)
        h.retain_grad()
    loss = torch_loss(cfg["loss"], h, problem.batch_size, problem.batched)
    loss.backward()
    grads = {f"{layer}.delta": y.grad.numpy() for layer, y in reversed(outputs.items())}
    grads["input"] = x.grad.numpy()
    for layer, ps in params.items():
        for p, t in ps.items():
            grads[f"{layer}.{p}"] = t.grad.numpy()
    return float(loss.detach()), grads


# --------------------------------------------------------------------------- comparison


def ours(problem):
    """(loss, {name: gradient}) from gradcheck's analytic pass, named as in torch_gradients."""
    trace, grads = analytic_pass(problem, problem_params(problem))
    specs = problem.layers
    out = {f"{s.name}.delta": grads.deltas[s.name] for s in specs[::-1]}
    out["input"] = grads.dx
    for spec in specs:
        for p in spec.params:  # the engine made sure backward gave exactly these keys
            out[f"{spec.name}.{p}"] = grads.params[spec.name][p]
    return trace.loss, out


def tolerance(name: str, grads: dict, t_grads: dict, largest: float) -> float:
    """The atol for one tensor (see assert_agree); largest: the stack's largest gradient."""
    ours_, theirs = grads[name], t_grads[name]
    scale = max(np.abs(ours_).max(), np.abs(theirs).max())
    layer, _, param = name.rpartition(".")
    if layer and param != "delta":  # a parameter: compare with the delta it is summed from
        delta = f"{layer}.delta"
        ref = max(np.abs(grads[delta]).max(), np.abs(t_grads[delta]).max())
        if scale <= VANISHING * ref:  # 0 in exact arithmetic: rounding noise only
            # ... of the sums that cancelled into the delta too, which may be far larger
            # than the delta itself (a layernorm after a batchnorm): the floor holds here too
            return max(VANISHING * ref, ROUNDING * largest)
    return max(ATOL_FRACTION * scale, ROUNDING * largest)


def assert_agree(problem, cfg, got, want) -> None:
    """Loss, every delta, the input and every parameter gradient, to RTOL.

    Element-wise ``|ours - torch| <= RTOL * |torch| + atol`` with atol ATOL_FRACTION of
    the tensor's largest magnitude, so exact zeros (behind a ReLU, a dropped unit) need
    no relative error. One exception: a parameter gradient no larger than VANISHING times
    its layer's delta (the values it is summed from) is 0 in exact arithmetic -- the bias
    of a one-channel conv2d in front of a softmax or softmax_cross_entropy, which are
    shift-invariant, or of a layer in front of a batchnorm or layernorm -- and rounding
    noise on both sides; it must stay that small. Such noise is mostly below 1e-12 of the
    layer's delta, but that delta may itself be what a normalisation's backward left of
    cancelling terms far larger than it, and the noise is relative to those: over 20000
    stacks it reached 7e-10 of the delta (a conv2d bias below a batchnorm and a
    layernorm). The rounding floor below covers such gradients too.

    And atol is never below ROUNDING times the largest gradient anywhere in the stack:
    every gradient is a sum of products up to that size, and where the products cancel
    its rounding (~1e-16 of them) is all that is left on both sides. Batchnorm makes that
    common: its backward subtracts the means of its delta, so the gradients below it are
    such differences, and a feature it normalises from nearly constant values scales
    them up by up to 1/sqrt(eps). Over 20000 stacks (a fifth with a batchnorm, over a
    quarter with a layer of issue 11) the disagreements only this floor accepts were at
    most 1.9e-13 of the largest gradient.

    Raises one AssertionError naming every tensor that disagrees, the delta of the last
    layer first, so the first name points at the topmost layer that went wrong.
    """
    (loss, grads), (t_loss, t_grads) = got, want
    stack = " -> ".join(item["type"] for item in cfg["layers"])
    where = (
        f"{cfg['name']}: input {list(problem.x.shape)} "
        f"{'batched' if problem.batched else 'unbatched'}, {stack}, "
        f"loss {cfg['loss']['type']} ({cfg['loss'].get('reduction', 'sum')})"
    )
    assert list(grads) == list(t_grads), where
    largest = max(max(np.abs(g).max(), np.abs(t_grads[n]).max()) for n, g in grads.items())
    failures = []
    for name, ours_, theirs, atol in [
        ("loss", loss, t_loss, ATOL_FRACTION),  # 0 when relu or dropout zero the output
        *((n, g, t_grads[n], tolerance(n, grads, t_grads, largest)) for n, g in grads.items()),
    ]:
        try:
            np.testing.assert_allclose(ours_, theirs, rtol=RTOL, atol=atol, err_msg=name)
        except AssertionError as err:
            failures.append(str(err).strip())
    if failures:
        names = [f.splitlines()[1] for f in failures]
        raise AssertionError(f"{where}\ndisagree: {', '.join(names)}\n\n" + "\n\n".join(failures))


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", range(STACKS), ids=lambda s: f"stack-{s}")
def test_random_stack_matches_torch(seed):
    cfg = random_config(seed)
    problem = problem_from_dict(cfg)
    assert_agree(problem, cfg, ours(problem), torch_gradients(problem, cfg))


def test_generator_covers_every_builtin():
    """The stacks above use every built-in layer and loss, both reductions, both input kinds."""
    seen: Counter = Counter()
    for seed in range(STACKS):
        cfg = random_config(seed)
        inp, block = cfg["input"], cfg["loss"]
        batched = isinstance(inp, dict) and inp.get("batched", False)
        seen["batched" if batched else "unbatched"] += 1
        seen[(block["type"], block.get("reduction", "sum"))] += 1
        key = "grad" if block["type"] == "upstream" else "target"
        per_example = np.ndim(block[key]) - batched
        seen["class-index" if per_example == 0 else "array-target"] += 1
        if isinstance(inp, dict) and "shape" in inp:
            seen["shape-input"] += 1
        for item in cfg["layers"]:
            seen[item["type"]] += 1
            if item["type"] in ("conv2d", "dense"):
                seen["explicit-weight" if "weight" in item else "seeded-weight"] += 1
                seen["no-bias" if item.get("bias") is False else "bias"] += 1
            if item["type"] == "conv2d":
                k, s, p = (
                    _pair(item.get(f, d))
                    for f, d in (("kernel_size", 1), ("stride", 1), ("padding", 0))
                )
                seen[f"conv-stride-{max(s)}"] += 1
                seen[f"conv-padding-{max(p)}"] += 1
                seen[f"conv-kernel-{max(k)}"] += 1
                seen["conv-2d-kernel" if np.ndim(item.get("weight", 0)) == 2 else "conv"] += 1
            if item["type"] in ("maxpool2d", "avgpool2d"):
                seen[f"{item['type']}-stride-{item.get('stride', 2)}"] += 1
                seen[f"{item['type']}-padding-{item.get('padding', 0)}"] += 1
    builtin_layers = {n for n in LAYERS if ORIGINS.get(("layer", n)) == "built-in"}
    # multi-input layers need a graph: tests/test_graphs_vs_torch.py; the maths of a
    # functions layer and a function loss is the user's (tests/test_vs_torch.py compares
    # the shipped cs231n functions)
    builtin_layers = {
        n for n in builtin_layers if not takes_several(LAYERS[n]) and n != "functions"
    }
    builtin_losses = {n for n in LOSSES if ORIGINS.get(("loss", n)) == "built-in"} - {"function"}
    assert builtin_losses == set(LOSSES_USED)
    wanted = builtin_layers | {(loss, r) for loss in builtin_losses for r in ("sum", "mean")}
    wanted |= {"batched", "unbatched", "class-index", "array-target", "shape-input"}
    wanted |= {"explicit-weight", "seeded-weight", "no-bias", "conv-2d-kernel"}
    wanted |= {
        f"conv-{f}-{v}"
        for f, vs in (("stride", (1, 2)), ("padding", (0, 1)), ("kernel", (1, 2, 3)))
        for v in vs
    }
    wanted |= {
        f"{p}-{f}-{v}"
        for p in ("maxpool2d", "avgpool2d")
        for f, vs in (("stride", (1, 2)), ("padding", (0, 1)))
        for v in vs
    }
    missing = sorted(map(str, wanted - set(seen)))
    assert not missing, f"the {STACKS} stacks never use: {missing}"


def _fixed_config() -> dict:
    """A stack exercising padding in avg pooling and a softmax over channels."""
    rng = np.random.default_rng(123)
    return {
        "seed": 5,
        "input": {"value": rng.standard_normal((2, 2, 5, 4)).tolist(), "batched": True},
        "layers": [
            {"type": "conv2d", "out_channels": 3, "kernel_size": 2, "padding": 1},
            {"type": "leaky_relu", "negative_slope": 0.1},
            {"type": "avgpool2d", "kernel_size": 2, "stride": 1, "padding": 1},
            {"type": "softmax"},
            {"type": "flatten"},
            {"type": "dense", "out_features": 3},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [2, 0], "reduction": "mean"},
        "name": "fixed",
    }


def test_fixed_stack_matches_torch():
    cfg = _fixed_config()
    problem = problem_from_dict(cfg)
    assert_agree(problem, cfg, ours(problem), torch_gradients(problem, cfg))


@pytest.mark.parametrize("tensor", ["input", "conv2d_1.weight", "dense_1.bias"])
def test_comparison_catches_a_gradient_off_by_1e_7(tensor):
    """The comparison can fail: one element 1e-7 relative off is caught."""
    cfg = _fixed_config()
    problem = problem_from_dict(cfg)
    loss, grads = ours(problem)
    g = grads[tensor].copy()
    i = np.unravel_index(np.abs(g).argmax(), g.shape)
    g[i] *= 1 + 1e-7
    with pytest.raises(AssertionError, match=rf"disagree: {re.escape(tensor)}\n"):
        assert_agree(problem, cfg, (loss, {**grads, tensor: g}), torch_gradients(problem, cfg))


@pytest.mark.parametrize(
    "variant",
    [{"count_include_pad": False}, {"softmax_dim": -1}],
    ids=["avg-excl-pad", "softmax-W"],
)
def test_comparison_catches_a_different_network(variant):
    """...and a torch network that differs in one semantic detail disagrees."""
    cfg = _fixed_config()
    problem = problem_from_dict(cfg)
    with pytest.raises(AssertionError, match="disagree: loss, "):
        assert_agree(problem, cfg, ours(problem), torch_gradients(problem, cfg, variant))
