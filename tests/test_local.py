"""``forward_local`` (engine/local.py) against the plain ``forward``: for every built-in
layer that declares ``supports_local``, the changed outputs it returns and the outputs it
leaves alone must be what ``forward`` gives for the changed rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_cases import declaring

import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
from gradcheck_cli.layers import _windows
from gradcheck_cli.protocol import LAYERS, ORIGINS

#: The shared table's cases (tests/layer_cases.py) whose layer declares supports_local,
#: and larger ones where a window's edges and strides matter.
CASES = [(c.type, c.kwargs, c.in_shape) for c in declaring("supports_local")] + [
    ("conv2d", {"out_channels": 3, "kernel_size": 3}, (2, 7, 6)),
    ("conv2d", {"out_channels": 2, "kernel_size": [3, 2], "stride": 2, "padding": 1}, (3, 9, 8)),
    ("maxpool2d", {"kernel_size": 2}, (2, 8, 8)),
    ("maxpool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, (2, 7, 7)),
    ("avgpool2d", {"kernel_size": 2, "stride": 1}, (3, 6, 7)),
    ("dense", {"out_features": 5}, (40,)),
    # strides that skip inputs: a changed input no output reads lies outside the patch
    ("conv2d", {"out_channels": 2, "kernel_size": 1, "stride": 2}, (2, 7, 7)),
    ("maxpool2d", {"kernel_size": 2, "stride": 3}, (2, 8, 8)),
]


def build(type_: str, fields: dict):
    """The layer as the loader builds it for the batch of 4 used here."""
    cls = LAYERS[type_]
    return cls(**fields, **({"batch_size": 4} if getattr(cls, "wants_batch_size", False) else {}))


def local_vs_forward(type_, fields, shape, k, seed):
    rng = np.random.default_rng(seed)
    layer = build(type_, fields)
    assert layer.supports_local
    params = {n: np.asarray(v) for n, v in layer.init_params(shape, rng).items()}
    n = 4
    x = rng.standard_normal((n, *shape))
    y, _ = layer.forward(x, params)
    r = 6
    rows = rng.integers(0, n, r)
    size = int(np.prod(shape))
    # a few distinct changed inputs per row, near each other (a window) in a random place
    start = rng.integers(0, max(1, size - 3 * k), (r, 1))
    offsets = np.stack([np.sort(rng.choice(3 * k, k, replace=False)) for _ in range(r)])
    index = np.minimum(start + offsets, size - 1)
    values = rng.standard_normal((r, k))
    # rows are padded to one K by repeating their first position and value (the convention)
    index = np.concatenate([index, index[:, :1]], axis=1)
    values = np.concatenate([values, values[:, :1]], axis=1)
    out = layer.forward_local(x, y, params, rows, index, values)
    want = np.empty((r, y[0].size))
    for i in range(r):  # the changed row in its place in the batch, as the engine runs it
        batch = x.reshape(n, -1).copy()
        batch[rows[i], index[i]] = values[i]
        full, _ = layer.forward(batch.reshape(x.shape), params)
        want[i] = full[rows[i]].reshape(-1)
    if out is None:  # the change reaches too much: the engine runs forward instead
        return None
    out_index, out_values = out
    got = y[rows].reshape(r, -1).copy()
    got[np.arange(r)[:, None], out_index] = out_values
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale)
    return out_index.shape[1]


@pytest.mark.parametrize(("type_", "fields", "shape"), CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("k", [1, 3])
def test_forward_local_agrees_with_forward(type_, fields, shape, k):
    reached = [local_vs_forward(type_, fields, shape, k, seed) for seed in range(5)]
    if type_ in ("conv2d", "maxpool2d", "avgpool2d") and k == 1:
        assert any(r is not None for r in reached)  # a one-pixel change stays local


@pytest.mark.parametrize(("type_", "fields", "shape"), CASES, ids=lambda c: str(c))
def test_a_row_gives_the_same_values_whatever_rows_come_with_it(type_, fields, shape):
    """Results never depend on how copies are chunked: a row computed alone and among
    others (whose blocks differ in size) agrees bit for bit."""
    rng = np.random.default_rng(7)
    layer = build(type_, fields)
    params = {n: np.asarray(v) for n, v in layer.init_params(shape, rng).items()}
    x = rng.standard_normal((4, *shape))
    y, _ = layer.forward(x, params)
    size = int(np.prod(shape))
    rows = np.array([0, 1, 2, 3])
    index = np.array([[0, 0], [size // 2, size // 2 + 1], [size - 1, size - 1], [1, 3]])
    values = rng.standard_normal((4, 2))
    values[0, 1], values[2, 1] = values[0, 0], values[2, 0]  # padded rows: the first again
    together = layer.forward_local(x, y, params, rows, index, values)
    for r in range(4):
        alone = layer.forward_local(
            x, y, params, rows[r : r + 1], index[r : r + 1], values[r : r + 1]
        )
        if together is None or alone is None:
            continue
        got = y[rows[r]].reshape(-1).copy()
        got[together[0][r]] = together[1][r]
        want = y[rows[r]].reshape(-1).copy()
        want[alone[0][0]] = alone[1][0]
        np.testing.assert_array_equal(got, want)


def test_every_layer_that_claims_local_is_in_the_table():
    claimed = {
        name
        for name, cls in LAYERS.items()
        if getattr(cls, "supports_local", False) and ORIGINS.get(("layer", name)) == "built-in"
    }
    assert claimed <= {c[0] for c in CASES}


@pytest.mark.parametrize("case_id", [c.id for c in declaring("supports_perturbed")])
def test_perturbed_local_agrees_with_forward_perturbed(case_id):
    """``perturbed_local``, where a layer gives it, names every output a moved parameter
    changes, with the values ``forward_perturbed`` gives there, bit for bit."""
    from layer_cases import case

    c = case(case_id)
    rng = np.random.default_rng(3)
    layer = c.construct(4)
    params = {n: np.asarray(v) for n, v in layer.init_params(c.in_shape, rng).items()}
    x = rng.standard_normal((4, *c.in_shape))
    y, _ = layer.forward(x, params)
    for name, value in params.items():
        index = rng.integers(0, value.size, 7)
        delta = 1e-3 * rng.standard_normal(7)
        out = layer.perturbed_local(x, y, params, name, index, delta)
        if out is None:
            continue
        want = layer.forward_perturbed(x, params, name, index, delta).reshape(7 * 4, -1)
        got = np.broadcast_to(y.reshape(4, -1), (7, 4, y[0].size)).reshape(7 * 4, -1).copy()
        got[np.arange(28)[:, None], out[0]] = out[1]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("fields", "shape"),
    [
        ({"out_channels": 3, "kernel_size": 3}, (2, 7, 6)),
        ({"out_channels": 2, "kernel_size": [3, 2], "stride": 2, "padding": 1}, (3, 9, 8)),
        ({"out_channels": 4, "kernel_size": 1, "stride": [1, 3], "padding": [0, 2]}, (2, 5, 7)),
        ({"out_channels": 2, "kernel_size": 2, "bias": False}, (1, 4, 4)),
    ],
    ids=str,
)
def test_conv_perturbed_local_is_forward_perturbed_bit_for_bit(fields, shape):
    """A moved conv weight or bias changes one output channel of every example; its
    values come from a strided view of the padded input, not the im2col matrix, and
    must still be ``forward_perturbed``'s, bit for bit, at any stride and padding."""
    rng = np.random.default_rng(11)
    layer = build("conv2d", fields)
    params = {n: np.asarray(v) for n, v in layer.init_params(shape, rng).items()}
    x = rng.standard_normal((3, *shape))
    y, _ = layer.forward(x, params)
    for name, value in params.items():
        index = np.concatenate([np.arange(value.size), rng.integers(0, value.size, 5)])
        p = len(index)
        delta = 1e-3 * rng.standard_normal(p)
        positions, values = layer.perturbed_local(x, y, params, name, index, delta)
        assert positions.shape == values.shape == (p * 3, y[0, 0].size)
        want = layer.forward_perturbed(x, params, name, index, delta).reshape(p * 3, -1)
        got = np.broadcast_to(y.reshape(3, -1), (p, 3, y[0].size)).reshape(p * 3, -1).copy()
        got[np.arange(p * 3)[:, None], positions] = values
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("type_", ["maxpool2d", "avgpool2d"])
def test_pooling_one_channel_alone_gives_the_every_channel_values(type_):
    """Rows that change one channel each are pooled on that channel alone; the values
    are those of the every-channel path (a row changing two channels takes it), bit for
    bit, and the positions name that channel's outputs."""
    rng = np.random.default_rng(5)
    layer = build(type_, {"kernel_size": 2, "stride": 1, "padding": 1})
    x = rng.standard_normal((2, 3, 6, 5))
    y, _ = layer.forward(x, {})
    hw = 6 * 5
    rows = np.array([0, 1, 1])
    index = np.array([[hw + 7, hw + 8], [2 * hw, 2 * hw + 13], [4, 4]])
    values = rng.standard_normal((3, 2))
    values[2, 1] = values[2, 0]
    alone = layer.forward_local(x, y, {}, rows, index, values)
    mixed_index = np.concatenate([index, [[0, hw]]])  # a fourth row over two channels
    mixed = layer.forward_local(
        x, y, {}, np.append(rows, 0), mixed_index, np.concatenate([values, [[1.0, 2.0]]])
    )
    for r in range(3):
        one, every = y[rows[r]].reshape(-1).copy(), y[rows[r]].reshape(-1).copy()
        one[alone[0][r]] = alone[1][r]
        every[mixed[0][r]] = mixed[1][r]
        np.testing.assert_array_equal(one, every)
        channels = set((alone[0][r] // y[0, 0].size).tolist())
        assert channels == {int(index[r, 0] // hw)}


@pytest.mark.parametrize(
    "fields",
    [
        {"out_channels": 3, "kernel_size": 3, "padding": 1},
        {"out_channels": 2, "kernel_size": [3, 2], "stride": 2, "padding": [1, 0]},
        {"out_channels": 4, "kernel_size": 1, "bias": False},
    ],
    ids=str,
)
def test_conv_of_a_whole_changed_channel_agrees_with_forward(fields):
    """Rows whose changes fill much of one input channel (a moved conv weight's channel
    after pooling) are computed as y plus the change's convolution with that channel's
    kernels: the forward's values up to rounding, every output, and a row's values never
    depend on the rows beside it. A row over two channels takes the window path."""
    rng = np.random.default_rng(2)
    shape = (3, 6, 5)
    layer = build("conv2d", fields)
    params = {n: np.asarray(v) for n, v in layer.init_params(shape, rng).items()}
    x = rng.standard_normal((2, *shape))
    y, _ = layer.forward(x, params)
    hw = 30
    full = np.arange(hw)
    half = np.concatenate([np.arange(0, hw, 2), np.zeros(hw // 2, dtype=int)])  # padded
    rows = np.array([0, 1, 1, 0])
    index = np.stack([full + hw, full, half + 2 * hw, full])
    values = rng.standard_normal(index.shape)
    values[2, hw // 2 :] = values[2, 0]  # the padding repeats the first position and value
    for together in (
        layer.forward_local(x, y, params, rows, index, values),
        layer.forward_local(x, y, params, rows[:3], index[:3], values[:3]),
    ):
        for r in range(len(together[0])):
            batch = x.reshape(2, -1).copy()
            batch[rows[r], index[r]] = values[r]
            want, _ = layer.forward(batch.reshape(x.shape), params)
            got = y[rows[r]].reshape(-1).copy()
            got[together[0][r]] = together[1][r]
            scale = float(np.abs(want).max())
            np.testing.assert_allclose(got, want[rows[r]].reshape(-1), rtol=0, atol=1e-13 * scale)
            alone = layer.forward_local(
                x, y, params, rows[r : r + 1], index[r : r + 1], values[r : r + 1]
            )
            lone = y[rows[r]].reshape(-1).copy()
            lone[alone[0][0]] = alone[1][0]
            np.testing.assert_array_equal(got, lone)
    mixed = np.concatenate([full[:15], full[:15] + hw])  # two channels: every channel's way
    out = layer.forward_local(x, y, params, rows[:2], np.stack([mixed, index[1]]), values[:2])
    batch = x.reshape(2, -1).copy()
    batch[0, mixed] = values[0]
    want, _ = layer.forward(batch.reshape(x.shape), params)
    got = y[0].reshape(-1).copy()
    got[out[0][0]] = out[1][0]
    # beside a row over two channels, a one-channel row keeps its own bits
    alone = layer.forward_local(x, y, params, rows[1:2], index[1:2], values[1:2])
    np.testing.assert_array_equal(out[1][1][np.argsort(out[0][1])], alone[1][0])
    np.testing.assert_allclose(
        got, want[0].reshape(-1), rtol=0, atol=1e-13 * float(np.abs(want).max())
    )


@given(
    extent=st.integers(0, 12),
    k=st.integers(1, 6),
    stride=st.integers(1, 4),
    pad=st.integers(0, 3),
    start=st.integers(0, 20),
)
def test_reach_is_the_most_outputs_a_spread_of_changes_reaches(extent, k, stride, pad, start):
    """_windows.reach against counting: the outputs whose window holds one of the rows
    start .. start + extent never outnumber it, and some start of the same extent
    reaches exactly that many (the bound is tight, whatever the phase)."""

    def reached(first: int) -> int:
        rows = range(first, first + extent + 1)
        return len({a for a in range(-5, 60) for r in rows if 0 <= r - a * stride + pad < k})

    most = int(_windows.reach(np.array([extent]), k, stride)[0])
    assert reached(start) <= most
    assert max(reached(first) for first in range(stride)) == most


@settings(max_examples=60, deadline=None)
@given(
    type_=st.sampled_from(["conv2d", "maxpool2d", "avgpool2d"]),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.integers(0, 1),
    hw=st.tuples(st.integers(4, 9), st.integers(4, 9)),
    k=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_forward_local_agrees_with_forward_on_any_window_geometry(
    type_, kernel, stride, padding, hw, k, seed
):
    """Every output a change reaches lies in the block ``local_blocks`` computes, for
    kernels, strides and paddings drawn at random (a block cut too small leaves a
    reached output at its old value)."""
    if padding * 2 >= min(kernel):  # pooling pads by less than half its window
        padding = 0
    fields = {"kernel_size": list(kernel), "stride": list(stride), "padding": padding}
    if type_ == "conv2d":
        fields["out_channels"] = 2
    local_vs_forward(type_, fields, (2, *hw), k, seed)


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("layout", ["scattered", "batches", "batches, one row off"])
def test_dense_one_moved_input_is_the_padded_rows_sum_bit_for_bit(n, layout):
    """Dense.forward_local's one-input branch (built in place, one example's output
    broadcast; for whole batches sharing their moved input, one column per batch and
    the base outputs broadcast) gives the bits of its general branch, to which a row
    padded by repeating its position goes, and forward's values within rounding."""
    rng = np.random.default_rng(n)
    layer = build("dense", {"out_features": 7})
    params = {k: np.asarray(v) for k, v in layer.init_params((30,), rng).items()}
    x = rng.standard_normal((n, 30))
    y, _ = layer.forward(x, params)
    r = 48
    rows, index = rng.integers(0, n, r), rng.integers(0, 30, (r, 1))
    if layout != "scattered":  # the copies of a weight of the layer before
        rows = np.tile(np.arange(n), r // n)
        index = np.repeat(rng.integers(0, 30, r // n), n)[:, None]
        if layout == "batches, one row off":
            index[-1, 0] = (index[-1, 0] + 1) % 30
    values = rng.standard_normal((r, 1))
    _, one = layer.forward_local(x, y, params, rows, index, values)
    padded = np.concatenate([index, index], axis=1), np.concatenate([values, values], axis=1)
    _, general = layer.forward_local(x, y, params, rows, *padded)
    assert np.array_equal(one, general)
    changed = x[rows].copy()
    changed[np.arange(r), index[:, 0]] = values[:, 0]
    np.testing.assert_allclose(one, layer.forward(changed, params)[0], rtol=0, atol=1e-12)


def test_dense_one_moved_input_keeps_the_wider_dtype():
    """float32 weights and float64 values: the update is the float64 sum y + change * W,
    not one narrowed into the float32 columns it was built in."""
    rng = np.random.default_rng(3)
    layer = build("dense", {"out_features": 4})
    weight = rng.standard_normal((4, 40)).astype(np.float32)
    x = rng.standard_normal((1, 40))
    y = x @ weight.T.astype(np.float64)
    rows, index, values = (
        np.zeros(3, dtype=np.intp),
        np.array([[0], [21], [39]]),
        rng.random((3, 1)),
    )
    _, got = layer.forward_local(x, y, {"weight": weight}, rows, index, values)
    change = values - x[0, index]
    assert got.dtype == np.float64
    assert np.array_equal(got, y[0] + change * weight.T[index[:, 0]].astype(np.float64))
