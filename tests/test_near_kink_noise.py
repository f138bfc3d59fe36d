"""A kink nearer than the step is not rounding noise (engine/numeric.py ``noise``).

The noise probes read rounding from the even part f(v + t) + f(v - t) - 2 f(v) and
from the odd third difference (f(v + 2t) - f(v - 2t)) - 2 (f(v + t) - f(v - t)), each
where it does not grow from t to 2t. A kink at a distance d < t (a max-pool near-tie)
leaves the odd one at jump * d for every t past it: steady, like noise. Its even part
grows with t, so a probe is read only where both hold still.

The slow property run found the case (tests/verdict_cases/maxpool_near_ties.yaml): a
max-pool input exactly tied with two neighbours and 3e-8 below a third (step 3e-7),
under deltas of both signs. Its noise read 1.7e-11 where its terms round to ~1e-14, so
the gap noise hid the kink at the element at the steps where it holds, and the max-pool
was blamed (exit 1) while every network tensor passed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine import numeric, run_check
from gradcheck_cli.engine.isolation import objectives
from gradcheck_cli.engine.objective import NetworkObjective
from gradcheck_cli.engine.passes import analytic_pass, problem_params

HERE = Path(__file__).resolve().parent


def found_case():
    doc = yaml.safe_load((HERE / "verdict_cases" / "maxpool_near_ties.yaml").read_text())
    return problem_from_dict(doc)


def test_a_max_pool_at_ties_and_a_near_tie_is_not_blamed():
    report = run_check(found_case())
    assert report.passed and report.blamed_layers() == [], report.summary()


def test_the_near_tie_is_not_read_as_noise():
    """The isolated max-pool's noise: back to its terms' rounding (a few 1e-16 here),
    not the near-tie's 1.7e-11."""
    problem = found_case()
    trace, grads = analytic_pass(problem, problem_params(problem))
    net = NetworkObjective.build(problem, trace, grads, problem_params(problem, float))
    obj = next(o for name, _, o in objectives(problem, net, trace, grads) if name == "maxpool2d_2")
    flat = obj.xs[0].reshape(-1)
    h = numeric.element_steps(flat, numeric.step_scale(flat), 1e-6)
    assert numeric.noise(obj, "input", h, 2**30) < 1e-13
