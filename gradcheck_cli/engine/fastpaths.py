"""A plugin's fast paths, proven equal to its forward before the numeric side uses them.

A layer may offer the engine quicker ways to compute perturbed outputs than a forward
per copy (docs/layers.md): ``forward_perturbed`` (P copies with one parameter element
moved), ``forward_local`` (the outputs a few changed inputs reach) and
``perturbed_local`` (``forward_perturbed`` as those outputs). The protocol asks that they
give what ``forward`` gives; the numeric side then differentiates *them*, so one that
does not makes every numeric value of the tensors behind it wrong, and a backward that
makes the same mistake passes (found by a hunt: a dense layer whose backward and
``forward_perturbed`` both transposed dW passed in full, fast and sampled mode; a tanh
whose ``forward_local`` had the backward's wrong slope was called inconclusive).

So before the numeric side runs, each fast path of a layer written outside gradcheck (a
plugin class, or a subclass of a built-in, which inherits the built-in's fast paths but
may change its forward) is compared with ``forward`` on a few moved elements: the
change it gives from the unperturbed output, against the change ``forward`` gives, up to
rounding (``copies.close`` on the outputs). A step of STEP times the element's magnitude
makes a fast path that is off by a fraction r of the change show r * 1e-3 of the
output, far above rounding for any r a wrong index, sign or factor gives. One that
disagrees is not used: the node's ``fast_paths`` is cleared, the engine runs ``forward``
for it (slower, always right), and the layer gets a warning saying what differed. The
built-in layers' fast paths are proven by tests/test_local.py and are not probed here.
"""

from __future__ import annotations

import numpy as np

from ..network import Node
from ..protocol import Params, perturbed_by_loop
from .copies import close, copy_params
from .own import own_code
from .passes import Calls

#: Elements moved per parameter, and input positions per row, in each probe.
PROBE_ELEMENTS = 6
#: Each moved element moves by this fraction of its magnitude (at least of 1).
STEP = 1e-3


def probed(node: Node) -> bool:
    """Whether the node's fast paths are gradcheck's own (proven by its tests) or must be
    probed: any layer that declares one and is not gradcheck's own code (``own_code``: a
    class defined outside gradcheck, or a built-in running a method a plugin put there)."""
    layer = node.layer
    declares = getattr(layer, "supports_perturbed", False) or getattr(
        layer, "supports_local", False
    )
    return bool(declares) and not own_code(layer)


def probe_fast_paths(node: Node, xs: list[np.ndarray], y: np.ndarray, params: Params) -> list[str]:
    """What each fast path of ``node`` got wrong against its forward (empty: nothing, or
    nothing to probe). xs: its inputs (each (N, *in_shape)), y: its output (N,
    *out_shape) and params: its parameters, all as the analytic pass had them; none is
    handed to the layer (every call gets copies). A fast path that raises or answers in
    the wrong form is left to the numeric side, whose guarded calls stop the check with
    an error naming the layer (exit 2), as for any protocol error."""
    if not probed(node) or len(xs) != 1:
        return []
    layer, x = node.layer, xs[0]
    found: list[str] = []
    picks = np.random.default_rng(0)  # its own generator: the check's draws stay as they are
    Calls.enter(node.name, "forward")
    try:
        with np.errstate(all="ignore"):
            if getattr(layer, "supports_perturbed", False):
                for name, value in params.items():
                    found += _perturbed(layer, x, y, params, name, value, picks)
            if getattr(layer, "supports_local", False) and node.batch_independent:
                found += _local(layer, x, y, params, picks)
    except Exception:  # noqa: BLE001 - its forward failed on a moved copy: the numeric
        pass  # side meets that again and names it; nothing here to judge the paths by
    finally:
        Calls.leave()
    return found


