"""A saved JSON report (``gradcheck run --json``) read back into a Report, so that
``gradcheck report REPORT.json`` renders it again: the table, the HTML page.

The JSON holds everything the renderers read: every array (``analytic``, ``numeric``
with ``null`` where not checked, ``error_bound``), the indices of failed, kink and
inconclusive elements (``failed_elements``, ...), each layer's verdict (``wrong``,
``tensors_ok``, ``problems``), the error and the optional ``explain`` section.
Absolute and relative errors are computed again from ``analytic`` and ``numeric``
(exactly: JSON keeps every float64 digit). A report that is not one (not JSON, another
schema, a field missing or of the wrong type) is refused with the file and the key path
of the first problem (exit 2).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import ConfigError, ConfigIssue
from .report import (
    ExpectationResult,
    LayerProblem,
    LayerVerdict,
    Mismatch,
    Report,
    RunError,
    TensorCheck,
)

SCHEMA = "gradcheck-report/1"
#: The largest saved report read, in bytes (a full check of 10^7 elements writes about
#: 600 MB; reports that large are rendered from the run itself, not read back).
MAX_REPORT_BYTES = 256 * 2**20


class BadReport(ConfigError):
    """A saved report that cannot be read: exit 2, naming the file and the key path."""


def load_report(path: str | os.PathLike) -> Report:
    """The Report a saved JSON report holds. Raises BadReport (exit 2)."""
    from .config.files import NotRegular, open_regular

    shown = os.fspath(path)
    try:
        stream, size = open_regular(path)
    except NotRegular as e:
        raise _bad(shown, "", f"is {e.kind}, not a regular file") from None
    except OSError as e:
        raise _bad(shown, "", f"cannot be read: {e.strerror or e}") from None
    with stream:
        if size > MAX_REPORT_BYTES:
            raise _bad(shown, "", f"is {size:,} bytes; at most {MAX_REPORT_BYTES:,} are read")
        raw = stream.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _bad(shown, "", f"is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        issue = ConfigIssue(shown, e.lineno, "", f"not valid JSON: {e.msg} (column {e.colno})")
        raise BadReport(issue) from None
    return read_report(data, shown)


def read_report(data: Any, source: str = "<report>") -> Report:
    """A Report from the JSON report's data (``Report.to_dict()``). Raises BadReport."""
    r = _Reader(data, source)
    schema = r.get("schema", str)
    if schema != SCHEMA:
        raise _bad(source, "schema", f"is {schema!r}; this gradcheck reads {SCHEMA!r}")
    report = Report(
        config=r.get("config", str),
        name=r.get("name", str, default=""),
        loss=_float(r.get("loss", _number, default=None)),
        settings=r.get("settings", dict, default={}),
        checks=[_check(r.at("checks", k)) for k in range(len(r.get("checks", list)))],
        expectations=[
            _expectation(r.at("expectations", k))
            for k in range(len(r.get("expectations", list, default=[])))
        ],
        layers=[_layer(r.at("layers", k)) for k in range(len(r.get("layers", list, default=[])))],
        skipped=[str(x) for x in r.get("skipped", list, default=[])],
        warnings=[str(x) for x in r.get("warnings", list, default=[])],
        interrupted=bool(r.get("interrupted", bool, default=False)),
        explain=r.get("explain", dict, default=None),
    )
    timing = r.get("timing", dict, default={})
    report.total_s = _float(timing.get("total_s")) if _number(timing.get("total_s")) else 0.0
    report.forward_passes = int(timing.get("forward_passes") or 0)
    exit_code = r.get("exit_code", int)
    error = r.get("error", dict, default=None)
    if error is not None and error.get("kind") != "inconclusive":  # that one is derived
        e = r.at("error")
        report.error = RunError(
            kind=e.get("kind", str),
            message=e.get("message", str),
            file=e.get("file", str, default=None),
            line=e.get("line", int, default=None),
            key=e.get("key", str, default=None),
            exit_code=exit_code,
        )
    elif report.interrupted:
        report.interrupt_code = exit_code
    if int(report.exit_code) != exit_code:
        raise _bad(
            source,
            "exit_code",
            f"is {exit_code}, but what the report holds gives {int(report.exit_code)}",
        )
    return report


def _check(r: _Reader) -> TensorCheck:
    analytic = r.array("analytic")
    shape = tuple(r.get("shape", list))
    if analytic.shape != shape:
        raise _bad(r.source, r.key("analytic"), f"has shape {analytic.shape}, not {shape}")
    numeric = r.array("numeric", shape)
    checked = ~np.isnan(numeric)
    abs_error = np.where(checked, np.abs(analytic - numeric), np.nan)
    scale = np.maximum(np.abs(analytic), np.abs(numeric))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, abs_error / np.where(scale > 0, scale, 1.0), 0.0)
    masks = {key: r.mask(key, shape) for key in ("failed", "kink", "inconclusive")}
    return TensorCheck(
        name=r.get("name", str),
        layer=r.get("layer", str, default=None),
        param=r.get("param", str, default=None),
        analytic=analytic,
        numeric=numeric,
        checked_mask=checked,
        failed_mask=masks["failed"],
        kink_mask=masks["kink"],
        abs_error=abs_error,
        rel_error=np.where(checked, rel, np.nan),
        mode=r.get("mode", str, default="full"),
        localised=bool(r.get("localised", bool, default=False)),
        diagnosis=r.get("diagnosis", str, default=None),
        consequence_of=r.get("consequence_of", str, default=None),
        taylor_order=r.get("taylor_order", _number, default=None),
        taylor_passed=r.get("taylor_passed", bool, default=None),
        corrupted_by=r.get("corrupted_by", str, default=None),
        inconclusive_mask=masks["inconclusive"],
        error_bound=r.array("error_bound", shape, default=np.full(shape, np.nan)),
    )


