"""The result model: what a check returns and every renderer (table, JSON, JUnit) reads.

Plain dataclasses of numpy arrays and numbers; nothing here prints or decides an exit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "gradcheck-report/1"


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
    kink_mask: np.ndarray  # bool: a step crossed a non-differentiable point
    abs_error: np.ndarray  # NaN where not checked
    rel_error: np.ndarray
    mode: str = "full"  # full | sample | fast | budget
    localised: bool = False  # fast mode: element-wise check run after a failed direction
    diagnosis: str | None = None
    consequence_of: str | None = None  # name of the blamed layer this failure follows from
    taylor_order: float | None = None  # --method taylor: observed order (None: exact)
    taylor_passed: bool | None = None  # --method taylor: the verdict, which ``passed`` returns
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unchecked(cls, name: str, analytic: np.ndarray, mode: str, **fields: Any) -> TensorCheck:
        """A tensor judged without element-wise checks (a passed direction, a Taylor
        test): analytic in the user's shape, numeric all NaN, every mask False."""
        analytic = np.asarray(analytic, dtype=np.float64)
        layer, _, param = name.rpartition(".")
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
        return int(self.checked_mask.sum())

    @property
    def failed(self) -> int:
        return int(self.failed_mask.sum())

    @property
    def kinks(self) -> int:
        return int(self.kink_mask.sum())

    @property
    def passed(self) -> bool:
        if self.taylor_passed is not None:
            return self.taylor_passed
        return self.failed == 0

    @property
    def max_abs_error(self) -> float:
        return _nanmax(self.abs_error)

    @property
    def max_rel_error(self) -> float:
        return _nanmax(self.rel_error)


@dataclass
class ExpectationResult:
    """A hand-derived value compared with the engine's; arrays in the user's shape."""

    name: str
    expected: np.ndarray
    actual: np.ndarray
    passed: bool
    max_abs_error: float


@dataclass
class LayerVerdict:
    """A layer's own backward checked in isolation (a VJP against that layer alone)."""

    name: str
    type: str
    passed: bool
    max_abs_error: float
    max_rel_error: float
    kinks: int
    checked: int = 0
    #: per tensor of the isolated layer ("input" = its dx): True when every element passed
    tensors_ok: dict[str, bool] = field(default_factory=dict)
    #: what is wrong with this layer's own backward ("dx: ...", "weight: ..."), or None
    diagnosis: str | None = None
    #: random directions it was checked along (engine/fast.py); 0 = element-wise only.
    #: A layer with directions > 0 and checked == 0 passed on its directions alone.
    directions: int = 0


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
    interrupted: bool = False

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and all(e.passed for e in self.expectations)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def check(self, name: str) -> TensorCheck:
        """The check of one tensor by name (KeyError if it was not checked)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def blamed_layers(self) -> list[str]:
        return [v.name for v in self.layers if not v.passed]

    def to_dict(self) -> dict[str, Any]:
        return report_to_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _nanmax(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    if a.size == 0 or np.all(np.isnan(a)):
        return 0.0
    return float(np.nanmax(a))


def to_jsonable(a: np.ndarray) -> Any:
    """Nested lists of floats; NaN (not checked) becomes None, as the contract asks."""
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        v = float(arr)
        return None if math.isnan(v) else v
    return [to_jsonable(x) for x in arr]


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def report_to_dict(r: Report) -> dict[str, Any]:
    """The JSON report, schema ``gradcheck-report/1`` (README.md, "Reports")."""
    return {
        "schema": SCHEMA,
        "config": r.config,
        "name": r.name,
        "passed": r.passed,
        "exit_code": r.exit_code,
        "loss": _finite(r.loss),
        "settings": r.settings,
        "checks": [
            {
                "name": c.name,
                "layer": c.layer,
                "param": c.param,
                "shape": list(c.shape),
                "checked": c.checked,
                "failed": c.failed,
                "kinks": c.kinks,
                "passed": c.passed,
                "max_abs_error": c.max_abs_error,
                "max_rel_error": c.max_rel_error,
                "mode": c.mode,
                "localised": c.localised,
                "diagnosis": c.diagnosis,
                "consequence_of": c.consequence_of,
                "taylor_order": c.taylor_order,
                "taylor_passed": c.taylor_passed,
                "analytic": to_jsonable(c.analytic),
                "numeric": to_jsonable(np.where(c.checked_mask, c.numeric, np.nan)),
            }
            for c in r.checks
        ],
        "expectations": [
            {
                "name": e.name,
                "passed": e.passed,
                "max_abs_error": e.max_abs_error,
                "expected": to_jsonable(e.expected),
                "actual": to_jsonable(e.actual),
            }
            for e in r.expectations
        ],
        "layers": [
            {
                "name": v.name,
                "type": v.type,
                "passed": v.passed,
                "max_abs_error": v.max_abs_error,
                "max_rel_error": v.max_rel_error,
                "kinks": v.kinks,
                "checked": v.checked,
                "directions": v.directions,
                "diagnosis": v.diagnosis,
            }
            for v in r.layers
        ],
        "skipped": list(r.skipped),
        "warnings": list(r.warnings),
        "interrupted": r.interrupted,
        "timing": {"total_s": round(r.total_s, 6), "forward_passes": r.forward_passes},
    }