def _elements(size: int, picks: np.random.Generator) -> np.ndarray:
    """Up to PROBE_ELEMENTS flat indices of a tensor of ``size``: its first, middle and
    last, and random ones."""
    fixed = np.array([0, size // 2, size - 1])
    drawn = picks.choice(size, size=min(size, PROBE_ELEMENTS), replace=False)
    return np.unique(np.concatenate([fixed, drawn]))[:PROBE_ELEMENTS]


def _steps(values: np.ndarray) -> np.ndarray:
    return STEP * np.maximum(1.0, np.abs(values.astype(np.float64)))


def _perturbed(layer, x, y, params, name, value, picks) -> list[str]:
    """forward_perturbed (and perturbed_local, where declared) of ``name`` against one
    forward per moved copy."""
    if not isinstance(value, np.ndarray) or not value.size or value.dtype.kind != "f":
        return []
    index = _elements(value.size, picks)
    delta = _steps(value.reshape(-1)[index]).astype(value.dtype)
    want = perturbed_by_loop(layer, x.copy(), copy_params(params), name, index, delta)
    found = []
    got = _answer(layer.forward_perturbed, x.copy(), copy_params(params), name, index, delta)
    if _formed(got, want) and not _agrees(got, want):
        found.append(_said("forward_perturbed", name, got, want))
    if getattr(layer, "supports_local", False):
        out = _answer(
            layer.perturbed_local, x.copy(), y.copy(), copy_params(params), name, index, delta
        )
        if out is not None:
            rows = np.tile(np.arange(len(x)), len(index))  # row p * N + n: copy p of example n
            placed = _placed(y, rows, out)
            if _formed(placed, want) and not _agrees(placed, want):
                found.append(_said("perturbed_local", name, placed, want))
    return found


def _local(layer, x, y, params, picks) -> list[str]:
    """forward_local against forward, on the first and last example's rows: rows with one
    input moved (padded to K by repeating it, the protocol's convention) and a row with K
    moved (K = 3, or fewer inputs)."""
    n, per = len(x), x[0].size
    flat = x.reshape(n, per)
    k = min(3, per)
    rows, index = [], []
    for r in sorted({0, n - 1}):
        at = _elements(per, picks)
        rows += [r] * len(at)
        index += [[a] * k for a in at]
        several = list(at[:k]) + [at[0]] * (k - len(at[:k]))
        rows.append(r)
        index.append(several)
    rows_a, index_a = np.array(rows), np.array(index)
    values = flat[rows_a[:, None], index_a] + _steps(flat[rows_a[:, None], index_a]).astype(x.dtype)
    want = np.empty((len(rows_a), *y.shape[1:]), dtype=y.dtype)
    for j, r in enumerate(rows_a):
        moved = x.copy()
        moved.reshape(n, per)[r, index_a[j]] = values[j]
        want[j] = layer.forward(moved, copy_params(params))[0][r]
    out = _answer(
        layer.forward_local, x.copy(), y.copy(), copy_params(params), rows_a, index_a, values
    )
    placed = None if out is None else _placed(y, rows_a, out)
    if _formed(placed, want) and not _agrees(placed, want):
        return [_said("forward_local", None, placed, want)]
    return []


def _answer(method, *args):
    """What the fast path returns, or None when it raises: the numeric side's guarded
    call meets that again and names it."""
    try:
        return method(*args)
    except Exception:  # noqa: BLE001
        return None


def _formed(got, want: np.ndarray) -> bool:
    """An answer of the size the protocol asks for (the engine's checks name any other)."""
    return isinstance(got, np.ndarray) and got.size == want.size


def _placed(y: np.ndarray, rows: np.ndarray, out) -> np.ndarray | None:
    """y[rows] with the (index, values) a local fast path returned put in place; None
    for an answer of the wrong form."""
    try:
        where, values = np.asarray(out[0]), np.asarray(out[1])
        full = y.reshape(len(y), -1)[rows].copy()
        np.put_along_axis(full, where.astype(np.intp), values.astype(full.dtype), axis=1)
    except Exception:  # noqa: BLE001 - the engine's own checks name the form it wants
        return None
    return full.reshape(len(rows), *y.shape[1:])


def _agrees(got: np.ndarray, want: np.ndarray) -> bool:
    return close(got.reshape(want.shape), want)


def _said(method: str, name: str | None, got: np.ndarray, want: np.ndarray) -> str:
    what = method if name is None else f"{method} of {name}"
    got64 = np.asarray(got, dtype=np.float64).reshape(want.shape)
    diff = float(np.nanmax(np.abs(got64 - want.astype(np.float64))))
    scale = float(np.nanmax(np.abs(want.astype(np.float64))))
    return f"{what} differs from forward by up to {diff:.3g} (outputs up to {scale:.3g})"
