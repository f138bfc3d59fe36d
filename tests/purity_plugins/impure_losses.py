"""Losses that break purity or the dtype protocol; each marked ``# BUG:``."""

from __future__ import annotations

import numpy as np

import gradcheck_cli as gc


def _rows(a):
    return a.reshape(len(a), -1).sum(axis=1)


@gc.register_loss("mse_inplace_y")
class MseInplaceY(gc.Loss):
    """1/2 sum((y - t)^2), with y - t computed into y itself."""

    def forward(self, y, target):
        y -= target  # BUG: y is the network's output, which the layer before may keep
        return 0.5 * _rows(y**2), y

    def backward(self, diff):
        return diff.copy()


@gc.register_loss("mse_buffer")
class MseBuffer(gc.Loss):
    """1/2 sum((y - t)^2), dy accumulated in a buffer never zeroed."""

    buf = None

    def forward(self, y, target):
        diff = y - target
        return 0.5 * _rows(diff**2), diff

    def backward(self, diff):
        if self.buf is None:
            self.buf = np.zeros_like(diff)
        self.buf += diff  # BUG
        return self.buf


@gc.register_loss("mse_noisy")
class MseNoisy(gc.Loss):
    """1/2 sum((y - t)^2) plus unseeded noise."""

    def forward(self, y, target):
        diff = y - target
        return 0.5 * _rows(diff**2) + 1e-3 * np.random.rand(len(y)), diff  # BUG

    def backward(self, diff):
        return diff


@gc.register_loss("mse_float32")
class MseFloat32(gc.Loss):
    """1/2 sum((y - t)^2), in float32."""

    def forward(self, y, target):
        diff = (y - target).astype(np.float32)  # BUG
        return 0.5 * _rows(diff**2), diff

    def backward(self, diff):
        return diff


@gc.register_loss("mse_complex_dy")
class MseComplexDy(gc.Loss):
    """1/2 sum((y - t)^2), whose dy is complex."""

    def forward(self, y, target):
        diff = y - target
        return 0.5 * _rows(diff**2), diff

    def backward(self, diff):
        return diff + 0j  # BUG
