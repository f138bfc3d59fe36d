"""A perturbed evaluation that leaves the forward's domain by raising.

A step can leave a forward's domain: a probability of 1.1e-7 moved by 5e-7 into a log.
numpy's log returns NaN or -inf there, which the numeric side meets by taking smaller
steps (engine/verdict.py DOMAIN_SHRINKS, engine/fast.py, engine/taylor.py). Scalar code
raises instead: ``math.log`` and ``math.sqrt`` raise ``ValueError: math domain error``,
a division ``ZeroDivisionError``, ``np.errstate(all="raise")`` FloatingPointError. A hunt
on micrograd-style layers found a correct ``math.log`` after a softmax ending the run
with exit 2 ("the config is invalid") in full, sample and Taylor mode, while the same
layer with ``np.log`` passed. Such an exception, raised by a perturbed copy, is taken as
the NaN numpy would have given: the copy is evaluated alone, and gets NaN. Any other
exception is a plugin's mistake and ends the run as before (exit 2, the layer named).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PluginError


def left_domain(exc: BaseException) -> bool:
    """``exc`` (a PluginError, or what it wraps) is an arithmetic exception or a math
    domain error: the forward's way of saying its input lies outside its domain."""
    seen: set[int] = set()
    at: BaseException | None = exc
    while at is not None and id(at) not in seen:
        seen.add(id(at))
        if isinstance(at, ArithmeticError):
            return True
        if isinstance(at, ValueError) and "math domain error" in str(at):
            return True
        at = at.__cause__ or at.__context__
    return False


def losses(objective, tensor: str, index: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``objective.losses`` (P,), NaN for each copy whose forward left its domain by
    raising (the copies then run one at a time)."""
    try:
        return objective.losses(tensor, index, delta)
    except PluginError as exc:
        if not left_domain(exc):
            raise
    out = np.empty(len(index))
    for k in range(len(index)):
        try:
            out[k] = objective.losses(tensor, index[k : k + 1], delta[k : k + 1])[0]
        except PluginError as exc:
            if not left_domain(exc):
                raise
            out[k] = math.nan
    return out


def loss_at(objective, values) -> float:
    """``objective.loss_at(values)``, or NaN where the forward left its domain by raising."""
    try:
        return float(objective.loss_at(values))
    except PluginError as exc:
        if not left_domain(exc):
            raise
        return math.nan
