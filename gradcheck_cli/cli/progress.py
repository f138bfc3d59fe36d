"""The progress bar of ``gradcheck run``: which tensor, how far through it, and the time
left, estimated from what each tensor has cost so far.

The engine sends snapshots (``engine.progress.CheckProgress``); ``Eta`` turns them into
an estimate and ``LazyProgress`` draws it with rich, on stderr, only on a terminal, not
with ``-q``, and only once a check has run a second, so that quick checks print nothing
extra.

How the time left is estimated (``Eta``). Elements of different tensors cost very
different times (an input element of a batched CNN costs hundreds of times a dense
weight's), so no single rate will do:

- a finished tensor's cost per element is what it took, divided by its elements;
- the tensor being checked costs what its recent elements cost: the rate over the last
  ``RECENT`` seconds of its own snapshots (all of them, until it has run that long), so
  that a machine that gets busier or quieter is followed;
- a tensor not yet started is predicted from the engine's guess of its relative cost
  per element (``PlannedTensor.weight``), scaled by the seconds per unit of weight
  measured so far; its own measurement replaces that prediction as soon as it starts.

The bar's fill is the share of the estimated work done, not of the elements.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine package loads numpy: this module is imported by `run`
    from rich.console import Console
    from rich.progress import Progress

    from ..engine.progress import CheckProgress

#: A progress bar appears only for checks that run longer than this (seconds).
PROGRESS_DELAY = 1.0
#: Seconds of the current tensor's recent snapshots its rate is measured over.
RECENT = 5.0
#: The bar's resolution: its total, in steps of the estimated work.
STEPS = 1000


class Eta:
    """The time left of a check, from its progress snapshots in order (``update``)."""

    def __init__(self, recent: float = RECENT):
        self.recent = recent
        self.last: CheckProgress | None = None
        #: (clock, elements done) of the current tensor, over the last ``recent`` seconds
        self.window: deque[tuple[float, int]] = deque()

    def update(self, snapshot: CheckProgress) -> None:
        if self.last is None or snapshot.index != self.last.index:
            self.window.clear()
        self.last = snapshot
        if snapshot.tensor is None:
            return
        self.window.append((snapshot.tensor_seconds, snapshot.tensor_done))
        while len(self.window) > 2 and self.window[-1][0] - self.window[1][0] >= self.recent:
            self.window.popleft()

    def costs(self) -> list[float | None]:
        """Seconds per element of each tensor of the plan: measured (finished tensors and
        the current one), predicted from its weight (the rest), or None when nothing has
        been measured yet to predict from."""
        p = self.last
        if p is None:
            return []
        measured: dict[int, float] = {}
        seconds = units = 0.0
        for k, spent in enumerate(p.spent):
            t = p.plan[k]
            if t.elements:
                measured[k] = spent / t.elements
                seconds, units = seconds + spent, units + t.elements * t.weight
        current = self._current_cost()
        if current is not None:
            measured[p.index] = current
            seconds += p.tensor_seconds
            units += p.tensor_done * p.plan[p.index].weight
        per_unit = seconds / units if units > 0 else None
        return [
            measured.get(k, None if per_unit is None else per_unit * t.weight)
            for k, t in enumerate(p.plan)
        ]

    def remaining(self) -> float | None:
        """Seconds left in the tensors stage, or None when there is nothing to go by
        yet (or after the tensors, where the engine says no more)."""
        p = self.last
        if p is None or p.tensor is None:
            return None
        costs = self.costs()
        left = 0.0
        for k in range(p.index, len(p.plan)):
            cost = costs[k]
            if cost is None:
                return None
            elements = p.plan[k].elements - (p.tensor_done if k == p.index else 0)
            left += max(elements, 0) * cost
        return left

    def fraction(self) -> float:
        """The share of the tensors stage's estimated work that is done, 0 to 1 (by
        elements until there is an estimate)."""
        p = self.last
        if p is None:
            return 0.0
        if p.tensor is None:
            return 1.0 if p.index >= len(p.plan) else 0.0
        left = self.remaining()
        if left is None:
            return p.done / p.total if p.total else 0.0
        spent = sum(p.spent) + p.tensor_seconds
        return spent / (spent + left) if spent + left > 0 else 0.0

    def _current_cost(self) -> float | None:
        """The current tensor's recent seconds per element (None: none finished yet)."""
        p = self.last
        if p is None or p.tensor is None or p.tensor_done == 0:
            return None
        (t0, d0), (t1, d1) = self.window[0], self.window[-1]
        if d1 > d0 and t1 > t0:
            return (t1 - t0) / (d1 - d0)
        return p.tensor_seconds / p.tensor_done


def describe(snapshot: CheckProgress) -> str:
    """What the check is doing (after ``checking``): ``conv1.weight (3 of 7): 120/432``."""
    if snapshot.stage != "tensors":
        return "each layer's own backward"
    t = snapshot.tensor
    if t is None:
        return "starting"
    name = t.name or "elements"
    where = f" ({snapshot.index + 1} of {len(snapshot.plan)})" if len(snapshot.plan) > 1 else ""
    return f"{name}{where}: {snapshot.tensor_done:,}/{t.elements:,}"


def format_left(seconds: float | None) -> str:
    """``0:01:36 left``, or ``estimating…`` when there is no estimate yet."""
    if seconds is None:
        return "estimating…"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d} left"


class LazyProgress:
    """The engine's progress callback for the command line: feeds ``Eta`` with every
    snapshot and, once the check has run ``delay`` seconds, draws a rich bar on
    ``console``; nothing at all when not ``enabled`` (stderr is not a terminal, or -q).
    Called with a ``CheckProgress``, or with ``(done, total)`` by a caller that knows
    no more."""

    def __init__(self, console: Console, *, enabled: bool, delay: float = PROGRESS_DELAY):
        self.console = console
        self.enabled = enabled
        self.delay = delay
        self.started = time.monotonic()
        self.eta = Eta()
        self._bar: Progress | None = None
        self._task: Any = None

    def __call__(self, snapshot: Any, total: int | None = None) -> None:
        if not self.enabled:
            return
        if total is not None:
            from ..engine.progress import CheckProgress

            snapshot = CheckProgress.counts(int(snapshot), total)
        self.eta.update(snapshot)
        if self._bar is None and time.monotonic() - self.started < self.delay:
            return
        layers = snapshot.stage != "tensors"
        fields = {
            "total": None if layers else STEPS,  # None: rich pulses the bar
            "completed": 0 if layers else round(STEPS * self.eta.fraction()),
            "what": describe(snapshot),
            "left": "" if layers else format_left(self.eta.remaining()),
        }
        if self._bar is None:
            self._bar, self._task = self._start_bar(fields)
        elif layers and self._bar.tasks[0].total is not None:
            # rich cannot take a total back: a task of no total replaces it
            self._bar.remove_task(self._task)
            self._task = self._bar.add_task("check", **fields)
        else:
            self._bar.update(self._task, **fields)

    def _start_bar(self, fields: dict[str, Any]) -> tuple[Progress, Any]:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        bar = Progress(
            TextColumn("checking {task.fields[what]}"),
            BarColumn(),
            TaskProgressColumn(text_format_no_percentage=""),
            TextColumn("{task.fields[left]}"),
            console=self.console,
            transient=True,
        )
        task = bar.add_task("check", **fields)
        bar.start()
        return bar, task

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
