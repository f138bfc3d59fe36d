"""Layers that return arrays of the wrong dtype: protocol errors (exit 2)."""

from __future__ import annotations

import numpy as np

import gradcheck_cli as gc


class _Double(gc.Layer):
    """y = 2x, with one array of the wrong dtype."""

    param_names = ("gain",)

    def init_params(self, in_shape, rng):
        return {"gain": np.ones(in_shape)}

    def forward(self, x, params):
        return 2 * x * params["gain"], x

    def backward(self, dy, x, params):
        return 2 * dy * params["gain"], {"gain": (2 * dy * x).sum(axis=0)}


@gc.register_layer("complex_output")
class ComplexOutput(_Double):
    def forward(self, x, params):
        y, cache = super().forward(x, params)
        return y.astype(np.complex128), cache  # BUG: imaginary part 0, still complex


@gc.register_layer("complex_grad")
class ComplexGrad(_Double):
    def backward(self, dy, x, params):
        dx, grads = super().backward(dy, x, params)
        return dx, {"gain": grads["gain"] + 1e-3j}  # BUG


@gc.register_layer("complex_dx")
class ComplexDx(_Double):
    def backward(self, dy, x, params):
        dx, grads = super().backward(dy, x, params)
        return dx * (1 + 0j), grads  # BUG


@gc.register_layer("float32_output")
class Float32Output(_Double):
    def forward(self, x, params):
        y, cache = super().forward(x, params)
        return y.astype(np.float32), cache  # BUG


@gc.register_layer("float32_grad")
class Float32Grad(_Double):
    def backward(self, dy, x, params):
        dx, grads = super().backward(dy, x, params)
        return dx, {"gain": grads["gain"].astype(np.float32)}  # BUG


@gc.register_layer("object_grad")
class ObjectGrad(_Double):
    def backward(self, dy, x, params):
        dx, grads = super().backward(dy, x, params)
        return dx, {"gain": np.array(list(grads["gain"]), dtype=object)}  # BUG


@gc.register_layer("int_dx")
class IntDx(_Double):
    def backward(self, dy, x, params):
        dx, grads = super().backward(dy, x, params)
        return np.rint(dx).astype(np.int64), grads  # BUG


@gc.register_layer("bool_output")
class BoolOutput(_Double):
    def forward(self, x, params):
        return x > 0, x  # BUG


@gc.register_layer("float64_in_float32")
class Float64InFloat32(_Double):
    """Computes in float64 whatever it is handed: accepted in a float32 check."""

    def forward(self, x, params):
        return 2 * x.astype(np.float64) * params["gain"], x

    def backward(self, dy, x, params):
        return (2 * dy.astype(np.float64) * params["gain"]), {
            "gain": (2 * dy * x).sum(axis=0).astype(np.float64)
        }
