"""Layers that end or stall the process running them, and layers that hand back arrays
that hold no real numbers, for the bad-config corpus.

The process-ending ones can only run under the supervised command (``via=subprocess``):
in-process they would end the test run itself.
"""

import ctypes
import os
import signal
import sys
import time

import numpy as np

import gradcheck_cli as gc


class _Same(gc.Layer):
    """y = x: correct except for the one thing each subclass does."""

    def forward(self, x, params):
        return x * 1.0, None

    def backward(self, dy, cache, params):
        return dy * 1.0, {}


@gc.register_layer("exits_process")
class ExitsProcess(_Same):
    def forward(self, x, params):
        os._exit(0)  # no exception, no cleanup: the process is simply gone


@gc.register_layer("segfaults")
class Segfaults(_Same):
    def forward(self, x, params):
        ctypes.string_at(0)  # reads address 0: SIGSEGV


@gc.register_layer("kills_itself")
class KillsItself(_Same):
    def forward(self, x, params):
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does


@gc.register_layer("hangs")
class Hangs(_Same):
    def forward(self, x, params):
        while True:
            time.sleep(0.05)


@gc.register_layer("writes_to_fd1")
class WritesToFd1(_Same):
    def forward(self, x, params):
        os.write(1, b"written to file descriptor 1\n")
        print("printed by the plugin")
        sys.stdout.flush()
        return super().forward(x, params)


@gc.register_layer("object_gradient")
class ObjectGradient(_Same):
    def backward(self, dy, cache, params):
        return dy.astype(object), {}


@gc.register_layer("complex_gradient")
class ComplexGradient(_Same):
    def backward(self, dy, cache, params):
        return dy.astype(complex), {}


@gc.register_layer("object_output")
class ObjectOutput(_Same):
    def forward(self, x, params):
        return x.astype(object), None


@gc.register_layer("exits_in_init")
class ExitsInInit(_Same):
    def __init__(self):
        sys.exit(0)  # before it was caught, this ended gradcheck with exit 0 and no output
