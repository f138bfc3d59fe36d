"""Where a check is: the engine's progress events.

The engine hands its ``progress`` callback a ``CheckProgress`` each time elements are
finished. An event is a snapshot of the whole state, not a difference from the last one,
so that a reader may drop any of them and keep only the latest (the worker's pipe sends
the latest every tenth of a second) and still know everything: the plan (which tensors,
how many elements each, in the order they are checked), the tensor being checked and how
far it is through it, and the seconds each finished tensor took. It is plain, picklable
data; fields are only ever added, with defaults, so that every sender (the engine in
this process, a worker over a pipe, one of several ``--jobs`` workers) and every reader
(the command line's progress bar, cli/progress.py) keep agreeing.

No I/O here: drawing the bar and estimating the time left are the command line's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: The stages of a check, in order: ``tensors`` (each selected tensor, element by element
#: or by directions) and ``layers`` (each layer's own backward in isolation, to blame).
STAGES = ("tensors", "layers")


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the plan: its name, the elements to check, and ``weight``, the
    engine's guess of one element's relative cost (the bytes a perturbed copy computes
    again downstream of it), which orders the cost of tensors not yet measured."""

    name: str
    elements: int
    weight: float = 1.0


@dataclass(frozen=True)
class CheckProgress:
    """A snapshot of a check's progress.

    plan: every tensor to check, in order; index: the position in ``plan`` of the tensor
    being checked (``len(plan)`` once every tensor is done; -1 before the first);
    tensor_done: elements of that tensor finished; spent: seconds each finished tensor
    took (``plan[:index]``, in order); tensor_seconds: seconds spent on the current
    tensor so far; clock: seconds since the check's first tensor began (the engine's own
    clock, so that a reader needs no clock of its own); stage: one of ``STAGES``.
    """

    plan: tuple[PlannedTensor, ...] = ()
    index: int = -1
    tensor_done: int = 0
    spent: tuple[float, ...] = ()
    tensor_seconds: float = 0.0
    clock: float = 0.0
    stage: str = "tensors"

    @classmethod
    def counts(cls, done: int, total: int) -> CheckProgress:
        """A snapshot from element counts alone (one anonymous tensor), for a caller
        that knows no more."""
        return cls(plan=(PlannedTensor("", total),), index=0, tensor_done=done)

    @property
    def tensor(self) -> PlannedTensor | None:
        """The tensor being checked, or None before the first and after the last."""
        return self.plan[self.index] if 0 <= self.index < len(self.plan) else None

    @property
    def total(self) -> int:
        """Elements to check over every tensor."""
        return sum(t.elements for t in self.plan)

    @property
    def done(self) -> int:
        """Elements finished over every tensor."""
        finished = sum(t.elements for t in self.plan[: max(self.index, 0)])
        return finished + (self.tensor_done if self.tensor is not None else 0)


#: The engine's ``progress`` callback: called with each new snapshot.
ProgressCallback = Callable[[CheckProgress], None]


class Tracker:
    """Counts what a check finishes, tensor by tensor, and hands ``progress`` a snapshot
    after each change. ``begin(name)`` starts a tensor of the plan (finishing those
    before it); ``tick(k)`` counts k more of its elements; ``stage("layers")`` ends the
    tensors. Without a callback it only counts.
    """

    def __init__(
        self,
        plan: Sequence[PlannedTensor],
        progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.plan = tuple(plan)
        self.position = {t.name: k for k, t in enumerate(self.plan)}
        self.progress = progress
        self.clock = clock
        self.started = clock()
        self.index = -1
        self.tensor_done = 0
        self.tensor_started = self.started
        self.spent: tuple[float, ...] = ()
        self.current_stage = STAGES[0]

    def begin(self, name: str) -> None:
        """Start the tensor ``name`` (one of the plan's; the ones before it are done)."""
        self._advance(self.position[name])
        self._send()

    def tick(self, k: int) -> None:
        """k more elements of the current tensor are finished."""
        self.tensor_done += k
        self._send()

    def stage(self, name: str) -> None:
        """Every tensor is done; the check moves on to stage ``name``."""
        self._advance(len(self.plan))
        self.current_stage = name
        self._send()

    def snapshot(self) -> CheckProgress:
        now = self.clock()
        return CheckProgress(
            plan=self.plan,
            index=self.index,
            tensor_done=self.tensor_done,
            spent=self.spent,
            tensor_seconds=now - self.tensor_started if self.index >= 0 else 0.0,
            clock=now - self.started,
            stage=self.current_stage,
        )

    def _advance(self, index: int) -> None:
        """Finish the tensors before ``index``: the current one gets its time, the ones
        skipped over (nothing to check) none."""
        now = self.clock()
        if self.index < 0:
            self.started = now  # the clock counts from the first tensor
        spent = list(self.spent)
        if 0 <= self.index < index:
            spent.append(now - self.tensor_started)
        spent += [0.0] * (min(index, len(self.plan)) - len(spent))
        self.spent = tuple(spent)
        self.index, self.tensor_done, self.tensor_started = index, 0, now

    def _send(self) -> None:
        if self.progress is not None:
            self.progress(self.snapshot())
