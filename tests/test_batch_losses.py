"""Losses over the whole batch, written as plugins (found by a hunt):

- a ranking loss over the batch that left ``per_example`` at its default (True) was
  handed only the rows a perturbation reached, and gave numeric values of 0, false
  kinks and exit 3 in full and sampled mode (exit 0 in fast and Taylor mode). The
  purity probe now finds the false claim (two copies stacked, the rows reversed, one
  row alone must keep their losses), warns ``not_per_example``, and the loss is called
  on whole copies of the batch;
- a batch-mean loss declaring ``per_example = False`` that takes the rows it is handed
  as its batch got P copies of the batch stacked in one call, and averaged over all of
  them: exit 3. A loss that is not per example is now called one copy at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc

MODES = [{}, {"fast": True}, {"sample": 3}, {"method": "taylor"}]


class PairwiseRank(gc.Loss):
    """sum over pairs i, j with t_i > t_j of softplus(m - (y_i - y_j)), put in row 0 of
    the batch it is handed; ``bug``: the d/dy_i term's sign flipped. per_example is left
    at its default, as the hunt's loss left it."""

    target_name = "target"

    def __init__(self, bug: bool = False, margin: float = 0.5):
        self.bug, self.m = bug, margin

    def forward(self, y, target):
        s, t = y.reshape(len(y)), target.reshape(len(target))
        z = self.m - (s[:, None] - s[None, :])
        mask = (t[:, None] > t[None, :]).astype(float)
        losses = np.zeros(len(s))
        losses[0] = (np.logaddexp(0, z) * mask).sum()
        return losses, (z, mask, y.shape)

    def backward(self, cache):
        z, mask, shape = cache
        sg = mask / (1 + np.exp(-z))
        di, dj = -sg.sum(1), sg.sum(0)
        return ((di if not self.bug else -di) + dj).reshape(shape)


class BatchMean(gc.Loss):
    """0.5 ||mean_n y_n - t||^2 over the rows it is handed, split evenly over them;
    declares per_example = False. ``bug``: dy without the 1/N."""

    target_name = "target"
    per_example = False

    def __init__(self, bug: bool = False):
        self.bug = bug

    def prepare_target(self, target, y_shape):
        return target

    def forward(self, y, target):
        n = len(y)
        d = y.mean(0) - target[0]
        losses = np.full(n, 0.5 * float((d * d).sum()) / n)
        return losses, (d, n)

    def backward(self, cache):
        d, n = cache
        return np.broadcast_to(d / (1 if self.bug else n), (n, *d.shape)).copy()


class AsymmetricSquare(gc.Loss):
    """A per-example loss, for the probe's silence: 0.5 w r^2, w = 0.8 for r > 0."""

    target_name = "target"

    def forward(self, y, target):
        r = y - target
        w = np.where(r > 0, 0.8, 0.2)
        return (0.5 * w * r * r).reshape(len(y), -1).sum(1), (r, w)

    def backward(self, cache):
        r, w = cache
        return w * r


@pytest.fixture(scope="module", autouse=True)
def _losses():
    with registry_kept():
        gc.register_loss("test_pairwise_rank")(PairwiseRank)
        gc.register_loss("test_batch_mean")(BatchMean)
        gc.register_loss("test_asymmetric_square")(AsymmetricSquare)
        yield


def net(batch: int, seed: int, loss: dict, out: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "seed": seed,
        "input": {"value": rng.standard_normal((batch, 5)).tolist(), "batched": True},
        "layers": [
            {"type": "dense", "name": "fc", "out_features": out},
            {"type": "tanh", "name": "act"},
        ],
        "loss": loss,
    }


def kinds(report) -> set[str]:
    return {p.kind for v in report.layers for p in v.problems}


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 5), st.integers(0, 2**16))
def test_a_batch_level_loss_left_per_example_is_checked_whole(batch, seed):
    ranks = np.random.default_rng(seed).permutation(batch).reshape(-1, 1).tolist()
    right = net(batch, seed, {"type": "test_pairwise_rank", "target": ranks})
    wrong = net(batch, seed, {"type": "test_pairwise_rank", "bug": True, "target": ranks})
    for options in MODES:
        ok = gc.check(right, jobs=1, **options)
        assert ok.exit_code == 0 and "not_per_example" in kinds(ok), options
        bad = gc.check(wrong, jobs=1, **options)
        assert bad.exit_code == 1 and bad.blamed_layers() == ["loss"], options


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 5), st.integers(1, 3), st.integers(0, 2**16))
def test_a_loss_not_per_example_gets_one_copy_of_the_batch_at_a_time(batch, out, seed):
    target = np.random.default_rng(seed).uniform(-1, 1, (batch, out)).tolist()
    right = net(batch, seed, {"type": "test_batch_mean", "target": target}, out)
    wrong = net(batch, seed, {"type": "test_batch_mean", "bug": True, "target": target}, out)
    for options in MODES:
        ok = gc.check(right, jobs=1, **options)
        assert ok.exit_code == 0 and not kinds(ok), options
        bad = gc.check(wrong, jobs=1, **options)
        assert bad.exit_code == 1 and bad.blamed_layers() == ["loss"], options


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**16))
def test_per_example_losses_are_not_suspected(batch, out, seed):
    """A plugin per-example loss and the built-ins: the probe finds nothing."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, (batch, out)).tolist()
    classes = rng.integers(0, 3, batch).tolist()
    losses = [
        ({"type": "test_asymmetric_square", "target": target}, out),
        ({"type": "mse", "target": target}, out),
        ({"type": "upstream", "grad": target}, out),
        ({"type": "softmax_cross_entropy", "target": classes}, 3),
    ]
    for loss, width in losses:
        report = gc.check(net(batch, seed, loss, width), jobs=1)
        assert report.exit_code == 0 and "not_per_example" not in kinds(report), loss
