"""Built-in losses: per-example values, dy against central differences, closed forms,
target handling and its field errors."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli.losses  # noqa: F401  (registers the built-in losses)
from gradcheck_cli.protocol import LOSSES, ORIGINS, FieldError, Loss


def make(type_name: str) -> Loss:
    return LOSSES[type_name]()


def numeric_grad(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of a (in place)."""
    g = np.zeros_like(a)
    for i in range(a.size):
        old = a.flat[i]
        a.flat[i] = old + eps
        fp = f()
        a.flat[i] = old - eps
        fm = f()
        a.flat[i] = old
        g.flat[i] = (fp - fm) / (2 * eps)
    return g


def probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=1, keepdims=True)


def case(case_id: str):
    """(loss, y, prepared target) for one case; batch of 3."""
    rng = np.random.default_rng(0)
    if case_id == "mse":
        y = rng.standard_normal((3, 2, 3))
        return make("mse"), y, rng.standard_normal(y.shape)
    if case_id == "upstream":
        y = rng.standard_normal((3, 4))
        return make("upstream"), y, rng.standard_normal(y.shape)
    if case_id == "cross_entropy-index":
        loss = make("cross_entropy")
        return loss, probabilities(rng, (3, 5)), loss.prepare_target(np.array([4.0, 0, 2]), (5,))
    if case_id == "cross_entropy-dist":
        y = probabilities(rng, (3, 4))
        return make("cross_entropy"), y, probabilities(rng, y.shape)
    if case_id == "softmax_cross_entropy-index":
        loss = make("softmax_cross_entropy")
        return loss, 3 * rng.standard_normal((3, 5)), loss.prepare_target(np.array([1, 3, 0]), (5,))
    if case_id == "softmax_cross_entropy-dist-chw":
        y = rng.standard_normal((3, 4, 2, 2))
        return make("softmax_cross_entropy"), y, probabilities(rng, y.shape)
    raise KeyError(case_id)


CASE_IDS = [
    "mse",
    "upstream",
    "cross_entropy-index",
    "cross_entropy-dist",
    "softmax_cross_entropy-index",
    "softmax_cross_entropy-dist-chw",
]


