"""dense: a fully connected layer, y = x W^T + b."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..protocol import DenseSums, InputKind, Layer, Params, Shape, register_layer
from ._fields import checked_int

#: A row with more than F / LOCAL_DENSE changed inputs is computed whole: one gemv then
#: costs less than gathering that many weight columns.
LOCAL_DENSE = 16


class DenseCache(NamedTuple):
    x: np.ndarray  # (N, F), the layer's input


@register_layer("dense")
class Dense(Layer):
    """Fully connected layer.

    x: (N, F), weight: (O, F), bias: (O,) -> y: (N, O) with y = x @ weight.T + bias.
    """

    summary = "fully connected layer y = W x + b on a flat input"
    param_names = ("weight", "bias")
    input_kind = InputKind.FLAT
    param_axes = {"weight": "(out_features, in_features)", "bias": "(out_features,)"}
    inferred_from = {"weight": ("out_features",)}
    field_bounds = {"out_features": {"minimum": 1}}
    derivation = DenseSums()
    supports_perturbed = True
    supports_local = True
    batch_independent = True

    def __init__(self, out_features: int, bias: bool = True):
        self.out_features = checked_int(out_features, "out_features")
        if not bias:
            self.param_names = ("weight",)

    @classmethod
    def sizes_from(cls, name: str, shape: Shape) -> dict[str, Any]:
        """out_features from a 2-D (out_features, in_features) weight."""
        return {"out_features": shape[0]} if name == "weight" and len(shape) == 2 else {}

    def param_sizes(self, in_shape: Shape, out_shape: Shape) -> dict[str, tuple[str, int]]:
        return {"weight": ("out_features", self.out_features * math.prod(in_shape))}

    def output_shape(self, in_shape: Shape) -> Shape:
        return (self.out_features,)

    def init_params(self, in_shape: Shape, rng: np.random.Generator) -> Params:
        (fan_in,) = in_shape
        bound = 1.0 / np.sqrt(fan_in)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        params = {"weight": rng.uniform(-bound, bound, (self.out_features, fan_in))}
        if "bias" in self.param_names:
            params["bias"] = rng.uniform(-bound, bound, (self.out_features,))
        return params

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, DenseCache]:
        # A stack of N (1, F) @ (F, O) products, not one (N, F) @ (F, O) gemm: BLAS blocks
        # a gemm by N, so row n of a plain x @ W.T changes (by ~1e-13) with the batch size.
        y = np.matmul(x[:, None, :], params["weight"].T)[:, 0]
        if "bias" in params:
            y += params["bias"]
        return y, DenseCache(x)

    def backward(
        self, dy: np.ndarray, cache: DenseCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        grads = {"weight": dy.T @ cache.x}
        if "bias" in params:
            grads["bias"] = dy.sum(axis=0)
        return dy @ params["weight"], grads

    def forward_perturbed(
        self, x: np.ndarray, params: Params, name: str, index: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        """y: (P, N, O), copy p with params[name].flat[index[p]] += delta[p].

        y is linear in the parameters: weight[o, j] += d adds d * x[:, j] to output o,
        bias[o] += d adds d to output o.
        """
        y, _ = self.forward(x, params)
        p = np.arange(len(index))
        out = np.repeat(y[None], len(index), axis=0)
        if name == "bias":
            out[p, :, index] += delta[:, None]
        else:
            o, j = np.divmod(index, x.shape[1])
            out[p, :, o] += delta[:, None] * x[:, j].T
        return out

    def perturbed_local(self, x, y, params, name, index, delta):
        """Copy p changes one output of every example: unit o of y, by delta[p] (bias)
        or delta[p] * x[:, j] (weight[o, j]). Returns (P*N, 1) positions and values."""
        if name == "bias":
            o, change = index, np.broadcast_to(delta[:, None], (len(index), len(x)))
        else:
            o, j = np.divmod(index, x.shape[1])
            change = delta[:, None] * x[:, j].T  # (P, N)
        units = np.repeat(o, len(x))[:, None]
        values = y[:, o].T + change  # (P, N): as forward_perturbed adds it
        return units, values.reshape(-1, 1)

    def forward_local(self, x, y, params, rows, index, values):
        """Every output, from a few changed inputs: y[rows] + sum_k (v_k - x_k) W[:, j_k],
        K multiply-adds per output instead of F; a row with more than F/LOCAL_DENSE
        changed inputs is computed whole, exactly as ``forward`` computes it. x: (N, F), y: (N, O);
        rows (R,); index, values (R, K)."""
        weight, n_in = params["weight"], x.shape[1]
        if index.shape[1] == 1 and n_in >= LOCAL_DENSE:  # the commonest case: one input moved
            out = _one_input(x, y, weight, rows, index[:, 0], values[:, 0])
            return np.broadcast_to(np.arange(out.shape[1]), out.shape), out
        change = values - x[rows[:, None], index]
        # a row padded to K repeats its first position (the Local convention): once only
        again = np.zeros(index.shape, dtype=bool)
        again[:, 1:] = index[:, 1:] == index[:, :1]
        change[again] = 0.0
        whole = LOCAL_DENSE * (index.shape[1] - again.sum(axis=1)) > n_in
        out = np.take(y, rows, axis=0)  # a new array
        if not whole.any():  # no row gathered and scattered again
            out += np.einsum("rk,rko->ro", change, weight.T[index])
            return np.broadcast_to(np.arange(out.shape[1]), out.shape), out
        part = np.flatnonzero(~whole)
        if len(part):  # one gather of the K weight columns each row needs, one sum
            columns = weight.T[index[part]]  # (R', K, O)
            out[part] += np.einsum("rk,rko->ro", change[part], columns)
        if whole.any():
            full = x[rows[whole]].copy()
            full[np.arange(int(whole.sum()))[:, None], index[whole]] = values[whole]
            out[whole], _ = self.forward(full, params)
        return np.broadcast_to(np.arange(out.shape[1]), out.shape), out


def _one_input(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, rows: np.ndarray, j: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """(R, O): rows whose input j[r] alone moved to v[r] (x: (N, F), y: (N, O), weight:
    (O, F); rows, j, v: (R,)), each y[rows[r]] + (v[r] - x[rows[r], j[r]]) * W[:, j[r]].

    Built in the gathered weight columns, with no (R, O) temporaries. When the rows are
    whole batches in order whose rows share their moved input (a weight of the layer
    before moved one unit of every example), one column per batch is gathered and the
    base outputs are added as a broadcast (N, O) block: the same products and sums, bit
    for bit (c * w is w * c). np.take gathers rows of a few values three times as fast
    as indexing does, but copies a source that is not contiguous whole first, as weight.T
    is: the weight's columns are gathered by indexing."""
    change = v - x[rows, j]
    dtype = np.result_type(weight, change, y)  # as change * W + y would give
    n, r = len(y), len(rows)
    if n > 1 and r % n == 0:
        batches, at = rows.reshape(-1, n), j.reshape(-1, n)
        if np.all(batches == np.arange(n)) and np.all(at == at[:, :1]):
            out = weight.T[at[:, 0]].astype(dtype, copy=False)[:, None, :] * change.reshape(
                -1, n, 1
            )
            out += y
            return out.reshape(r, -1)
    out = weight.T[j].astype(dtype, copy=False)  # a new (R, O) array
    out *= change[:, None]
    out += y[0] if n == 1 else np.take(y, rows, axis=0)
    return out
