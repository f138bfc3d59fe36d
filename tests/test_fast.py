"""``--fast`` (random directions, then localisation) and ``--time-budget``.

Fast mode must catch every bug the full check catches, on the same tensors and with the
same blame, and pass correct stacks without checking elements one by one. Its tolerance
comes from the measured finite-difference noise, not from the direction's sums, which
would let a single wrong element of a large tensor through (tested below).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from engine_toys import Affine, Relu, Tanh, make_problem

from gradcheck_cli.engine import budget, fast, run_check
from gradcheck_cli.problem import Mode

MUTANTS = Path(__file__).parent / "mutants"
LENET5 = Path(__file__).parent.parent / "configs" / "bench" / "lenet5.yaml"


class OneWrong(Affine):
    """Affine whose weight gradient is off by ``error`` in the single element ``where``."""

    def __init__(self, out: int, where=(0, 1), error: float = 1e-3):
        super().__init__(out)
        self.where, self.error = where, error

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"] = grads["weight"].copy()
        grads["weight"][self.where] += self.error
        return dx, grads


def toy(fc2=None, mode=Mode.FAST, **settings):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    target = rng.standard_normal((3, 2))
    layers = [("fc1", Affine(5)), ("act", Tanh()), ("fc2", fc2 or Affine(2))]
    return make_problem(layers, x, target, batched=True, mode=mode, **settings)


def with_mode(problem, mode):
    problem.settings = dataclasses.replace(problem.settings, mode=mode)
    return problem


def failing(report) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def test_correct_stack_passes_without_checking_elements_one_by_one():
    report = run_check(toy())
    assert report.passed
    for c in report.checks:
        assert c.mode == "fast" and not c.localised
        assert c.checked == 0 and np.isnan(c.numeric).all() and not c.checked_mask.any()
        whole = c.extra["directional"]["whole"]
        assert len(whole) == fast.DIRECTIONS and all(d["passed"] for d in whole)
    assert any("random directions" in w for w in report.warnings)
    # nothing to blame: the isolation is skipped, and the report says so
    assert report.layers == [] and fast.ISOLATION_SKIPPED in report.warnings


def test_full_mode_isolates_layers_by_directions_when_every_gradient_passed():
    report = run_check(toy(mode=Mode.FULL))
    assert report.passed and report.layers
    for v in report.layers:
        assert v.passed and v.directions >= fast.DIRECTIONS and v.checked == 0


def test_a_failure_gets_element_wise_blame_in_full_and_fast_mode():
    """Once a network tensor failed, --fast isolates each layer element-wise as the full
    check does: a layer passed on directions alone is no proof for blame and the
    compound-kink rules (a sign(x) backward on a tensor of values 1e-6 and 3000 passed
    its directions: tests/test_mixed_magnitudes.py)."""
    full = run_check(toy(Affine(2, bug=2.0), mode=Mode.FULL))
    assert all(v.directions == 0 and v.checked > 0 for v in full.layers)
    quick = run_check(toy(Affine(2, bug=2.0)))
    assert [v.name for v in quick.layers] == [v.name for v in full.layers]
    assert all(v.directions == 0 and v.checked > 0 for v in quick.layers)
    fc2 = next(v for v in quick.layers if v.name == "fc2")
    assert not fc2.passed and not fc2.tensors_ok["fc2.weight"] and fc2.checked > 0


BUGS = {
    "factor on one tensor": lambda: Affine(2, bug=2.0),
    "dx sign": lambda: Affine(2, dx_bug=-1.0),
    "one wrong element": lambda: OneWrong(2),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_fast_fails_the_tensors_the_full_check_fails(bug):
    full = run_check(toy(BUGS[bug](), mode=Mode.FULL))
    quick = run_check(toy(BUGS[bug]()))
    assert not full.passed and failing(full)
    assert failing(quick) == failing(full)
    assert quick.blamed_layers() == full.blamed_layers() == ["fc2"]
    for name in failing(quick):
        c, reference = quick.check(name), full.check(name)
        assert c.localised and c.mode == "fast" and c.checked == c.analytic.size
        np.testing.assert_array_equal(c.failed_mask, reference.failed_mask)
        assert c.consequence_of == reference.consequence_of


def kinked_first(monkeypatch, kinked: int):
    """The first ``kinked`` directional tests cross a kink at every step (as a random
    direction does on a batch-8 CNN of ReLUs and max pools): no smooth step."""
    real, calls = fast.directional_test, []

    def test(objective, u, eps, a_eps, start=None):
        calls.append(u)
        d = real(objective, u, eps, a_eps, start)
        if len(calls) <= kinked:
            return dataclasses.replace(d, tolerance=float("inf"), smooth=False)
        return d

    monkeypatch.setattr(fast, "directional_test", test)
    return calls


def test_a_direction_that_crosses_a_kink_is_replaced_not_localised(monkeypatch):
    """A direction with no smooth step neither agrees nor disagrees: a fresh one takes
    its place, and a correct network is not checked element by element."""
    calls = kinked_first(monkeypatch, 2)
    report = run_check(toy())
    assert report.passed and not any(c.localised for c in report.checks)
    whole = report.checks[0].extra["directional"]["whole"]
    assert [d["replaced"] for d in whole] == [2, 0, 0] and all(d["passed"] for d in whole)
    assert len(calls) == fast.DIRECTIONS + 2


def test_a_replaced_direction_still_sees_a_wrong_gradient(monkeypatch):
    kinked_first(monkeypatch, 1)
    report = run_check(toy(OneWrong(2, where=(1, 3), error=1e-6)))
    assert failing(report) == {"fc2.weight"}


def test_later_directions_begin_one_step_above_where_the_one_before_ended(monkeypatch):
    """Kinks that sent a direction down to L/100 make the next begin at L/10, not L
    (each step it skips costs two forward passes per probe); a smooth objective ends
    every direction at L, and every one begins there."""
    real, seen = fast.directional_test, []

    def test(objective, u, eps, a_eps, start=None):
        d = real(objective, u, eps, a_eps, start)
        if not seen:  # the first crossed kinks down to its third step
            d = dataclasses.replace(d, tolerance=float("inf"), smooth=False, step=d.step / 100)
        seen.append((start, d.step))
        return d

    monkeypatch.setattr(fast, "directional_test", test)
    report = run_check(toy())
    assert report.passed
    first_end = seen[0][1]
    assert seen[1][0] == pytest.approx(10 * first_end)  # its replacement
    assert seen[1][1] == pytest.approx(10 * first_end)  # smooth at its first step
    pairs = zip(seen[1:], seen[:-1], strict=True)
    assert all(start == pytest.approx(10 * end) for (start, _), (_, end) in pairs)

    smooth = []
    monkeypatch.setattr(
        fast,
        "directional_test",
        lambda objective, u, eps, a_eps, start=None: (
            smooth.append(start) or real(objective, u, eps, a_eps, start)
        ),
    )
    objective, names = _toy_line()
    rng, eps64 = np.random.default_rng(0), float(np.finfo(np.float64).eps)
    steps = [d.step for d in fast.run_directions(objective, names, 3, rng, 1e-6, eps64)]
    assert smooth[0] is None and len(set(steps)) == 1  # every one at L
    assert all(s >= steps[0] for s in smooth[1:])


def _toy_line():
    """(objective, names) of the toy network's objective, for run_directions."""
    from gradcheck_cli.engine.objective import NetworkObjective
    from gradcheck_cli.engine.passes import analytic_pass, problem_params

    problem = toy()
    trace, grads = analytic_pass(problem, problem_params(problem))
    objective = NetworkObjective.build(problem, trace, grads, problem_params(problem, np.float64))
    return objective, list(objective.tensors())


