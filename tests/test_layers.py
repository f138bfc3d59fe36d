"""Built-in layers: backward against central differences, closed forms, worked example A,
forward_perturbed against the materialising reference, row consistency, field errors."""

from __future__ import annotations

import numpy as np
import pytest
from layer_cases import LAYER_CASES, N, case, declaring

import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
from gradcheck_cli.layers.dropout import dropout_mask
from gradcheck_cli.protocol import (
    LAYERS,
    ORIGINS,
    FieldError,
    Layer,
    perturbed_by_loop,
)


def make(type_name: str, **kwargs) -> Layer:
    return LAYERS[type_name](**kwargs)


def distinct_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in [-2, 2], pairwise at least 4/size apart and at least 2/size from 0.

    Keeps every kink (relu at 0, ties inside a max-pool window) far beyond eps = 1e-6.
    """
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2 + 0.5) * (4.0 / size)).reshape(shape)


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


#: The ids of the shared table's one-input cases (tests/layer_cases.py); a batch of N.
CASES = [c.id for c in LAYER_CASES]
#: Cases of layers that declare batch_independent = True, and of those that do not.
INDEPENDENT = [c.id for c in LAYER_CASES if c.construct().batch_independent]
#: ... of those, the built-in code: bitwise equal rows whatever the batch (a user's function
#: pair computing x.dot(w) in one gemm is only equal to rounding, which the check measures)
BITWISE = [c for c in INDEPENDENT if case(c).type != "functions"]
MIXING = [c.id for c in LAYER_CASES if not c.construct().batch_independent]


def setup(case_id: str, seed: int = 0):
    c = case(case_id)
    in_shape = c.in_shape
    rng = np.random.default_rng(seed)
    layer = c.construct(N)
    params = layer.init_params(in_shape, rng)
    x = distinct_input(rng, (N, *in_shape))
    return layer, params, x, in_shape, rng


@pytest.mark.parametrize("case_id", CASES)
def test_backward_matches_central_differences(case_id):
    layer, params, x, in_shape, rng = setup(case_id)
    y, cache = layer.forward(x, params)
    assert y.shape == (N, *layer.output_shape(in_shape))
    r = rng.standard_normal(y.shape)
    dx, grads = layer.backward(r, cache, params)
    assert set(grads) == set(params) == set(layer.param_names)

    def scalar() -> float:
        return float(np.sum(r * layer.forward(x, params)[0]))

    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, numeric_grad(scalar, x), rtol=1e-6, atol=1e-8)
    for name, value in params.items():
        assert grads[name].shape == value.shape
        np.testing.assert_allclose(
            grads[name], numeric_grad(scalar, value), rtol=1e-6, atol=1e-8, err_msg=name
        )


@pytest.mark.parametrize("case_id", CASES)
def test_forward_is_pure_and_deterministic(case_id):
    layer, params, x, _, _ = setup(case_id)
    before = repr(vars(layer))
    x_copy, params_copy = x.copy(), {k: v.copy() for k, v in params.items()}
    y1, _ = layer.forward(x, params)
    y2, _ = layer.forward(x, params)
    assert repr(vars(layer)) == before
    np.testing.assert_array_equal(x, x_copy)
    for k in params:
        np.testing.assert_array_equal(params[k], params_copy[k])
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("case_id", BITWISE)
def test_rows_are_bitwise_independent_of_the_batch(case_id):
    """A layer declaring batch_independent = True really is: the engine stacks P copies
    of the batch (copy-major) and expects, bit for bit, what it gets one copy at a time."""
    layer, params, x, _, rng = setup(case_id)
    copies = [x, x[::-1].copy(), distinct_input(rng, x.shape)]
    stacked, _ = layer.forward(np.concatenate(copies), params)
    for k, xk in enumerate(copies):
        np.testing.assert_array_equal(stacked[k * N : (k + 1) * N], layer.forward(xk, params)[0])
    if case_id != "dropout":  # dropout's row r depends on r % batch_size by design
        for r in range(N):
            np.testing.assert_array_equal(
                stacked[r : r + 1], layer.forward(x[r : r + 1], params)[0]
            )


@pytest.mark.parametrize(
    ("type_name", "kwargs", "in_shape"),
    [
        ("dense", {"out_features": 200}, (300,)),
        ("conv2d", {"out_channels": 16, "kernel_size": 3, "padding": 1}, (8, 12, 12)),
    ],
)
def test_large_products_are_row_consistent(type_name, kwargs, in_shape):
    """Sizes where one big gemm would block differently for 1 and 64 rows."""
    rng = np.random.default_rng(5)
    layer = make(type_name, **kwargs)
    params = layer.init_params(in_shape, rng)
    x = rng.standard_normal((64, *in_shape))
    y, _ = layer.forward(x, params)
    for r in (0, 31, 63):
        np.testing.assert_array_equal(y[r : r + 1], layer.forward(x[r : r + 1], params)[0])


@pytest.mark.parametrize("case_id", INDEPENDENT)
def test_moving_one_row_leaves_the_other_rows_alone(case_id):
    """batch_independent = True: row r of the output depends only on row r of the input."""
    layer, params, x, _, _ = setup(case_id)
    y, _ = layer.forward(x, params)
    for s in range(N):
        moved = x.copy()
        moved[s] += 0.125
        y2, _ = layer.forward(moved, params)
        others = [r for r in range(N) if r != s]
        np.testing.assert_array_equal(y2[others], y[others])


@pytest.mark.parametrize("case_id", MIXING)
def test_layers_not_declared_batch_independent_do_mix_rows(case_id):
    """The protocol allows batch statistics (batchnorm); such a layer declares
    batch_independent = False, and the engine then checks it one copy at a time."""
    layer, params, x, _, _ = setup(case_id)
    y, _ = layer.forward(x, params)
    moved = x.copy()
    moved[0] += 0.5 * np.arange(moved[0].size).reshape(moved[0].shape)
    y2, _ = layer.forward(moved, params)
    assert not np.array_equal(y2[1:], y[1:])


def test_builtin_layers_have_a_summary():
    for name, cls in LAYERS.items():
        if ORIGINS.get(("layer", name)) == "built-in":
            assert cls.summary, name


@pytest.mark.parametrize("case_id", [c.id for c in declaring("supports_perturbed")])
@pytest.mark.parametrize("scale", [1e-6, 1.0])
def test_forward_perturbed_matches_the_loop(case_id, scale):
    rng = np.random.default_rng(11)
    layer, in_shape = case(case_id).construct(), case(case_id).in_shape
    assert layer.supports_perturbed
    params = layer.init_params(in_shape, rng)
    x = rng.standard_normal((3, *in_shape))
    for name, value in params.items():
        index = rng.integers(0, value.size, size=9)
        index[1] = index[0]  # the same element twice
        delta = scale * rng.standard_normal(9)
        fast = layer.forward_perturbed(x, params, name, index, delta)
        slow = perturbed_by_loop(layer, x, params, name, index, delta)
        assert fast.shape == slow.shape == (9, 3, *layer.output_shape(in_shape))
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12 * np.abs(slow).max())


# -- closed forms ----------------------------------------------------------------------


def test_maxpool_tie_routes_to_the_first_maximum_only():
    layer = make("maxpool2d", kernel_size=2, stride=1)
    x = np.array([[[[0.5, 1.0, 1.0], [1.0, 0.2, 1.0], [0.1, 0.3, 0.4]]]])
    y, cache = layer.forward(x, {})
    np.testing.assert_allclose(y[0, 0], [[1.0, 1.0], [1.0, 1.0]], rtol=0, atol=1e-15)
    dy = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    dx, _ = layer.backward(dy, cache, {})
    # Routing copies dy, so the ties that lose get exactly 0: compared exactly on purpose.
    # Windows (row-major first max): (0,0)->(0,1), (0,1)->(0,1), (1,0)->(1,0), (1,1)->(1,2).
    expected = np.array([[[[0.0, 11.0, 0.0], [100.0, 0.0, 1000.0], [0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(dx, expected)


def test_maxpool_padding_counts_as_minus_infinity():
    layer = make("maxpool2d", kernel_size=2, stride=2, padding=1)
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)  # all negative: zero padding would win
    y, _ = layer.forward(x, {})
    np.testing.assert_allclose(y[0, 0], [[-1.0, -2.0], [-3.0, -4.0]], rtol=0, atol=1e-15)


def test_avgpool_spreads_dy_over_kh_kw():
    layer = make("avgpool2d", kernel_size=2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 6))
    y, cache = layer.forward(x, {})
    np.testing.assert_allclose(y, x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)), rtol=1e-14)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy, cache, {})
    np.testing.assert_allclose(dx, np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4, rtol=1e-14)


def test_avgpool_overlapping_windows_accumulate_and_padding_counts():
    layer = make("avgpool2d", kernel_size=2, stride=1, padding=1)
    x = np.ones((1, 1, 2, 2))
    y, cache = layer.forward(x, {})
    # Each 2x2 window over the zero-padded 4x4 holds 1, 2 or 4 ones, divided by 4.
    np.testing.assert_allclose(y[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    dx, _ = layer.backward(np.ones_like(y), cache, {})
    np.testing.assert_allclose(dx, np.ones((1, 1, 2, 2)))  # every pixel is in 4 windows


def test_relu_derivative_at_zero_is_zero():
    layer = make("relu")
    x = np.array([[0.0, -0.0, 2.0, -3.0]])
    y, cache = layer.forward(x, {})
    np.testing.assert_allclose(y, [[0.0, 0.0, 2.0, 0.0]], rtol=0, atol=0)
    dx, _ = layer.backward(np.full_like(x, 5.0), cache, {})
    np.testing.assert_allclose(dx, [[0.0, 0.0, 5.0, 0.0]], rtol=0, atol=0)


def test_leaky_relu_slope_at_zero_and_below():
    layer = make("leaky_relu", negative_slope=0.1)
    x = np.array([[0.0, 2.0, -3.0]])
    y, cache = layer.forward(x, {})
    np.testing.assert_allclose(y, [[0.0, 2.0, -0.3]], rtol=1e-15)
    dx, _ = layer.backward(np.ones_like(x), cache, {})
    np.testing.assert_allclose(dx, [[0.1, 1.0, 0.1]], rtol=1e-15)
    assert make("leaky_relu").negative_slope == pytest.approx(0.01)


def test_sigmoid_and_tanh_closed_forms_and_no_overflow():
    x = np.array([[-1000.0, -2.0, 0.0, 3.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = make("sigmoid").forward(x, {})
    with np.errstate(over="ignore"):  # the naive formula: exp(1000) = inf gives 0
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), rtol=1e-15)
    dx, _ = make("sigmoid").backward(np.ones_like(x), cache, {})
    np.testing.assert_allclose(dx, y * (1 - y), rtol=1e-15)
    yt, cache_t = make("tanh").forward(x, {})
    dxt, _ = make("tanh").backward(np.ones_like(x), cache_t, {})
    np.testing.assert_allclose(dxt, 1 / np.cosh(np.clip(x, -300, 300)) ** 2, atol=1e-15)


def test_softmax_sums_to_one_over_axis_1_and_is_stable():
    rng = np.random.default_rng(3)
    layer = make("softmax")
    y, _ = layer.forward(rng.standard_normal((4, 5)) + 1000.0, {})
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    y4, _ = layer.forward(rng.standard_normal((2, 3, 4, 5)) * 50, {})
    np.testing.assert_allclose(y4.sum(axis=1), np.ones((2, 4, 5)), rtol=1e-14)


def test_flatten_round_trip():
    layer = make("flatten")
    assert layer.output_shape((2, 3, 4)) == (24,)
    x = np.arange(48.0).reshape(2, 2, 3, 4)
    y, cache = layer.forward(x, {})
    np.testing.assert_allclose(y, x.reshape(2, 24))
    dx, _ = layer.backward(y * 2, cache, {})
    np.testing.assert_allclose(dx, 2 * x)


# Worked example A: a single 2x2 conv over the 5x5 input, with the published delta.
O_5X5 = np.array(
    [
        [0.51, 0.90, 0.88, 0.84, 0.05],
        [0.40, 0.62, 0.22, 0.59, 0.10],
        [0.11, 0.20, 0.74, 0.33, 0.14],
        [0.47, 0.01, 0.85, 0.70, 0.09],
        [0.76, 0.19, 0.72, 0.17, 0.57],
    ]
)
D_4X4 = np.array([[0, 0, 0.0686, 0], [0, 0.0364, 0, 0], [0, 0.0467, 0, 0], [0, 0, 0, -0.0681]])


def test_worked_example_a_kernel_and_bias_gradient():
    layer = make("conv2d", out_channels=1, kernel_size=2)
    params = {"weight": np.array([[[[-0.13, 0.15], [-0.55, 0.60]]]]), "bias": np.array([0.03])}
    y, cache = layer.forward(O_5X5[None, None], params)
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(y[0, 0, 0, 0], 0.2507, atol=1e-12)  # example B's x[0,0]
    _, grads = layer.backward(D_4X4[None, None], cache, params)
    formula = np.array(
        [[np.sum(D_4X4 * O_5X5[m : m + 4, n : n + 4]) for n in range(2)] for m in range(2)]
    )
    np.testing.assert_allclose(grads["weight"][0, 0], formula, rtol=1e-13)
    published = [[0.044606, 0.094061], [0.011262, 0.068288]]
    np.testing.assert_allclose(grads["weight"][0, 0], published, rtol=0, atol=1e-6)
    np.testing.assert_allclose(grads["bias"], [0.0836], rtol=0, atol=1e-4)


# -- init_params -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "kwargs", "in_shape", "shapes", "fan_in"),
    [
        ("dense", {"out_features": 4}, (9,), {"weight": (4, 9), "bias": (4,)}, 9),
        ("dense", {"out_features": 4, "bias": False}, (9,), {"weight": (4, 9)}, 9),
        (
            "conv2d",
            {"out_channels": 5, "kernel_size": [2, 3]},
            (3, 6, 6),
            {"weight": (5, 3, 2, 3), "bias": (5,)},
            18,
        ),
        (
            "conv2d",
            {"out_channels": 2, "kernel_size": 2, "bias": False},
            (1, 3, 3),
            {"weight": (2, 1, 2, 2)},
            4,
        ),
    ],
)
def test_init_params_shapes_bounds_and_seed(type_name, kwargs, in_shape, shapes, fan_in):
    layer = make(type_name, **kwargs)
    assert layer.param_names == tuple(shapes)
    params = layer.init_params(in_shape, np.random.default_rng(0))
    again = layer.init_params(in_shape, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == shapes
    for k, v in params.items():
        assert np.all(np.abs(v) <= 1 / np.sqrt(fan_in))
        np.testing.assert_array_equal(v, again[k])
    if "bias" not in shapes:
        _, grads = layer.backward(*_forward_dy(layer, params, in_shape), params)
        assert set(grads) == {"weight"}


def _forward_dy(layer, params, in_shape):
    y, cache = layer.forward(np.ones((2, *in_shape)), params)
    return np.ones_like(y), cache


def test_parameterless_layers_have_no_params():
    for name in ("maxpool2d", "avgpool2d"):
        assert make(name, kernel_size=2).init_params((1, 4, 4), np.random.default_rng(0)) == {}
    for name in ("relu", "sigmoid", "tanh", "softmax", "flatten", "dropout", "gelu"):
        assert make(name).param_names == ()
    assert make("global_avgpool2d").init_params((2, 3, 3), np.random.default_rng(0)) == {}
    assert make("upsample2d", scale=2).init_params((2, 3, 3), np.random.default_rng(0)) == {}
    assert make("transpose", axes=[1, 0]).init_params((2, 3), np.random.default_rng(0)) == {}


# -- dropout ---------------------------------------------------------------------------


def test_dropout_mask_is_fixed_and_inverted():
    layer = make("dropout", p=0.4, seed=7, batch_size=2)
    x = np.ones((2, 50, 40))
    y1, _ = layer.forward(x, {})
    y2, _ = make("dropout", p=0.4, seed=7, batch_size=2).forward(x, {})
    np.testing.assert_array_equal(y1, y2)
    kept = y1 != 0
    np.testing.assert_allclose(y1[kept], 1 / 0.6, rtol=1e-15)
    assert 0.5 < kept.mean() < 0.7
    other, _ = make("dropout", p=0.4, seed=8, batch_size=2).forward(x, {})
    assert not np.array_equal(other != 0, kept)
    assert not np.array_equal(y1[0] != 0, y1[1] != 0)  # one mask row per example
    dx, _ = layer.backward(np.ones_like(x), layer.forward(x, {})[1], {})
    np.testing.assert_array_equal(dx != 0, kept)  # the gradient flows through kept units only


def test_dropout_stacked_copies_reuse_the_mask_by_row_modulo_n():
    layer = make("dropout", p=0.5, seed=3, batch_size=4)
    mask = dropout_mask(3, 0.5, (4, 6))
    x = np.random.default_rng(0).standard_normal((12, 6))
    y, _ = layer.forward(x, {})
    np.testing.assert_allclose(y, x * mask[np.arange(12) % 4], rtol=1e-15)
    assert not mask.flags.writeable


def test_dropout_p_zero_is_identity():
    x = np.random.default_rng(0).standard_normal((3, 5))
    y, cache = make("dropout", p=0.0, batch_size=3).forward(x, {})
    np.testing.assert_allclose(y, x, rtol=0, atol=0)
    dx, _ = make("dropout", p=0.0, batch_size=3).backward(x, cache, {})
    np.testing.assert_allclose(dx, x, rtol=0, atol=0)


def test_dropout_wants_batch_size():
    assert LAYERS["dropout"].wants_batch_size is True


# -- field errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "kwargs", "field"),
    [
        ("dense", {"out_features": 0}, "out_features"),
        ("dense", {"out_features": True}, "out_features"),
        ("conv2d", {"out_channels": 0, "kernel_size": 2}, "out_channels"),
        ("conv2d", {"out_channels": 1, "kernel_size": 0}, "kernel_size"),
        ("conv2d", {"out_channels": 1, "kernel_size": [2, 2, 2]}, "kernel_size"),
        ("conv2d", {"out_channels": 1, "kernel_size": 2, "stride": 0}, "stride"),
        ("conv2d", {"out_channels": 1, "kernel_size": 2, "stride": [1, 0]}, "stride"),
        ("conv2d", {"out_channels": 1, "kernel_size": 2, "padding": -1}, "padding"),
        ("maxpool2d", {"kernel_size": 2, "stride": 0}, "stride"),
        ("maxpool2d", {"kernel_size": 2, "padding": 2}, "padding"),
        ("avgpool2d", {"kernel_size": [3, 2], "padding": [1, 2]}, "padding"),
        ("avgpool2d", {"kernel_size": 1.5}, "kernel_size"),
        ("dropout", {"p": 1.0}, "p"),
        ("dropout", {"p": -0.1}, "p"),
        ("dropout", {"p": 0.5, "batch_size": 0}, "batch_size"),
        ("dropout", {"p": 0.5, "seed": -1}, "seed"),
        ("leaky_relu", {"negative_slope": float("nan")}, "negative_slope"),
        ("layernorm", {"eps": 0.0}, "eps"),
        ("layernorm", {"eps": float("inf")}, "eps"),
        ("upsample2d", {"scale": 0}, "scale"),
        ("upsample2d", {"scale": [2, 2, 2]}, "scale"),
        ("upsample2d", {"scale": 1.5}, "scale"),
        ("transpose", {"axes": [0, 0]}, "axes"),
        ("transpose", {"axes": [1, 2]}, "axes"),
        ("transpose", {"axes": [-1, 0]}, "axes"),
        ("transpose", {"axes": []}, "axes"),
        ("transpose", {"axes": [0, True]}, "axes"),
    ],
)
def test_bad_hyper_parameters_raise_field_error(type_name, kwargs, field):
    with pytest.raises(FieldError) as info:
        make(type_name, **kwargs)
    assert info.value.field == field
    assert info.value.message


@pytest.mark.parametrize("type_name", ["conv2d", "maxpool2d", "avgpool2d"])
def test_kernel_larger_than_padded_input_names_the_sizes(type_name):
    kwargs = {"out_channels": 1} if type_name == "conv2d" else {}
    layer = make(type_name, kernel_size=[4, 3], stride=1, padding=1, **kwargs)
    with pytest.raises(FieldError, match=r"4x3 is larger than the padded input 3x5") as info:
        layer.output_shape((1, 1, 3))
    assert info.value.field == "kernel_size"
    assert layer.output_shape((1, 2, 3)) == (1, 1, 3)  # 4x5 padded: fits


def test_conv_and_pool_need_a_3d_input():
    with pytest.raises(FieldError, match="channels, height, width"):
        make("conv2d", out_channels=1, kernel_size=2).output_shape((5, 5))


def test_output_size_formula():
    layer = make("conv2d", out_channels=4, kernel_size=[3, 2], stride=[2, 3], padding=[1, 0])
    # Ho = (9 + 2 - 3)//2 + 1 = 5, Wo = (8 + 0 - 2)//3 + 1 = 3
    assert layer.output_shape((2, 9, 8)) == (4, 5, 3)
    assert make("maxpool2d", kernel_size=3).output_shape((2, 7, 9)) == (2, 2, 3)
