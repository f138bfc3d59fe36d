"""How a tensor was checked: one of a few ways, named in the report's ``mode``.

Its own module, with no imports of the package, so that the report model, the engine
and the renderers (which import the report model only for annotations) can all name it.
"""

from __future__ import annotations

from enum import Enum


class HowChecked(str, Enum):
    """How a tensor was checked (``mode`` in the JSON report)."""

    FULL = "full"  # every element
    SAMPLE = "sample"  # --sample K: K random elements
    FAST = "fast"  # random directions first; ``localised`` when element-wise after
    BUDGET = "budget"  # --time-budget: the elements the budget reached
    TAYLOR = "taylor"  # --method taylor: directions only, no element values
    INTERRUPTED = "interrupted"  # Ctrl-C or a timeout: the elements finished before it

    def __str__(self) -> str:  # the value, in messages and f-strings
        return self.value

    __format__ = str.__format__
