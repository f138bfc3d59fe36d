"""A plugin that fails while it is imported."""

import gradcheck_cli as gc

SETTINGS = {"scale": 2.0}
FACTOR = SETTINGS["sacle"]  # a typo: KeyError at import time


@gc.register_layer("never_registered")
class Never(gc.Layer):
    pass
