"""The result model: what a check returns and every renderer (table, JSON, JUnit) reads.

Plain dataclasses of numpy arrays and numbers; nothing here prints or decides an exit.

The JSON report is one format among the others, so it lives in ``render/json.py``;
``Report.to_dict`` and ``Report.to_json`` import it when called. The dependency runs one
way, model to renderer: every renderer imports this module only for its annotations
(under TYPE_CHECKING), so there is no import cycle, and loading the model does not load
the renderers until a report is serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exit_codes import ExitCode
from .how_checked import HowChecked


def _is_input(name: str) -> bool:
    """A network input (``input``, ``input.x``) or an isolated layer's input slot."""
    return name == "input" or name.startswith(("input.", "input["))


@dataclass
class TensorCheck:
    """The verdict on one checked tensor.

    analytic, numeric, abs_error, rel_error, failed_mask, kink_mask all have the tensor's
    shape as the user wrote it (``input`` of an unbatched config has no batch axis).
    numeric holds NaN where an element was not checked (sampled or fast mode).
    """

    name: str
    layer: str | None  # None for "input"
    param: str | None
    analytic: np.ndarray
    numeric: np.ndarray
    checked_mask: np.ndarray  # bool
    failed_mask: np.ndarray  # bool
    kink_mask: np.ndarray  # bool: a non-differentiable point proven at the element
    abs_error: np.ndarray  # NaN where not checked
    rel_error: np.ndarray
    mode: HowChecked = HowChecked.FULL
    localised: bool = False  # fast mode: element-wise check run after a failed direction
    diagnosis: str | None = None
    consequence_of: str | None = None  # name of the blamed layer this failure follows from
    taylor_order: float | None = None  # --method taylor: observed order (None: exact)
    taylor_passed: bool | None = None  # --method taylor: the verdict, which ``passed`` returns
    #: the layer whose impurity corrupts this gradient in a real network (purity probes,
    #: engine/purity.py); the tensor then fails whatever its numeric check says, and
    #: ``diagnosis`` says how
    corrupted_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: bool: elements no step resolved (default: none)
    inconclusive_mask: np.ndarray = None  # type: ignore[assignment]
    #: the numeric value's estimated error per element; NaN where not checked
    error_bound: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.mode = HowChecked(self.mode)  # a saved report's string becomes the member
        if self.inconclusive_mask is None:
            self.inconclusive_mask = np.zeros(np.shape(self.analytic), dtype=bool)
        if self.error_bound is None:
            self.error_bound = np.full(np.shape(self.analytic), np.nan)

    @classmethod
    def unchecked(
        cls, name: str, analytic: np.ndarray, mode: HowChecked | str, **fields: Any
    ) -> TensorCheck:
        """A tensor judged without element-wise checks (a passed direction, a Taylor
        test): analytic in the user's shape, numeric all NaN, every mask False."""
        analytic = np.asarray(analytic, dtype=np.float64)
        layer, _, param = ("", "", "") if _is_input(name) else name.rpartition(".")
        return cls(
            name=name,
            layer=layer or None,
            param=param if layer else None,
            analytic=analytic,
            numeric=np.full(analytic.shape, np.nan),
            checked_mask=np.zeros(analytic.shape, dtype=bool),
            failed_mask=np.zeros(analytic.shape, dtype=bool),
            kink_mask=np.zeros(analytic.shape, dtype=bool),
            abs_error=np.full(analytic.shape, np.nan),
            rel_error=np.full(analytic.shape, np.nan),
            mode=mode,
            **fields,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.analytic.shape)

    @property
    def checked(self) -> int:
        return int(np.count_nonzero(self.checked_mask))

    @property
    def failed(self) -> int:
        return int(np.count_nonzero(self.failed_mask))

    @property
    def kinks(self) -> int:
        return int(np.count_nonzero(self.kink_mask))

    @property
    def interrupted(self) -> bool:
        """Its check was stopped part way (Ctrl-C, SIGTERM, a timeout): ``checked`` says
        how far it got."""
        return self.mode == "interrupted"

    @property
    def passed(self) -> bool:
        """Every checked element agreed (or is a kink): no failure, nothing inconclusive,
        no impure layer corrupted its gradient, and its check was not stopped part way
        (a tensor half checked has not passed, whatever its first half said)."""
        if self.corrupted_by is not None or self.interrupted or self.unreached:
            return False
        if self.taylor_passed is not None:
            return self.taylor_passed
        return self.failed == 0 and self.inconclusive == 0

    @property
    def unreached(self) -> bool:
        """The time budget ran out before a single element of it was checked."""
        return self.mode is HowChecked.BUDGET and self.checked == 0

    @property
    def inconclusive(self) -> int:
        """Elements no step resolved (engine/verdict.py): never counted as passed."""
        return int(np.count_nonzero(self.inconclusive_mask))

    @property
    def max_abs_error(self) -> float:
        return _nanmax(self.abs_error)

    @property
    def max_rel_error(self) -> float:
        return _nanmax(self.rel_error)

    @property
    def noise_floor_mask(self) -> np.ndarray:
        """Elements whose analytic and numeric values are both ~0: they passed, and
        neither value is larger than the noise the verdict allowed (``error_bound``) or
        than their own difference. The relative error of such an element (up to 1.0)
        says nothing about the gradient; ``max_rel_error`` keeps it, as the contract
        defines it, and the table shows "both ~0" instead."""
        judged = self.checked_mask & ~self.failed_mask & ~self.inconclusive_mask
        a, n = np.asarray(self.analytic, float), np.asarray(self.numeric, float)
        with np.errstate(invalid="ignore"):
            size = np.fmax(np.abs(a), np.abs(n))
            noise = np.fmax(np.asarray(self.error_bound, float), np.abs(a - n))
            return judged & (size <= noise)

    @property
    def max_rel_error_above_floor(self) -> float:
        """``max_rel_error`` over the elements not at the noise floor (0 when none)."""
        rel = np.where(self.noise_floor_mask, np.nan, np.asarray(self.rel_error, float))
        return _nanmax(rel)


