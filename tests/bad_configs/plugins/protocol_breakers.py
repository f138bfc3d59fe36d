"""Layers that each break the layer protocol in one way, for the bad-config corpus.

Each is correct except for its one mistake, so the run can only fail on that mistake.
"""

import sys

import numpy as np

import gradcheck_cli as gc


class _Scale(gc.Layer):
    """y = x * w elementwise with one weight per feature; flat input (F,)."""

    param_names = ("w",)

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, in_shape, rng):
        return {"w": rng.uniform(0.5, 1.5, in_shape)}

    def forward(self, x, params):
        return x * params["w"], x

    def backward(self, dy, cache, params):
        return dy * params["w"], {"w": (dy * cache).sum(axis=0)}


@gc.register_layer("scale_ok")
class ScaleOk(_Scale):
    pass


@gc.register_layer("grad_wrong_shape")
class GradWrongShape(_Scale):
    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx, {"w": grads["w"][:-1]}  # one element short


@gc.register_layer("grad_missing_key")
class GradMissingKey(_Scale):
    def backward(self, dy, cache, params):
        dx, _ = super().backward(dy, cache, params)
        return dx, {}


@gc.register_layer("grad_extra_key")
class GradExtraKey(_Scale):
    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx, {**grads, "bias": np.zeros(1)}


@gc.register_layer("dx_wrong_shape")
class DxWrongShape(_Scale):
    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx[:, :-1], grads


@gc.register_layer("forward_raises")
class ForwardRaises(_Scale):
    def forward(self, x, params):
        raise ValueError("operands could not be broadcast together")


@gc.register_layer("backward_raises")
class BackwardRaises(_Scale):
    def backward(self, dy, cache, params):
        return cache.no_such_attribute, {}


@gc.register_layer("forward_wrong_shape")
class ForwardWrongShape(_Scale):
    def forward(self, x, params):
        return (x * params["w"]).sum(axis=1), x


@gc.register_layer("forward_not_a_pair")
class ForwardNotAPair(_Scale):
    def forward(self, x, params):
        return x * params["w"]


@gc.register_layer("forward_exits")
class ForwardExits(_Scale):
    def forward(self, x, params):
        sys.exit(7)


@gc.register_layer("init_raises")
class InitRaises(_Scale):
    def __init__(self, size: int = 3):
        raise RuntimeError(f"cannot build with size {size}")


@gc.register_layer("output_shape_raises")
class OutputShapeRaises(_Scale):
    def output_shape(self, in_shape):
        return in_shape[5]


@gc.register_layer("perturbed_raises")
class PerturbedRaises(_Scale):
    supports_perturbed = True

    def forward_perturbed(self, x, params, name, index, delta):
        raise IndexError("index 3 is out of bounds")


@gc.register_layer("perturbed_wrong_shape")
class PerturbedWrongShape(_Scale):
    supports_perturbed = True

    def forward_perturbed(self, x, params, name, index, delta):
        return np.zeros((len(index), 2))


@gc.register_layer("wrong_gradient")
class WrongGradient(_Scale):
    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx, {"w": 2 * grads["w"]}  # a factor of 2 too large


@gc.register_layer("exp_overflow")
class ExpOverflow(gc.Layer):
    """y = exp(1000 * x): overflows to Inf for any x above about 0.71."""

    def forward(self, x, params):
        y = np.exp(1000.0 * x)
        return y, y

    def backward(self, dy, cache, params):
        return 1000.0 * cache * dy, {}


@gc.register_loss("loss_backward_wrong_shape")
class LossBackwardWrongShape(gc.Loss):
    target_name = None

    def forward(self, y, target):
        return (y**2).sum(axis=1) / 2, y

    def backward(self, cache):
        return cache[:, :1]