def _expectation(r: _Reader) -> ExpectationResult:
    result = ExpectationResult(
        name=r.get("name", str),
        expected=r.array("expected"),
        actual=r.array("actual"),
        passed=r.get("passed", bool),
        max_abs_error=_float(r.get("max_abs_error", _number, default=None)),
    )
    mismatches = r.get("mismatches", list, default=None)
    for k in range(len(mismatches or [])):  # per failing element, when the report has them
        m = r.at("mismatches", k)
        index = m.get("index", list)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
            raise _bad(m.source, m.key("index"), "must be a list of integers")
        result.mismatches.append(
            Mismatch(
                index=tuple(index),
                expected=float(m.get("expected", _number)),
                actual=float(m.get("actual", _number)),
                tolerance=float(m.get("tolerance", _number)),
            )
        )
    result.tolerance = r.get("tolerance", dict, default={})
    return result


def _layer(r: _Reader) -> LayerVerdict:
    problems = []
    for k in range(len(r.get("problems", list, default=[]))):
        p = r.at("problems", k)
        problems.append(
            LayerProblem(
                kind=p.get("kind", str),
                message=p.get("message", str),
                failure=p.get("severity", str, default="warning") == "error",
            )
        )
    tensors_ok = r.get("tensors_ok", dict, default={})
    verdict = LayerVerdict(
        name=r.get("name", str),
        type=r.get("type", str),
        passed=r.get("passed", bool),
        max_abs_error=_float(r.get("max_abs_error", _number, default=None)),
        max_rel_error=_float(r.get("max_rel_error", _number, default=None)),
        kinks=r.get("kinks", int, default=0),
        checked=r.get("checked", int, default=0),
        tensors_ok={str(k): v if isinstance(v, bool) else None for k, v in tensors_ok.items()},
        diagnosis=r.get("diagnosis", str, default=None),
        directions=r.get("directions", int, default=0),
        inconclusive=r.get("inconclusive", int, default=0),
        problems=problems,
        unselected=r.get("unselected", bool, default=False),
    )
    wrong = r.get("wrong", bool, default=None)
    if wrong is not None and wrong != verdict.wrong:
        raise _bad(r.source, r.key("wrong"), f"is {wrong}, but the layer's verdict says otherwise")
    return verdict


class _Reader:
    """One JSON object of the report, read field by field with its key path."""

    def __init__(self, data: Any, source: str, path: str = ""):
        if not isinstance(data, dict):
            raise _bad(source, path, f"must be an object, got {_kind(data)}")
        self.data, self.source, self.path = data, source, path

    def key(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.path}[{name}]"
        return f"{self.path}.{name}" if self.path else name

    _MISSING = object()

    def get(self, name: str, kind: type | Callable[[Any], bool], default: Any = _MISSING) -> Any:
        """The field ``name``, checked against ``kind`` (a type, or a predicate); None is
        taken for ``default`` when one is given."""
        if name not in self.data or self.data[name] is None:
            if default is not _Reader._MISSING:
                return default
            raise _bad(self.source, self.key(name), "missing")
        value = self.data[name]
        ok = (
            isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if isinstance(kind, type)
            else kind(value)
        )
        if not ok:
            what = kind.__name__ if isinstance(kind, type) else "a number"
            raise _bad(self.source, self.key(name), f"must be {what}, got {_kind(value)}")
        return value

    def at(self, name: str, index: int | None = None) -> _Reader:
        value = self.data[name] if index is None else self.data[name][index]
        path = self.key(name) if index is None else f"{self.key(name)}[{index}]"
        return _Reader(value, self.source, path)

    def array(self, name: str, shape: tuple[int, ...] | None = None, default: Any = _MISSING):
        """A nested list of numbers (None = NaN) as float64, of ``shape`` when given."""
        if name not in self.data:
            if default is not _Reader._MISSING:
                return default
            raise _bad(self.source, self.key(name), "missing")
        value = self.data[name]  # a scalar that was not checked is null
        try:
            a = np.array(np.nan if value is None else value, dtype=np.float64)  # None -> nan
        except (TypeError, ValueError):
            raise _bad(
                self.source, self.key(name), "must be a rectangular array of numbers"
            ) from None
        if shape is not None and a.shape != shape:
            raise _bad(self.source, self.key(name), f"has shape {a.shape}, not {shape}")
        return a

    def mask(self, kind: str, shape: tuple[int, ...]) -> np.ndarray:
        """``<kind>_elements``: a list of indices into ``shape``, as a boolean mask."""
        name = f"{kind}_elements"
        indices = self.get(name, list)
        mask = np.zeros(shape, dtype=bool)
        for k, index in enumerate(indices):
            ok = (
                isinstance(index, list)
                and len(index) == len(shape)
                and all(
                    isinstance(i, int) and 0 <= i < n for i, n in zip(index, shape, strict=True)
                )
            )
            if not ok:
                raise _bad(self.source, f"{self.key(name)}[{k}]", f"is not an index into {shape}")
            mask[tuple(index)] = True
        return mask


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(
        type(v), "null" if v is None else "a number"
    )


def _bad(source: str, path: str, message: str) -> BadReport:
    return BadReport(ConfigIssue(source, None, path, message))