@dataclass(frozen=True)
class Mismatch:
    """One element of an expectation that disagrees: its index in the tensor's
    coordinates, in the shape the user wrote; the expected and actual values; and the
    tolerance in force for it (engine/expectations.py)."""

    index: tuple[int, ...]
    expected: float
    actual: float
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": list(self.index),
            "expected": self.expected,
            "actual": self.actual,
            "tolerance": self.tolerance,
        }


@dataclass
class ExpectationResult:
    """A hand-derived value compared with the engine's; arrays in the user's shape.

    name: the key as written (``conv1.weight.grad[0, 0, 1, 1]``); base: the tensor's key
    without the index. mismatches: every element that disagrees. tolerance: the rule
    in force, as the JSON report describes it: ``rule`` (``given``, ``written`` or
    ``default``), ``description`` (``±0.00005, from 4 written decimals``), and its
    numbers (``atol``/``rtol``, or the ``min`` and ``max`` half units).
    """

    name: str
    expected: np.ndarray
    actual: np.ndarray
    passed: bool
    max_abs_error: float
    mismatches: list[Mismatch] = field(default_factory=list)
    tolerance: dict[str, Any] = field(default_factory=dict)
    base: str = ""

    def __post_init__(self) -> None:
        self.base = self.base or self.name


@dataclass(frozen=True)
class LayerProblem:
    """What a purity probe found wrong with a layer (engine/purity.py), by name.

    kind: ``mutates_input``, ``mutates_params``, ``mutates_dy``, ``mutates_cache``,
    ``backward_not_repeatable``, ``overwrites_output``, ``not_batch_independent``,
    ``not_per_example``, ``fast_path_differs`` (engine/fastpaths.py); message: what the
    layer did and how to fix it; failure: True when it fails the check (exit 1, the layer
    blamed), False for a warning.
    """

    kind: str
    message: str
    failure: bool = False

    @property
    def severity(self) -> str:
        return "error" if self.failure else "warning"