def test_a_direction_never_smooth_after_every_draw_is_localised(monkeypatch):
    kinked_first(monkeypatch, fast.DRAWS)
    report = run_check(toy())
    assert report.passed  # the element-wise check settles it
    whole = report.checks[0].extra["directional"]["whole"]
    assert whole[0]["replaced"] == fast.DRAWS - 1 and not whole[0]["passed"]
    assert all(c.localised for c in report.checks)


def test_a_single_element_wrong_by_1e_6_is_localised_and_fails_in_both_modes():
    """An error of 1e-6 on an element of size about 1 is seen along a direction, then
    localised: the tensor is checked element-wise, where the error estimate catches it."""
    full = run_check(toy(OneWrong(2, where=(1, 3), error=1e-6), mode=Mode.FULL))
    quick = run_check(toy(OneWrong(2, where=(1, 3), error=1e-6)))
    for report in (full, quick):
        assert failing(report) == {"fc2.weight"}
        assert np.argwhere(report.check("fc2.weight").failed_mask).tolist() == [[1, 3]]
    c = quick.check("fc2.weight")
    assert not c.extra["directional"]["own"]["passed"]
    assert c.localised and c.checked == c.analytic.size
    assert quick.check("fc1.weight").checked == 0  # its own direction agreed


def test_a_single_wrong_element_is_found_where_a_sum_scaled_tolerance_passes():
    """The known weakness: tolerance = atol + rtol * sum|g_i u_i| grows with the tensor
    and swallows one wrong element; the noise-based tolerance does not."""
    rng = np.random.default_rng(1)
    x, target = rng.standard_normal((1, 60)), rng.standard_normal((1, 10))
    layers = [("fc1", OneWrong(100, where=(7, 11), error=1e-3)), ("act", Tanh())]
    layers.append(("fc2", Affine(10)))
    problem = make_problem(layers, x, target, mode=Mode.FAST)
    for spec in problem.layers:  # scaled like a real init, so the loss is about 4
        for name in spec.params:
            spec.params[name] = spec.params[name] / np.sqrt(spec.in_shape[0])

    report = run_check(problem)
    c = report.check("fc1.weight")
    assert failing(report) == {"fc1.weight"} and c.localised
    assert np.argwhere(c.failed_mask).tolist() == [[7, 11]]

    atol, rtol = 1e-7, 1e-5  # the tolerances such a rule used to take
    g = {t.name: t.analytic for t in report.checks}
    values = {name: np.zeros(a.shape) for name, a in g.items()}
    for _ in range(20):  # the sum-scaled rule would pass the bug along every direction
        u = fast.random_direction(values, rng)
        spread = sum(float(np.abs(g[t] * u[t]).sum()) for t in g)
        assert abs(1e-3 * u["fc1.weight"][7, 11]) < atol + rtol * spread