def test_every_builtin_loss_has_a_case():
    """``function`` gives one loss for the whole batch, not one per example: its cases
    are in tests/test_functions.py."""
    builtin = {name for name in LOSSES if ORIGINS.get(("loss", name)) == "built-in"}
    assert builtin - {"function"} == {c.split("-")[0] for c in CASE_IDS}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_backward_matches_central_differences(case_id):
    loss, y, target = case(case_id)
    losses, cache = loss.forward(y, target)
    assert losses.shape == (3,)  # per example: the engine reduces over the batch
    dy = loss.backward(cache)
    assert dy.shape == y.shape

    def total() -> float:
        return float(loss.forward(y, target)[0].sum())

    np.testing.assert_allclose(dy, numeric_grad(total, y), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_each_example_is_its_own_loss(case_id):
    loss, y, target = case(case_id)
    losses, _ = loss.forward(y, target)
    for n in range(3):
        one, _ = loss.forward(y[n : n + 1], target[n : n + 1])
        np.testing.assert_allclose(one, losses[n : n + 1], rtol=1e-15)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_stacked_copies_reuse_the_target(case_id):
    """The engine may pass P copies of the batch (P*N rows) against the N-row target."""
    loss, y, target = case(case_id)
    losses, _ = loss.forward(y, target)
    stacked, cache = loss.forward(np.concatenate([y, y]), target)
    np.testing.assert_allclose(stacked, np.concatenate([losses, losses]), rtol=1e-15)
    assert loss.backward(cache).shape == (6, *y.shape[1:])


def test_mse_closed_form():
    y = np.array([[1.0, 2.0], [0.0, -1.0]])
    t = np.array([[0.0, 4.0], [0.0, 1.0]])
    losses, cache = make("mse").forward(y, t)
    np.testing.assert_allclose(losses, [0.5 * (1 + 4), 0.5 * 4])
    np.testing.assert_allclose(make("mse").backward(cache), y - t)


def test_upstream_dy_is_grad_and_a_copy():
    loss = make("upstream")
    assert loss.target_name == "grad"
    grad = np.array([[0.25, -0.15]])
    losses, cache = loss.forward(np.array([[2.0, 4.0]]), grad)
    np.testing.assert_allclose(losses, [0.5 - 0.6])
    dy = loss.backward(cache)
    np.testing.assert_allclose(dy, grad)
    dy *= 2  # the engine may scale dy in place; the target must not change
    np.testing.assert_allclose(grad, [[0.25, -0.15]])


def test_cross_entropy_of_a_class_index_is_minus_log_p():
    loss = make("cross_entropy")
    y = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    target = loss.prepare_target(np.array([1, 0]), (3,))
    np.testing.assert_allclose(target, [[0, 1, 0], [1, 0, 0]])
    losses, cache = loss.forward(y, target)
    np.testing.assert_allclose(losses, -np.log([0.7, 0.5]))
    np.testing.assert_allclose(loss.backward(cache), [[0, -1 / 0.7, 0], [-2, 0, 0]])


def test_cross_entropy_ignores_zero_probabilities_where_target_is_zero():
    loss = make("cross_entropy")
    y = np.array([[0.0, 1.0]])
    with np.errstate(all="raise"):
        losses, cache = loss.forward(y, np.array([[0.0, 1.0]]))
        dy = loss.backward(cache)
    np.testing.assert_allclose(losses, [0.0], atol=1e-15)
    np.testing.assert_allclose(dy, [[0.0, -1.0]])


def test_softmax_cross_entropy_equals_cross_entropy_of_softmax():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((4, 6))
    t = probabilities(rng, z.shape)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    sce, _ = make("softmax_cross_entropy").forward(z, t)
    ce, _ = make("cross_entropy").forward(p, t)
    np.testing.assert_allclose(sce, ce, rtol=1e-13)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss = make("softmax_cross_entropy")
    z = np.array([[1000.0, 0.0], [1000.0, 0.0]])
    target = loss.prepare_target(np.array([0, 1]), (2,))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        losses, cache = loss.forward(z, target)
    np.testing.assert_allclose(losses, [0.0, 1000.0], atol=1e-12)
    np.testing.assert_allclose(loss.backward(cache), [[0.0, 0.0], [1.0, -1.0]], atol=1e-12)


def test_softmax_cross_entropy_gradient_scales_with_target_mass():
    loss = make("softmax_cross_entropy")
    z = np.array([[0.0, 0.0]])
    _, cache = loss.forward(z, np.array([[2.0, 0.0]]))  # not normalised: mass 2
    np.testing.assert_allclose(loss.backward(cache), [[2 * 0.5 - 2, 2 * 0.5]])


# -- targets ---------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["cross_entropy", "softmax_cross_entropy"])
def test_class_index_forms_become_one_hot(type_name):
    loss = make(type_name)
    expected = [[0, 0, 1], [1, 0, 0]]
    np.testing.assert_allclose(loss.prepare_target(np.array([2, 0]), (3,)), expected)
    np.testing.assert_allclose(loss.prepare_target(np.array([[2.0], [0.0]]), (3,)), expected)
    dist = np.array([[0.2, 0.3, 0.5]])
    np.testing.assert_allclose(loss.prepare_target(dist, (3,)), dist)


@pytest.mark.parametrize("type_name", ["cross_entropy", "softmax_cross_entropy"])
def test_distribution_without_size_one_axes_is_reshaped(type_name):
    dist = np.array([[0.2, 0.3, 0.5]])
    prepared = make(type_name).prepare_target(dist, (3, 1, 1))
    np.testing.assert_allclose(prepared, dist.reshape(1, 3, 1, 1))


@pytest.mark.parametrize("type_name", ["cross_entropy", "softmax_cross_entropy"])
@pytest.mark.parametrize(
    ("target", "y_shape", "match"),
    [
        (np.array([3]), (3,), r"integer from 0 to 2 \(the output has 3 classes\), got 3"),
        (np.array([-1]), (3,), "integer from 0 to 2"),
        (np.array([1.5]), (3,), "integer from 0 to 2"),
        (np.array([[0.5, -0.1, 0.6]]), (3,), "negative"),
        (np.array([[0.5, 0.5]]), (3,), r"shaped like the network output \[3\]"),
        (np.array([1]), (3, 2, 2), r"flat network output"),
    ],
)
def test_bad_targets_raise_field_error(type_name, target, y_shape, match):
    with pytest.raises(FieldError, match=match) as info:
        make(type_name).prepare_target(target, y_shape)
    assert info.value.field == "target"


@pytest.mark.parametrize(("type_name", "field"), [("mse", "target"), ("upstream", "grad")])
def test_shape_mismatch_names_the_target_key(type_name, field):
    with pytest.raises(FieldError, match=r"does not match the network output shape \[2\]") as info:
        make(type_name).prepare_target(np.zeros((1, 3)), (2,))
    assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(
    shape=st.tuples(st.integers(0, 30), st.integers(1, 80)),
    extra=st.lists(st.integers(1, 3), max_size=2),
    specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0]), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_class_max_is_numpy_s_maximum_bit_for_bit(shape, extra, specials, seed):
    """The column-by-column maximum softmax_cross_entropy uses for few classes gives
    what y.max(axis=1, keepdims=True) gives, for any number of classes and rows, N-D
    logits, and NaN, infinities and signed zeros among them."""
    from gradcheck_cli.losses._common import class_max

    rng = np.random.default_rng(seed)
    y = rng.standard_normal((*shape, *extra)) * 10.0 ** rng.integers(-5, 5)
    flat = y.reshape(-1)
    if flat.size:
        flat[rng.integers(0, flat.size, len(specials))] = specials
    got, want = class_max(y), y.max(axis=1, keepdims=True)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN where NaN
    assert np.array_equal(np.signbit(got), np.signbit(want)) or np.isnan(want).any()


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(0, 40),
    columns=st.integers(1, 140),
    dtype=st.sampled_from([np.float64, np.float32]),
    order=st.sampled_from(["C", "F", "strided"]),
    specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0]), max_size=8),
    zero_row=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_short_sums_are_numpy_s_sums_bit_for_bit(
    rows, columns, dtype, order, specials, zero_row, seed
):
    """The column-by-column row sums the losses and the engine's per-copy reduction use
    give what a.sum(axis=1) gives, bit for bit: any number of rows and columns (numpy's
    pairwise blocks of 8 and the rest), float32 and float64, C, Fortran and strided
    layouts, values of any size, NaN, infinities and signed zeros (a row of -0.0)."""
    from gradcheck_cli.losses._common import short_sums

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, columns * (2 if order == "strided" else 1)))
    a = (a * 10.0 ** rng.integers(-30, 30, a.shape)).astype(dtype)
    if order == "strided":
        a = a[:, ::2]
    elif order == "F":
        a = np.asfortranarray(a)
    flat = a.reshape(-1) if order == "C" else None
    if flat is not None and flat.size:
        flat[rng.integers(0, flat.size, len(specials))] = specials
    if zero_row and rows:
        a[0] = -0.0
    with np.errstate(all="ignore"):
        got, want = short_sums(a), a.sum(axis=1)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want)) or np.isnan(want).any()