@dataclass
class LayerVerdict:
    """A layer's own backward checked in isolation (a VJP against that layer alone),
    and what the purity probes found (``problems``)."""

    name: str
    type: str
    passed: bool
    max_abs_error: float
    max_rel_error: float
    kinks: int
    checked: int = 0
    #: per tensor of the isolated layer ("input" = its dx): True when every element
    #: passed, False when one failed, None when one was inconclusive and none failed
    tensors_ok: dict[str, bool | None] = field(default_factory=dict)
    #: what is wrong with this layer's own backward ("dx: ...", "weight: ..."), or None
    diagnosis: str | None = None
    #: random directions it was checked along (engine/fast.py); 0 = element-wise only.
    #: A layer with directions > 0 and checked == 0 passed on its directions alone.
    directions: int = 0
    #: elements no step resolved in its isolated check
    inconclusive: int = 0
    #: what the purity probes found (engine/purity.py); a failing one fails the layer
    problems: list[LayerProblem] = field(default_factory=list)
    #: what disagrees in its isolated check reaches no checked tensor's gradient (an
    #: ``--only`` selection left it out): shown, not counted in the verdict
    unselected: bool = False
    #: (float32 check) its tensors whose isolated failure the same backward run in
    #: float64 does not repeat: float32 arithmetic, not the code; inconclusive in
    #: ``tensors_ok`` (engine/float32_recheck.py)
    float32_only: list[str] = field(default_factory=list)
    #: every element of every tensor was checked one by one (not a sample, not directions
    #: alone): only such a verdict vouches for the chain rule (engine/kinks.py)
    every_element: bool = False

    @property
    def wrong(self) -> bool:
        """It is to blame: its own backward failed somewhere in isolation, or a purity
        problem fails it (an inconclusive isolated check blames nobody)."""
        if self.impure or self.disagrees:
            return True
        return not self.passed and not self.tensors_ok and self.inconclusive == 0

    @property
    def disagrees(self) -> bool:
        """Its own backward disagrees with its numeric VJP in isolation: some element of
        it failed there (contract section 5 applied to the layer alone)."""
        return bool(self.failed_tensors)

    @property
    def failed_tensors(self) -> list[str]:
        """Its tensors (``input``, ``<layer>.weight``, ...) with an element that failed in
        isolation."""
        return [t for t, ok in self.tensors_ok.items() if ok is False]

    @property
    def own_backward_ok(self) -> bool:
        """Its own backward agreed with its numeric VJP in isolation (purity aside)."""
        if not self.tensors_ok:
            return self.passed or self.impure
        return all(ok is True for ok in self.tensors_ok.values())

    @property
    def impure(self) -> bool:
        """A purity problem fails this layer."""
        return any(p.failure for p in self.problems)


@dataclass
class RunError:
    """Why a run ended without a verdict: the JSON report's ``error`` (contract section 1).

    kind: ``config``, ``plugin``, ``usage``, ``too_large``, ``numerical``, ``memory``,
    ``timeout``, ``budget`` (a time budget that reached nothing of a tensor),
    ``crashed``, ``report`` (a report could not be written), ``output`` (stdout's
    reader left) or ``internal`` (``inconclusive`` is the JSON's own, render/json.py);
    message: what the user was told; file, line, key: where, when one place is to blame
    (key is a key path such as ``layers[1].stride``); exit_code: 2, 3 or 4.
    """

    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    key: str | None = None
    exit_code: int = ExitCode.INVALID

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "key": self.key,
        }