def test_kink_at_the_point_itself_is_localised_and_settled_element_wise():
    """A ReLU input exactly at 0: no direction is smooth there, so it is not trusted but
    checked element by element, where the kink rule applies."""
    x = np.array([[0.0, 1.0, -1.0, 0.0]])
    problem = make_problem([("act", Relu()), ("fc", Affine(2))], x, np.zeros((1, 2)))
    report = run_check(with_mode(problem, Mode.FAST))
    assert report.passed
    assert report.check("input").localised and report.check("input").kinks == 2


class Cubic:
    """f(v) = sum(v^3) / 3 with an analytic gradient v^2 (+ an optional error)."""

    def __init__(self, v, error=None):
        self.v, self.f0 = v, float((v**3).sum() / 3)
        self.analytic = {"v": v**2 + (0 if error is None else error)}

    def tensors(self):
        return {"v": self.v}

    def loss_at(self, values):
        return float((values.get("v", self.v) ** 3).sum() / 3)


def test_directional_test_measures_noise_and_sees_a_small_error():
    v = np.random.default_rng(2).standard_normal(1000)
    u = fast.random_direction({"v": v}, np.random.default_rng(3))
    right = fast.directional_test(Cubic(v), u, 1e-6, np.finfo(float).eps)
    assert right.passed and right.smooth
    assert right.tolerance < 1e-8  # noise-based: far below rtol * sum|g u| (about 1e-5)
    error = np.zeros(1000)
    error[123] = 1e-4
    wrong = fast.directional_test(Cubic(v, error), u, 1e-6, np.finfo(float).eps)
    assert not wrong.passed
    assert wrong.error == pytest.approx(-1e-4 * u["v"][123], rel=1e-3)


def fast_like_full(configs: list[Path]) -> None:
    from gradcheck_cli.config import load_problem

    assert configs
    for path in configs:
        full = run_check(load_problem(path))
        quick = run_check(with_mode(load_problem(path), Mode.FAST))
        assert failing(quick) == failing(full), path.stem
        assert quick.blamed_layers() == full.blamed_layers(), path.stem
        assert quick.passed == full.passed, path.stem


