"""The maths: forward, backward, numeric differences, comparison. No I/O, no printing."""

from .check import CheckInterrupted, run_check
from .passes import Gradients, Trace, backward, forward

__all__ = ["CheckInterrupted", "Gradients", "Trace", "backward", "forward", "run_check"]
