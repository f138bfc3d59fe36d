"""The numeric core against closed forms, and the engine's verdicts on toy stacks."""

from __future__ import annotations

import numpy as np
import pytest
from engine_toys import Affine, Relu, Tanh, make_problem
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck_cli.engine import run_check
from gradcheck_cli.engine.compare import rel_error
from gradcheck_cli.engine.numeric import differences, largest_first


class Cubic:
    """f(v) = sum(v**3) / 3, gradient v**2, as an objective."""

    def __init__(self, v):
        self.v = v
        self.f0 = float((v**3).sum() / 3)
        self.analytic = {"v": v**2}

    def tensors(self):
        return {"v": self.v}

    def bytes_per_copy(self, tensor):
        return 8 * self.v.size

    def losses(self, tensor, index, delta):
        copies = np.repeat(self.v.reshape(1, -1), len(index), axis=0)
        copies[np.arange(len(index)), index] += delta
        return (copies**3).sum(1) / 3


def test_central_differences_match_closed_form_derivative():
    v = np.linspace(-2, 3, 11)
    d = differences(Cubic(v), "v", np.arange(v.size), 1e-6, 1 << 20)
    # truncation error of the central difference for v^3/3 is h^2/3; rounding ~1e-10
    np.testing.assert_allclose(d.central, v**2, rtol=0, atol=1e-8)
    # one-sided differences carry the first-order error +-h*v
    np.testing.assert_allclose(d.right - d.left, 2 * 1e-6 * v, atol=1e-8)


def test_chunking_does_not_change_results():
    v = np.random.default_rng(1).standard_normal(37)
    a = differences(Cubic(v), "v", np.arange(37), 1e-6, 1 << 20)
    b = differences(Cubic(v), "v", np.arange(37), 1e-6, 1 << 20, chunk=3)
    np.testing.assert_array_equal(a.central, b.central)


def test_relative_error_is_zero_when_both_are_zero():
    assert rel_error(np.array([0.0]), np.array([0.0]))[0] == 0.0
    assert rel_error(np.array([1.0]), np.array([0.5]))[0] == pytest.approx(0.5)


def _toy(bug=1.0, dx_bug=1.0, **settings):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    target = rng.standard_normal((3, 2))
    layers = [("fc1", Affine(5)), ("act", Tanh()), ("fc2", Affine(2, bug=bug, dx_bug=dx_bug))]
    return make_problem(layers, x, target, batched=True, **settings)


def test_correct_stack_passes_and_checks_every_element():
    report = run_check(_toy())
    assert report.passed
    assert [c.name for c in report.checks] == [
        "input",
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert report.check("fc1.weight").checked == 20
    assert all(v.passed for v in report.layers)
    assert report.check("input").max_rel_error < 1e-6


def test_wrong_weight_gradient_fails_only_that_tensor_and_blames_its_layer():
    report = run_check(_toy(bug=2.0))
    failing = [c.name for c in report.checks if not c.passed]
    assert failing == ["fc2.weight"]
    assert report.blamed_layers() == ["fc2"]
    assert report.check("fc2.weight").consequence_of is None


def test_wrong_dx_blames_the_layer_and_marks_lower_tensors_as_consequences():
    report = run_check(_toy(dx_bug=-1.0))
    assert report.check("fc2.weight").passed
    assert not report.check("fc1.weight").passed
    assert report.blamed_layers() == ["fc2"]
    assert report.check("fc1.weight").consequence_of == "fc2"
    assert report.check("input").consequence_of == "fc2"


def test_user_arrays_are_never_modified():
    p = _toy()
    x0 = p.x.copy()
    w0 = p.layers[0].params["weight"].copy()
    run_check(p)
    np.testing.assert_array_equal(p.x, x0)
    np.testing.assert_array_equal(p.layers[0].params["weight"], w0)


def test_relu_tie_at_zero_is_a_kink_not_a_failure():
    x = np.array([[0.0, 1.0, -1.0, 0.0]])
    target = np.zeros((1, 2))
    p = make_problem([("act", Relu()), ("fc", Affine(2))], x, target, only=("input",))
    report = run_check(p)
    assert report.passed
    assert report.check("input").kinks == 2


def test_sampling_checks_k_elements_and_leaves_the_rest_unchecked():
    from gradcheck_cli.problem import Mode

    report = run_check(_toy(mode=Mode.SAMPLE, sample=3))
    c = report.check("fc1.weight")
    assert c.checked == 3 and c.mode == "sample"
    assert np.isnan(c.numeric).sum() == 20 - 3


def test_a_blamed_layer_says_which_of_its_own_gradients_is_wrong():
    report = run_check(_toy(bug=2.0))
    verdict = next(v for v in report.layers if v.name == "fc2")
    assert verdict.diagnosis.startswith("weight: analytic = 2 x numeric")
    assert all(v.diagnosis is None for v in report.layers if v.passed)
    dx_wrong = next(v for v in run_check(_toy(dx_bug=-1.0)).layers if v.name == "fc2")
    assert dx_wrong.diagnosis.startswith("dx: flipped sign")


@given(
    values=st.lists(
        st.sampled_from([0.0, 1.0, 2.0, 3.0, np.inf, np.nan, 1e-300, 5e-324])
        | st.floats(allow_nan=True, allow_infinity=True),
        min_size=0,
        max_size=60,
    ),
    k=st.integers(min_value=-1, max_value=70),
)
@settings(max_examples=400, deadline=None, database=None)
def test_largest_first_is_the_head_of_a_stable_descending_sort(values, k):
    """The noise probes' choice (numeric.largest_first) picks exactly the elements, in
    exactly the order, a full stable sort would: ties (drawn often from a few values)
    in position order, NaN last, any k."""
    a = np.abs(np.array(values, dtype=np.float64))
    expected = np.argsort(-a, kind="stable")[: max(k, 0)]
    np.testing.assert_array_equal(largest_first(a, k), expected)