def test_mutation_corpus_fast_fails_and_blames_like_full():
    """Every fourth mutant by default (the default suite has a time budget); all of them
    with ``pytest -m slow``."""
    fast_like_full(sorted(MUTANTS.glob("*.yaml"))[::4])


@pytest.mark.slow
def test_the_whole_mutation_corpus_fast_fails_and_blames_like_full():
    fast_like_full(sorted(MUTANTS.glob("*.yaml")))


def test_lenet5_benchmark_config_has_45210_elements_and_passes_fast():
    from gradcheck_cli.config import load_problem

    problem = load_problem(LENET5)
    sizes = [problem.x.size] + [v.size for s in problem.layers for v in s.params.values()]
    assert (sizes[0], sum(sizes)) == (784, 45_210)
    report = run_check(with_mode(problem, Mode.FAST))
    assert report.passed
    assert sum(c.analytic.size for c in report.checks) == 45_210
    assert all(c.checked == 0 for c in report.checks)  # three directions were enough


def test_only_globs_that_leave_nothing_to_check_are_fine_in_fast_mode():
    report = run_check(toy(only=("nothing.*",)))
    assert report.checks == [] and report.passed


# --time-budget -----------------------------------------------------------------------


def test_choose_k_is_the_largest_k_that_fits():
    costs = {
        "a": budget.Cost(size=10, overhead=0.0, per_element=1.0, per_call=100),
        "b": budget.Cost(size=1000, overhead=0.0, per_element=1.0, per_call=100),
    }
    assert budget.choose_k(costs, 30.0) == 20  # 10 (all of a) + 20 of b
    assert budget.choose_k(costs, 10.0) == 5
    assert budget.choose_k(costs, 0.0) == 1  # at least one element per tensor
    assert budget.choose_k(costs, 1e9) == 1000


def test_time_budget_samples_what_fits_and_says_how_many(monkeypatch):
    """Calibration replaced by a fixed cost (0.01 s per element): no wall-clock asserts."""

    def fixed(objective, tensor, eps, max_memory, rng):
        size = objective.tensors()[tensor].size
        return budget.Cost(size=size, overhead=0.0, per_element=0.01, per_call=64)

    monkeypatch.setattr(budget, "calibrate", fixed)
    rng = np.random.default_rng(5)
    x, target = rng.standard_normal((1, 30)), rng.standard_normal((1, 20))
    problem = make_problem(
        [("fc1", Affine(40)), ("act", Tanh()), ("fc2", Affine(20))],
        x,
        target,
        mode=Mode.BUDGET,
        time_budget=4.0,
    )
    report = run_check(problem)
    assert report.passed
    checked = {c.name: c.checked for c in report.checks}
    # about 4 s / 0.01 s = 400 elements: input (30), fc1.bias (40) and fc2.bias (20) are
    # checked whole, the two weights share the rest (less what the setup took)
    assert (checked["input"], checked["fc1.bias"], checked["fc2.bias"]) == (30, 40, 20)
    k = checked["fc1.weight"]
    assert 80 <= k <= (400 - 90) // 2
    assert checked["fc2.weight"] == k and report.check("fc1.weight").mode == "budget"
    note = next(w for w in report.warnings if w.startswith("time budget 4 s"))
    assert f"planned {sum(checked.values()):,} of 2,090 elements" in note


def test_generous_time_budget_checks_everything():
    report = run_check(toy(mode=Mode.BUDGET, time_budget=600.0))
    assert report.passed
    assert all(c.checked == c.analytic.size for c in report.checks)
    total = sum(c.analytic.size for c in report.checks)
    assert any(f"planned {total} of {total} elements" in w for w in report.warnings)


# ties at the point itself (isolation) -------------------------------------------------


class MaxOfTwo:
    """f(v) = max(v0, v1) + sum(v[2:]^2) / 2 at a tie v0 = v1; analytic chosen freely."""

    def __init__(self, d0: float, d1: float):
        self.v = np.array([0.3, 0.3, 0.5, -1.0])
        self.f0 = self.loss_at({})
        self.analytic = {"v": np.array([d0, d1, 0.5, -1.0])}

    def tensors(self):
        return {"v": self.v}

    def loss_at(self, values):
        v = values.get("v", self.v)
        return float(max(v[0], v[1]) + (v[2:] ** 2).sum() / 2)


