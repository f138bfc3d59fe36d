"""A plugin that registers a loss under a built-in name (mse)."""

from __future__ import annotations

import gradcheck_cli as gc
from gradcheck_cli.losses.mse import MSE


@gc.register_loss("mse")
class MyMSE(MSE):
    """The built-in mse, re-registered under its own name."""