def _sce_by_row_sums(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """softmax_cross_entropy's losses and dE/dy the plain way: numpy's reductions over
    whole rows of t * log_p (the loss's own path for a target that is not one-hot)."""
    shifted = y - y.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(t * log_p).sum(axis=1), np.exp(log_p) * t.sum(axis=1, keepdims=True) - t


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(1, 60),
    classes=st.integers(2, 90),
    y_dtype=st.sampled_from([np.float64, np.float32]),
    t_dtype=st.sampled_from([np.float64, np.float32]),
    spoil=st.sampled_from([None, "extra", "two", "minus_zero", "nan", "negative", "soft"]),
    specials=st.lists(st.sampled_from([np.nan, np.inf, 0.0, -0.0, 1e300]), max_size=4),
    seed=st.integers(0, 2**32 - 1),
    block=st.sampled_from([None, 1, 3, 7]),
)
def test_one_hot_targets_give_the_row_sums_numbers_bit_for_bit(
    rows, classes, y_dtype, t_dtype, spoil, specials, seed, block
):
    """softmax_cross_entropy picks one log-probability per row for one-hot targets
    (computed class-major) and sums t * log_p otherwise: the losses and dE/dy are what
    the sum over whole rows gives, bit for bit and in its dtype, for any number of rows
    and classes, float32 and float64, NaN, infinities, signed zeros and huge logits, and
    targets that are one-hot but for one entry (which must take the row-sum path). The
    logits are never written to (one row: y.T is already contiguous). ``block``: rows
    per block of the class-major path (``PICK_BLOCK_BYTES``), None for its own."""
    from gradcheck_cli.losses import cross_entropy
    from gradcheck_cli.losses._common import hot_classes

    rng = np.random.default_rng(seed)
    y = (rng.standard_normal((rows, classes)) * 10.0 ** rng.integers(-3, 3)).astype(y_dtype)
    with np.errstate(over="ignore"):  # 1e300 is inf in float32
        y.reshape(-1)[rng.integers(0, y.size, len(specials))] = specials
    hot = rng.integers(0, classes, rows)
    t = np.zeros((rows, classes), dtype=t_dtype)
    t[np.arange(rows), hot] = 1.0
    r, c = rng.integers(0, rows), rng.integers(0, classes)
    if spoil == "extra":
        t[r, (hot[r] + 1) % classes] = 0.5
    elif spoil == "two":
        t[r, hot[r]] = 2.0
    elif spoil == "minus_zero":
        t[r, (hot[r] + 1) % classes] = -0.0
    elif spoil == "nan":
        t[r, c] = np.nan
    elif spoil == "negative":
        t[r, (hot[r] + 1) % classes] = -1.0
        t[r, (hot[r] + 2) % classes] += 1.0
    elif spoil == "soft":
        t = rng.dirichlet(np.ones(classes), rows).astype(t_dtype)
    assert (hot_classes(t) is not None) == (spoil is None)
    if spoil is None:
        np.testing.assert_array_equal(hot_classes(t), hot)
    before = y.copy()
    loss = make("softmax_cross_entropy")
    size = cross_entropy.PICK_BLOCK_BYTES if block is None else block * classes * y.itemsize
    with np.errstate(all="ignore"), mock.patch.object(cross_entropy, "PICK_BLOCK_BYTES", size):
        got, cache = loss.forward(y, t)
        grad = loss.backward(cache)
        want, want_grad = _sce_by_row_sums(y, t)
    np.testing.assert_array_equal(y, before)
    assert got.dtype == want.dtype and got.shape == want.shape == (rows,)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want)) or np.isnan(want).any()
    assert grad.dtype == want_grad.dtype
    np.testing.assert_array_equal(grad, want_grad)


