"""Hypothesis strategies for hand-built Reports (renderer tests; no engine involved)."""

from __future__ import annotations

import numpy as np
from _report_factory import SETTINGS, tensor_check
from hypothesis import strategies as st

from gradcheck_cli.report import ExpectationResult, LayerProblem, LayerVerdict, Report, RunError

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,30}(\.[a-z]{1,12})?", fullmatch=True)
WORDS = st.lists(st.from_regex(r"[a-z]{1,12}|[0-9]\.[0-9]{1,3}", fullmatch=True), max_size=30)
#: Text a config or a plugin may hold: markup, quotes, ampersands, control characters.
HOSTILE = st.lists(
    st.sampled_from([*"<>&\"'/=ab cx;:()[]\x1b\r\n\u202e\x00", "script", "img", "onerror"]),
    min_size=1,
    max_size=16,
).map("".join)


@st.composite
def reports(draw, names=NAMES, words=None, endings: bool = False) -> Report:
    """A Report of 1 to 5 tensors (0 to 4 axes, values from 1e-8 to 1e4, some elements
    unchecked), layers, expectations and warnings. ``names``: the strategy for names;
    ``words``: for diagnoses and messages (default: words and numbers); ``endings``:
    also kinks, inconclusive elements, purity problems, errors and interruptions."""
    text = words if words is not None else WORDS.map(" ".join)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    checks = []
    for k in range(draw(st.integers(1, 5))):
        shape = tuple(draw(st.lists(st.integers(1, 5), max_size=4)))
        scale = 10.0 ** draw(st.integers(-8, 4))
        a = rng.normal(size=shape) * scale
        n = a * (1 + rng.normal(size=shape) * 10.0 ** draw(st.integers(-14, 0)))
        n = np.where(rng.random(shape) < 0.1, np.nan, n)
        check = tensor_check(
            f"{draw(names)}{k}",
            a,
            n,
            diagnosis=draw(text) or None,
            consequence_of=draw(st.none() | names),
            kinks=(rng.random(shape) < 0.1) & ~np.isnan(n) if endings else None,
        )
        if endings:
            check.inconclusive_mask = (rng.random(shape) < 0.1) & check.checked_mask
            check.error_bound = np.where(check.checked_mask, np.abs(a) * 1e-9, np.nan)
        checks.append(check)
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        problems = [
            LayerProblem(draw(names), draw(text), draw(st.booleans()))
            for _ in range(draw(st.integers(0, 2)) if endings else 0)
        ]
        layers.append(
            LayerVerdict(
                draw(names),
                draw(names),
                draw(st.booleans()),
                float(rng.random()),
                float(rng.random()),
                0,
                diagnosis=draw(text) or None,
                tensors_ok={"input": draw(st.none() | st.booleans())} if endings else {},
                problems=problems,
            )
        )
    expectations = [
        ExpectationResult(draw(names), rng.normal(size=3), rng.normal(size=3), False, 0.5)
        for _ in range(draw(st.integers(0, 2)))
    ]
    report = Report(
        config="net.yaml",
        name=draw(names),
        loss=float(rng.normal()),
        settings=dict(SETTINGS),
        checks=checks,
        layers=layers,
        expectations=expectations,
        warnings=[draw(text)],
        skipped=[draw(names) for _ in range(draw(st.integers(0, 2)))],
    )
    if endings and draw(st.booleans()):
        report.error = RunError(
            draw(st.sampled_from(["config", "numerical", "timeout", "plugin"])),
            draw(text),
            file=draw(st.none() | names),
            line=draw(st.none() | st.integers(1, 500)),
            key=draw(st.none() | names),
            exit_code=draw(st.sampled_from([2, 3])),
        )
    elif endings and draw(st.booleans()):
        report.interrupted = True
        report.interrupt_code = draw(st.sampled_from([130, 143]))
    return report