@dataclass
class Report:
    config: str
    loss: float
    settings: dict[str, Any]
    checks: list[TensorCheck] = field(default_factory=list)
    expectations: list[ExpectationResult] = field(default_factory=list)
    layers: list[LayerVerdict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    total_s: float = 0.0
    forward_passes: int = 0
    name: str = ""
    #: stopped before the end: Ctrl-C, SIGTERM, a timeout
    interrupted: bool = False
    #: the exit code of an interruption (130 Ctrl-C, 143 SIGTERM)
    interrupt_code: int = ExitCode.INTERRUPTED
    #: set when the run ended without a verdict (the exit code is then the error's)
    error: RunError | None = None
    #: the backward pass of one example, layer by layer, for a network small enough
    #: (``engine/explain_view.py``): the JSON report's ``explain``, which the HTML
    #: report draws; None when not made
    explain: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        """A gradient or an expectation disagrees, an impure layer corrupts one, or a
        layer's own backward disagrees in isolation (float64; exit 1)."""
        return (
            any(c.failed for c in self.checks if c.taylor_passed is None)
            or any(c.taylor_passed is False for c in self.checks)
            or any(c.corrupted_by is not None for c in self.checks)
            or not all(e.passed for e in self.expectations)
            or any(v.impure for v in self.layers)
            or (not self.float32 and bool(self.disagreeing_layers()))
        )

    @property
    def inconclusive(self) -> bool:
        """Some element could not be resolved, or (float32) a layer's own backward
        disagrees in isolation by what may be the analytic side's float32 rounding, and
        nothing failed (exit 3)."""
        if self.failed:
            return False
        return any(c.inconclusive for c in self.checks) or bool(self.disagreeing_layers())

    @property
    def float32(self) -> bool:
        """The analytic side ran in float32 (``settings['dtype']``)."""
        return self.settings.get("dtype") == "float32"

    def disagreeing_layers(self) -> list[str]:
        """The layers (and ``loss``) whose own backward disagrees in isolation. A wrong
        backward always does; the network-level check may not resolve it when the error
        is small against the rounding of the whole loss (a dW 1e-5 too large in a
        hidden layer of LeNet-5 at batch 8), and the verdict stays the layer's."""
        return [v.name for v in self.layers if v.disagrees and not v.unselected]

    @property
    def passed(self) -> bool:
        """True only for exit code 0: every checked gradient and expectation agrees, and
        the run was neither stopped nor ended by an error."""
        return self.exit_code == 0

    @property
    def exit_code(self) -> ExitCode:
        """The process's exit code for this report: an error's, an interruption's, or
        the verdict's."""
        if self.error is not None:
            return ExitCode(self.error.exit_code)
        if self.interrupted:
            return ExitCode(self.interrupt_code)
        return self.verdict_code

    @property
    def verdict_code(self) -> ExitCode:
        """The verdict on what was checked, however the run ended: 1 on a disagreement,
        3 when something could not be resolved, else 0."""
        if self.failed:
            return ExitCode.DISAGREE
        return ExitCode.NOT_CARRIED_OUT if self.inconclusive else ExitCode.OK

    def check(self, name: str) -> TensorCheck:
        """The check of one tensor by name (KeyError if it was not checked)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def blamed_layers(self) -> list[str]:
        """The layers (and ``loss``) whose own backward is wrong."""
        return [v.name for v in self.layers if v.wrong]

    def summary(self) -> str:
        """The verdict and what went wrong in at most 10 lines, however large the
        network: the verdict line with the exit code, the error, the blamed layers, the
        failing tensors and expectations, the config. For test failures and CI logs::

            assert report.passed, report.summary()
        """
        from .render.summary import render_summary

        return render_summary(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (schema ``gradcheck-report/1``) as plain data."""
        from .render.json import report_to_dict

        return report_to_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON report as text, as ``gradcheck run --json`` writes it (less the final
        newline)."""
        from .render.json import dumps

        return dumps(self, indent=indent)


def _nanmax(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    if a.size == 0 or np.all(np.isnan(a)):
        return 0.0
    return float(np.nanmax(a))
