"""Gradients in float64's subnormal range are judged against its absolute grid.

Below its smallest normal number (2.2e-308) float64 keeps an absolute grid of 2^-1074
(4.9e-324), so terms of 1e-316 round to a relative 5e-8, not to an epsilon. The rounding
floor of one evaluation is at least 64 steps of that grid (``numeric.SUBNORMAL_FLOOR``).
The slow property run found a correct cs231n affine pair whose upstream deltas were
subnormal (behind a dropout and weights of 1e-7) blamed in isolation (exit 1) without
it: tests/verdict_cases/subnormal_affine.yaml. Only that case is known: generated
networks with subnormal upstream gradients (the ``upstream`` loss at 1e-300..1e-320,
through a pair or the built-in dense) passed with and without the floor, so there is no
generated test of the class here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine import numeric, run_check

HERE = Path(__file__).resolve().parent
CS231N = str(HERE.parent / "configs/examples/cs231n_functions/layers.py")


def found_case() -> dict:
    doc = yaml.safe_load((HERE / "verdict_cases" / "subnormal_affine.yaml").read_text())
    doc["plugins"] = [CS231N]
    return doc


def test_a_correct_layer_behind_subnormal_deltas_passes():
    report = run_check(problem_from_dict(found_case()))
    assert report.passed and report.blamed_layers() == [], report.summary()


def test_the_floors_are_no_longer_all_that_saves_it(monkeypatch):
    """Once, removing the numeric floor got this case blamed (the test was that). Since
    2e7cbbe the precision stage only overrules the screening with a value it resolved,
    and since the float32 case the analytic allowance has a subnormal grid too: with
    both floors off the case still passes. Recorded so that a change of mechanism shows."""
    from gradcheck_cli.engine import verdict

    monkeypatch.setattr(numeric, "SUBNORMAL_FLOOR", 0.0)
    monkeypatch.setattr(verdict, "smallest_subnormal", lambda eps: 0.0)
    report = run_check(problem_from_dict(found_case()))
    assert report.passed