def test_one_sided_support_direction_settles_a_tie_and_rejects_a_wrong_routing():
    eps64 = np.finfo(float).eps
    rng = np.random.default_rng(7)
    right = MaxOfTwo(1.0, 0.0)  # the first maximum gets the gradient
    u = fast.random_direction(right.tensors(), rng)
    assert not fast.directional_test(right, u, 1e-6, eps64).passed  # no smooth direction
    for _ in range(5):
        g = right.analytic["v"]
        assert fast.one_sided_test(right, {"v": fast.support_direction(g, rng)}, 1e-6, eps64).passed
    wrong = MaxOfTwo(1.0, 1.0)  # the gradient routed to both tied inputs
    g = wrong.analytic["v"]
    assert not fast.one_sided_test(wrong, {"v": fast.support_direction(g, rng)}, 1e-6, eps64).passed


def relu_pool_network(pool_type: str = "maxpool2d", seed: int = 0):
    """conv2d -> relu -> max-pool -> flatten -> dense -> softmax_cross_entropy: the pool
    sees windows of ReLU zeros, ties at the point itself."""
    from test_vectorised import build

    arch = [
        ("conv", "conv2d", {"out_channels": 3, "kernel_size": 3}),
        ("act", "relu", {}),
        ("pool", pool_type, {"kernel_size": 2}),
        ("flat", "flatten", {}),
        ("fc", "dense", {"out_features": 4}),
    ]
    return build(arch, np.random.default_rng(seed).standard_normal((2, 2, 8, 8)), [1.0, 3.0])


def test_full_mode_isolates_a_pool_on_relu_zeros_without_element_wise_checks():
    problem = relu_pool_network()
    report = run_check(problem)
    assert report.passed
    pooled = report.layers[2]
    assert pooled.name == "pool" and pooled.passed
    assert pooled.checked == 0 and pooled.directions > fast.DIRECTIONS  # the support test
    # the ties are really there: some windows of the pool's input are all zeros
    from gradcheck_cli.engine import passes

    trace, _ = passes.analytic_pass(problem, passes.problem_params(problem))
    windows = trace.values["act"].reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5))
    assert (windows == 0).any()


def test_a_routing_the_support_direction_rejects_gets_the_element_wise_verdict():
    """dy routed to every tied input is not a valid subgradient, which the support
    direction sees; it falls back to the element-wise isolation, whose kink rule judges
    each element alone (and there each one is bracketed): the same verdict as
    element-wise isolation, never a laxer one."""
    from gradcheck_cli.engine import check, isolation, passes
    from gradcheck_cli.engine.objective import LayerObjective, layer_energy
    from gradcheck_cli.layers.pool import MaxPool2d

    class RoutesToAllTies(MaxPool2d):
        def backward(self, dy, cache, params):
            x = cache.x
            n, c, h, w = x.shape
            y = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
            hit = x == np.repeat(np.repeat(y, 2, axis=2), 2, axis=3)  # every tied input
            return hit * np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3), {}

    problem = relu_pool_network()
    spec = problem.layers[2]
    trace, grads = passes.analytic_pass(problem, passes.problem_params(problem))
    x, delta, y = trace.values["act"], grads.deltas["pool"], trace.values["pool"]
    buggy = RoutesToAllTies(kernel_size=2)
    dx, _ = buggy.backward(delta, buggy.forward(x, {})[1], {})
    obj = LayerObjective(spec, [x], {}, delta, layer_energy(y, delta), {"input": dx})

    rng = np.random.default_rng(0)
    u = {"input": fast.support_direction(dx, rng)}
    assert not fast.one_sided_test(obj, u, 1e-6, np.finfo(float).eps).passed
    tol, _ = check.tolerances(problem)
    verdict = isolation.directional_verdict(obj, "pool", "maxpool2d", problem, tol, rng)
    reference = isolation.element_verdict(obj, "pool", "maxpool2d", problem, tol, rng)
    assert verdict.checked == x.size  # localised to every element
    assert (verdict.passed, verdict.kinks) == (reference.passed, reference.kinks)