def test_a_logit_of_minus_infinity_off_the_target_costs_nothing():
    """exp(-inf) = 0: a class the network rules out entirely leaves the loss finite (the
    row sum's 0 * -inf would have made it NaN)."""
    y = np.array([[0.0, -np.inf, 1.0]])
    got, _ = make("softmax_cross_entropy").forward(y, np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(got, [np.log1p(np.e)], rtol=1e-15)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.integers(2, 70),
    columns=st.integers(1, 300),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_class_major_sums_and_max_are_the_row_reductions_of_the_transpose(
    rows, columns, dtype, seed
):
    """a (K, M): class_major_sums and class_major_max give what numpy's reductions give
    over the rows of the C-ordered transpose (the loss's (M, K) logits), bit for bit:
    pairwise blocks of 8 for the sums, not the column-after-column order numpy takes
    over a Fortran-ordered a.T."""
    from gradcheck_cli.losses._common import class_major_max, class_major_sums

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, columns)) * 10.0 ** rng.integers(-30, 30, (rows, columns))
    a = a.astype(dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(class_major_sums(a), a.T.copy().sum(axis=1))
    np.testing.assert_array_equal(class_major_max(a), a.T.copy().max(axis=1))


def _tiling_losses():
    from gradcheck_cli.protocol import LOSSES

    return sorted(name for name, cls in LOSSES.items() if getattr(cls, "tiles_target", False))


@pytest.mark.parametrize("name", _tiling_losses())
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    p=st.integers(1, 7),
    classes=st.integers(2, 12),
    one_hot=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_loss_that_tiles_the_target_gives_the_tiled_numbers_bit_for_bit(
    name, n, p, classes, one_hot, seed
):
    """A loss declaring ``tiles_target`` is handed the target's N rows for P*N stacked
    copies (engine/objective.py): its losses and dE/dy are the bits the tiled target
    gives, one-hot targets and soft ones alike."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((p * n, classes))
    if one_hot:
        t = np.zeros((n, classes))
        t[np.arange(n), rng.integers(0, classes, n)] = 1.0
    else:
        t = rng.dirichlet(np.ones(classes), n)
    loss = make(name)
    got, cache = loss.forward(y, t)
    want, want_cache = loss.forward(y, np.tile(t, (p, 1)))
    assert np.array_equal(got, want)
    assert np.array_equal(loss.backward(cache), loss.backward(want_cache))


def test_a_subclass_with_its_own_forward_gets_the_tiled_target():
    """``tiles_target`` holds for the forward that declares it: a loss deriving from a
    built-in one and writing its own forward (a plugin's label smoothing) is handed the
    tiling, as every other loss; one that keeps the built-in forward is not."""
    from gradcheck_cli.engine.passes import tiles_target
    from gradcheck_cli.losses.cross_entropy import SoftmaxCrossEntropy

    class OwnForward(SoftmaxCrossEntropy):
        def forward(self, y, target):
            return super().forward(y, target)

    class SameForward(SoftmaxCrossEntropy):
        summary = "the built-in forward, another name"

    assert tiles_target(make("softmax_cross_entropy"))
    assert not tiles_target(OwnForward())
    assert tiles_target(SameForward())
    assert not tiles_target(make("mse"))
