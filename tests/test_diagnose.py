"""The diagnosis names each bug pattern on hand-built checks, and nothing on others."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.engine.compare import within
from gradcheck_cli.engine.diagnose import describe_factor, diagnose
from gradcheck_cli.report import TensorCheck


def make_check(analytic, numeric, name="conv1.weight", kink=None, checked=None):
    """A TensorCheck judged by the contract's rule, as check_tensor would build it."""
    a = np.asarray(analytic, dtype=float)
    n = np.asarray(numeric, dtype=float)
    checked = np.ones(a.shape, bool) if checked is None else checked
    n = np.where(checked, n, np.nan)
    kink = np.zeros(a.shape, bool) if kink is None else kink
    failed = checked & ~within(a, np.nan_to_num(n), 1e-7, 1e-5) & ~kink
    err = np.abs(a - n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(err > 0, err / np.maximum(np.abs(a), np.abs(n)), 0.0)
    layer, _, param = name.rpartition(".")
    return TensorCheck(
        name=name,
        layer=layer or None,
        param=param if layer else None,
        analytic=a,
        numeric=n,
        checked_mask=checked,
        failed_mask=failed,
        kink_mask=kink,
        abs_error=err,
        rel_error=rel,
    )


def grad(*shape, seed=0):
    """A plausible numeric gradient: no zeros, no symmetry."""
    return np.random.default_rng(seed).standard_normal(shape) + 0.1


def test_passing_tensor_has_no_diagnosis():
    n = grad(3, 3)
    assert diagnose(make_check(n + 1e-12, n), batch_size=1) is None


@pytest.mark.parametrize(
    ("k", "words"),
    [
        (2.0, "missing 1/2"),
        (0.5, "factor 2 too few"),
        (-1.0, "flipped sign"),
        (3.0, "analytic = 3 x numeric"),
        (-2.0, "flipped sign"),
    ],
)
def test_constant_factor_is_named(k, words):
    n = grad(2, 3, 3)
    text = diagnose(make_check(k * n, n), batch_size=1)
    assert text is not None and words in text


def test_factor_survives_numeric_noise():
    n = grad(4, 5)
    noisy = n * (1 + 1e-7 * grad(4, 5, seed=3))
    text = diagnose(make_check(2 * n, noisy), batch_size=1)
    assert "analytic = 2 x numeric" in text


@pytest.mark.parametrize(("k", "label"), [(4.0, "analytic = 4 x"), (0.25, "analytic = 1/4 x")])
def test_batch_size_factor_is_mean_vs_sum(k, label):
    n = grad(4, 3)
    text = diagnose(make_check(k * n, n, name="fc.weight"), batch_size=4)
    assert label in text and "mean vs sum over the batch" in text
    # the same factor without a batch is not called mean vs sum
    assert "mean vs sum" not in diagnose(make_check(k * n, n), batch_size=1)


def test_factor_two_with_batch_of_two_names_both_causes():
    n = grad(3)
    text = diagnose(make_check(2 * n, n, name="fc.bias"), batch_size=2)
    assert "missing 1/2" in text and "mean vs sum" in text


def test_partly_scaled_tensor_is_not_a_global_factor():
    n = grad(6, 6)
    a = n.copy()
    a[2:4, 2:4] *= 2  # only an interior block is off: no single k, no border, no channel
    text = diagnose(make_check(a, n, name="fc.weight"), batch_size=1)
    assert text.startswith("on the 4 failing element(s) only: analytic = 2 x numeric")


def test_kernel_flip_is_named():
    n = grad(2, 3, 3, 3)
    text = diagnose(make_check(n[..., ::-1, ::-1], n), batch_size=1)
    assert "kernel flip" in text and "convolution vs cross-correlation" in text


def test_transpose_is_named():
    n = grad(4, 4)
    text = diagnose(make_check(n.T, n, name="fc.weight"), batch_size=1)
    assert "transposed" in text


def test_symmetric_numeric_does_not_claim_a_flip():
    base = grad(3, 3)
    n = base + base[::-1, ::-1]  # flip-symmetric: a flip cannot be told from no flip
    text = diagnose(make_check(2 * n, n), batch_size=1)
    assert "flip" not in text and "analytic = 2 x numeric" in text


def test_shift_by_one_is_an_off_by_one():
    n = grad(6, 6)
    a = np.zeros_like(n)
    a[:-1, :] = n[1:, :]  # analytic[i, j] = numeric[i+1, j]
    a[-1, :] = 0.7
    text = diagnose(make_check(a, n, name="input"), batch_size=1)
    assert "shifted by 1 along axis 0" in text and "numeric[i+1, j]" in text


def test_errors_only_on_the_border_is_padding():
    n = grad(1, 6, 6)
    a = n.copy()
    a[:, 0, :] = 0.0
    a[:, :, -1] *= 3
    text = diagnose(make_check(a, n, name="input"), batch_size=1)
    assert "border" in text and "padding" in text


def test_errors_in_one_channel_name_the_axis_and_index():
    n = grad(3, 2, 4, 4)
    a = n.copy()
    a[1] *= 2
    text = diagnose(make_check(a, n), batch_size=1)
    assert "index 1 of axis 0 (output channels)" in text
    assert "analytic = 2 x numeric" in text


def test_errors_in_one_input_channel_of_a_batched_input():
    n = grad(2, 3, 4, 4)
    a = n.copy()
    a[:, 2] = -a[:, 2]
    text = diagnose(make_check(a, n, name="input"), batch_size=2)
    assert "index 2 of axis 1 (channels)" in text and "flipped sign" in text


def test_zero_everywhere_is_never_propagated():
    n = grad(3, 4)
    text = diagnose(make_check(np.zeros_like(n), n, name="fc.weight"), batch_size=1)
    assert "never propagated" in text


def test_zero_at_some_elements_is_never_propagated_to_them():
    n = grad(10)
    a = n.copy()
    a[[1, 4, 7]] = 0.0
    text = diagnose(make_check(a, n, name="fc.bias"), batch_size=1)
    assert "0 at 3 element(s)" in text and "never propagated to these elements" in text


def test_gradient_on_unused_elements_is_routed_too_widely():
    # max pool 2x2 window routed to the whole window: numeric only at the maxima
    n = np.zeros((4, 4))
    n[0, 1], n[1, 3], n[2, 0], n[3, 3] = 0.3, -0.2, 0.5, 0.1
    a = np.kron(np.array([[0.3, -0.2], [0.5, 0.1]]), np.ones((2, 2)))
    text = diagnose(make_check(a, n, name="input"), batch_size=1)
    assert "do not affect the loss" in text and "whole window" in text


def test_gradient_on_the_wrong_element_is_wrong_routing():
    n = np.zeros((4, 4))
    n[0, 1], n[1, 3], n[2, 0], n[3, 3] = 0.3, -0.2, 0.5, 0.1
    a = np.zeros((4, 4))
    a[1, 0], a[0, 2], a[3, 1], a[2, 2] = 0.3, -0.2, 0.5, 0.1
    text = diagnose(make_check(a, n, name="input"), batch_size=1)
    assert "routed to the wrong elements" in text


def test_failures_that_are_all_kinks_under_strict_kinks():
    n = grad(5)
    a = n.copy()
    a[2] = 0.0
    kink = np.zeros(5, bool)
    kink[2] = True
    check = make_check(a, n, name="input")
    check.kink_mask = kink
    check.failed_mask = kink.copy()  # --strict-kinks
    assert "kink" in diagnose(check, batch_size=1)


def test_kinks_are_left_out_of_the_factor_fit():
    n = grad(8)
    a = 2 * n
    kink = np.zeros(8, bool)
    kink[3] = True
    a[3] = 0.123  # a kink's numeric value is a mean of two slopes: ignore it
    text = diagnose(make_check(a, n, name="input", kink=kink), batch_size=1)
    assert "analytic = 2 x numeric" in text


def test_unchecked_elements_are_ignored():
    n = grad(4, 4)
    checked = np.zeros((4, 4), bool)
    checked.flat[[0, 5, 9, 14]] = True
    text = diagnose(make_check(-n, n, name="fc.weight", checked=checked), batch_size=1)
    assert "flipped sign" in text


def test_no_pattern_gives_none():
    n = grad(5, 5)
    a = grad(5, 5, seed=9)
    assert diagnose(make_check(a, n, name="fc.weight"), batch_size=1) is None


def test_describe_factor_uses_plain_numbers():
    assert "analytic = 1/3 x numeric" in describe_factor(1 / 3, 1)
    assert "analytic = 3.7 x numeric" in describe_factor(3.7, 1)


# --- the heatmap of a failing tensor -------------------------------------------------------


def _plain(renderable, color_system: str | None = None) -> str:
    import io

    from rich.console import Console

    console = Console(width=120, color_system=color_system, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_heatmap_draws_only_failing_slices_and_marks_kinks():
    from gradcheck_cli.render.heatmap import error_heatmap

    n = grad(2, 3, 4, 5)
    a = n.copy()
    a[1, 2, 0, :] = 0.0  # the top row of one slice is wrong
    kink = np.zeros(n.shape, bool)
    kink[1, 2, 2, 2] = True
    text = _plain(error_heatmap(make_check(a, n, kink=kink), max_slices=4))
    assert "conv1.weight[1, 2, :, :]" in text and "conv1.weight[0, 0, :, :]" not in text
    rows = [line.rstrip() for line in text.splitlines() if line[:2] in ("0 ", "1 ", "2 ", "3 ")]
    # plain output (no colour): ASCII shades, a failed element marked "!"
    assert rows[0] == "0 " + "#!" * 5  # relative error 1 on the failing row
    assert rows[2] == "2 . . k . ."
    assert len(rows) == 4
    colour = _plain(error_heatmap(make_check(a, n, kink=kink)), color_system="truecolor")
    rows = [line for line in colour.splitlines() if line[:2] in ("0 ", "1 ", "2 ", "3 ")]
    assert rows[0] == "0 " + "██" * 5 and rows[2] == "2 ....k ...."


def test_heatmap_is_none_for_passing_or_unchecked_tensors():
    from gradcheck_cli.render.heatmap import error_heatmap

    n = grad(3, 3)
    assert error_heatmap(make_check(n, n)) is None
    unchecked = make_check(2 * n, n, checked=np.zeros((3, 3), bool))
    assert error_heatmap(unchecked) is None
    assert error_heatmap(make_check(2 * grad(4), grad(4), name="fc.bias")) is None  # 1-D


def test_heatmap_caps_slices_and_crops_large_ones():
    from gradcheck_cli.render.heatmap import error_heatmap

    n = grad(6, 40, 40)
    text = _plain(error_heatmap(make_check(-n, n, name="input"), max_slices=2, max_side=8))
    assert "… 4 more slices with failures" in text
    assert "(first 8 x 8 of 40 x 40)" in text


# --- issue 10: small errors, and where they are ----------------------------------------------


def small_check(a, n, name="fc.weight", bound=1e-12):
    """A check whose every element differing from n by more than its bound fails."""
    check = make_check(a, n, name=name)
    check.error_bound = np.full(np.shape(a), bound)
    check.failed_mask = np.abs(np.asarray(a) - np.asarray(n)) > bound
    return check


@pytest.mark.parametrize(
    ("k", "words"),
    [
        (1.001, "off by a factor 1.001 (0.1%)"),
        (1 + 1e-5, "off by a factor 1.00001 (0.001%)"),
        (1 - 3e-4, "off by a factor 0.9997 (-0.03%)"),
    ],
)
def test_a_factor_near_one_is_off_by_a_factor_not_a_flipped_sign(k, words):
    n = grad(4, 5)
    text = diagnose(small_check(k * n, n), batch_size=1)
    assert words in text and "flipped" not in text


def test_a_small_constant_added_to_every_element():
    n = np.random.default_rng(4).uniform(0.1, 10, (3, 4)) * np.sign(grad(3, 4))
    text = diagnose(small_check(n + 1e-7, n), batch_size=1)
    assert "a small constant added" in text and "+ 1e-07" in text


def test_small_errors_that_fit_no_pattern_are_sized_not_named():
    n = grad(4, 5)
    e = 1e-6 * grad(4, 5, seed=7)
    text = diagnose(small_check(n + e, n), batch_size=1)
    assert "no single factor or added constant fits" in text
    assert "factor 1." not in text and "constant added" not in text


def test_a_single_wrong_element_is_named_with_its_index():
    n = grad(4, 5)
    a = n.copy()
    a[1, 2] *= 1 + 1e-6
    text = diagnose(small_check(a, n), batch_size=1)
    assert "only 1 of 20 elements wrong: fc.weight[1, 2] (relative error 1e-06)" in text


def test_wrong_only_where_the_input_is_negative():
    x = np.array([[0.7, -1.2, 0.4, -0.3, 1.5, -2.0], [-0.8, 0.2, -0.1, 1.1, 0.6, -1.7]])
    n = grad(2, 6)
    a = np.where(x < 0, 2 * n, n)
    check = make_check(a, n, name="input")
    text = diagnose(check, batch_size=2, values=x)
    assert "errors only where the input is negative: all 6 negative elements fail" in text
    assert "analytic = 2 x numeric" in text and "mean vs sum" not in text
    assert "negative" not in (diagnose(check, batch_size=2) or "")  # not without values


def test_a_sign_split_that_chance_explains_is_not_claimed():
    x = np.array([0.5, -1.0, 0.3, -0.2])
    n = grad(4)
    a = np.where(x < 0, 2 * n, n)  # 2 of 4: a random pair is negative one time in six
    text = diagnose(make_check(a, n, name="input"), batch_size=1, values=x) or ""
    assert "negative" not in text


def test_wrong_only_where_saturated():
    x = np.array([0.5, -8.0, 1.2, 11.0, -0.3, -14.0, 0.9, 7.5, -1.1, 2.0])
    s = 1 / (1 + np.exp(-x))
    n = s * (1 - s)
    a = np.maximum(n, 1e-3)  # a floored derivative: wrong exactly where saturated
    text = diagnose(make_check(a, n, name="input"), batch_size=1, values=x)
    assert "errors only where saturated: at the 4 element(s) with |input| >= 7.5" in text


def test_saturation_is_not_claimed_when_a_larger_input_is_right():
    x = np.array([0.5, -8.0, 1.2, 11.0, -0.3, -14.0, 0.9, 7.5, -1.1, 20.0])
    s = 1 / (1 + np.exp(-x))
    n = s * (1 - s)
    a = np.where(np.abs(x) > 7, np.maximum(n, 1e-3), n)
    a[-1] = n[-1]  # the largest input is right
    text = diagnose(make_check(a, n, name="input"), batch_size=1, values=x) or ""
    assert "saturated" not in text
