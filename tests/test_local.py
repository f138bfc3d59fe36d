"""``forward_local`` (engine/local.py) against the plain ``forward``: for every built-in
layer that declares ``supports_local``, the changed outputs it returns and the outputs it
leaves alone must be what ``forward`` gives for the changed rows."""

from __future__ import annotations

import numpy as np
import pytest
from layer_cases import declaring

import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
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
