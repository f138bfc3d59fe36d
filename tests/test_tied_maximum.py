"""A max pool's dx at ties, judged jointly (engine/shift.py).

A hunt on cs231n-style layers found the classic ``mask = (x == max)`` backward, which
routes a window's delta to every tied maximum, passing in every mode: each tied element
alone lies between its one-sided slopes, so the element-wise checks called it a kink,
and the network's failures (an upsample then the pool is the identity, its gradient 4
times too large) were settled as compound kinks. Any valid tie-break sends each window's
delta to one element or splits it (components summing to one); along u = 1 every window
max moves smoothly, so dx . u is pinned, and the all-ties mask fails there.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.engine.fast import ISOLATION_SKIPPED

RULES_RIGHT = ["first", "last", "split"]
#: full, --fast, --sample 5: the options of gradcheck_cli.check
MODES = [{}, {"fast": True}, {"sample": 5}]


def _check(cfg: dict, mode: dict):
    return gc.check(cfg, jobs=1, **mode)


class TiePool(gc.Layer):
    """2x2, stride-2 max pool over (N, C, H, W); ``rule`` says where a tied window's
    delta goes: to the first or last maximum, split evenly among them (all valid
    subgradients), or ``all``: the whole delta to every one of them, or ``half``: half
    of it to the first (bugs)."""

    kinks = "ties"

    def __init__(self, rule: str = "first"):
        self.rule = rule

    def output_shape(self, s):
        return (s[0], s[1] // 2, s[2] // 2)

    def forward(self, x, params):
        n, c, h, w = x.shape
        win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        win = win.reshape(n, c, h // 2, w // 2, 4)
        return win.max(axis=-1), (win, x.shape)

    def backward(self, dy, cache, params):
        win, shape = cache
        top = win == win.max(axis=-1, keepdims=True)
        if self.rule in ("first", "last"):
            flat = top.reshape(-1, 4)
            pick = flat.argmax(axis=1) if self.rule == "first" else 3 - flat[:, ::-1].argmax(axis=1)
            one = np.zeros_like(flat)
            one[np.arange(len(flat)), pick] = True
            top = one.reshape(top.shape)
        if self.rule == "half":  # the bug: half the delta, to the first maximum only
            flat = top.reshape(-1, 4)
            one = np.zeros_like(flat)
            one[np.arange(len(flat)), flat.argmax(axis=1)] = True
            top = one.reshape(top.shape) * 0.5
        weights = top / top.sum(axis=-1, keepdims=True) if self.rule == "split" else top * 1.0
        dwin = weights * dy[..., None]
        n, c, h2, w2, _ = dwin.shape
        dx = dwin.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
        return dx.reshape(shape), {}


def tied_input(rng, n: int, c: int, h: int, w: int) -> np.ndarray:
    """(n, c, h, w) whose 2x2 windows are each all tied, two tied at the top, all zero,
    or distinct."""
    x = rng.standard_normal((n, c, h // 2, w // 2, 4))
    kind = rng.integers(0, 4, size=x.shape[:-1])
    x[kind == 0] = x[kind == 0][:, :1]  # all four equal
    two = x[kind == 1]
    two[:, 1] = two.max(axis=1) if len(two) else two[:, 1]
    two[:, 2] = two[:, 1]
    x[kind == 1] = two
    x[kind == 2] = 0.0
    return x.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def network(rng, rule: str, shape: str) -> dict:
    n, c, h = int(rng.integers(1, 3)), int(rng.integers(1, 3)), 2 * int(rng.integers(1, 4))
    pool = {"type": "test_tie_pool", "name": "pool", "rule": rule}
    if shape == "upsample":  # the identity, smooth: every window a 4-way tie
        x = rng.standard_normal((n, c, h // 2, h // 2))
        layers = [{"type": "upsample2d", "name": "up", "scale": 2}, pool]
        out = (n, c, h // 2, h // 2)
    else:
        x = tied_input(rng, n, c, h, h)
        layers = [pool] if shape == "alone" else [{"type": "relu", "name": "r"}, pool]
        out = (n, c, h // 2, h // 2)
    grad = rng.uniform(0.5, 2.0, out) * rng.choice([-1.0, 1.0], out)
    return {
        "seed": 0,
        "input": {"value": x.tolist(), "batched": True},
        "layers": layers,
        "loss": {"type": "upstream", "grad": grad.tolist()},
    }


def shifted_sum_error(cfg: dict) -> float:
    """sum over windows of (ties - 1) * delta: what the all-ties mask adds to dx . 1 at
    the pool's input (0 when no window with a nonzero delta is tied)."""
    x = np.asarray(cfg["input"]["value"], dtype=float)
    if cfg["layers"][0]["type"] == "upsample2d":
        x = x.repeat(2, axis=2).repeat(2, axis=3)
    if cfg["layers"][0]["type"] == "relu":
        x = np.maximum(x, 0.0)
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, -1, 4)
    ties = (win == win.max(axis=-1, keepdims=True)).sum(axis=-1)
    delta = np.asarray(cfg["loss"]["grad"], dtype=float).reshape(n, c, -1)
    return float(((ties - 1) * delta).sum())


class Hinge(gc.Loss):
    """cs231n's multiclass SVM loss per example, sum_j max(0, s_j - s_y + 1) over j != y;
    ``rule``: which margins count in the backward, ``gt`` (> 0) or ``ge`` (>= 0), both
    valid at a margin of exactly 0, or ``mixed`` (the hunt's bug: dscores_j with > 0,
    the count at the correct class with >= 0: one choice for s_j, another for s_y)."""

    target_name = "target"

    def __init__(self, rule: str = "gt"):
        self.rule = rule

    def prepare_target(self, target, y_shape):
        return target.astype(np.int64).reshape(len(target))

    def forward(self, y, target):
        rows = np.arange(len(y))
        m = y - y[rows, target][:, None] + 1.0
        m[rows, target] = -np.inf
        return np.maximum(m, 0.0).sum(axis=1), (m, target)

    def backward(self, cache):
        m, target = cache
        count = m >= 0 if self.rule in ("ge", "mixed") else m > 0
        d = (m >= 0 if self.rule == "ge" else m > 0).astype(float)
        d[np.arange(len(m)), target] = -count.sum(axis=1)
        return d


def hinge_network(rng, rule: str) -> dict:
    """Scores of N examples with one margin exactly 0 in each (s_j = s_y - 1): scores
    in eighths, so that s_j - s_y + 1 is exact (a fresh draw of standard normal scores
    rounded s_y - 1, the margin came out -2.2e-16, no kink, and the mixed backward
    was right there)."""
    n, c = int(rng.integers(1, 6)), int(rng.integers(3, 6))
    y = rng.integers(0, c, n)
    s = np.round(8 * rng.standard_normal((n, c))) / 8
    for i in range(n):
        j = (y[i] + 1 + rng.integers(0, c - 1)) % c
        s[i, j] = s[i, y[i]] - 1.0
    return {
        "input": {"value": s.tolist(), "batched": True},
        "layers": [{"type": "flatten", "name": "id"}],
        "loss": {"type": "test_hinge", "rule": rule, "target": y.tolist()},
    }


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(range(len(MODES))))
def test_hinge_losses_at_a_zero_margin(seed, mode):
    """Both valid conventions pass; the mixed one fails, the loss blamed: along u = 1 each
    example's loss does not move, so its dscores must sum to 0 (the hunt found it passing
    in every mode, each element between its own one-sided slopes)."""
    for rule in ("gt", "ge", "mixed"):
        cfg = hinge_network(np.random.default_rng(seed), rule)
        report = _check(cfg, MODES[mode])
        if rule == "mixed":
            assert report.exit_code == 1 and report.blamed_layers() == ["loss"]
        else:
            assert report.exit_code == 0 and report.blamed_layers() == [], rule


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_tie_pool")(TiePool)
        gc.register_loss("test_hinge")(Hinge)
        yield


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(RULES_RIGHT),
    st.sampled_from(["alone", "upsample", "relu"]),
    st.sampled_from(range(len(MODES))),
)
def test_every_valid_tie_break_passes(seed, rule, shape, mode):
    cfg = network(np.random.default_rng(seed), rule, shape)
    report = _check(cfg, MODES[mode])
    assert report.exit_code == 0, (rule, shape, report.blamed_layers())
    assert report.blamed_layers() == []


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["alone", "upsample", "relu"]),
    st.sampled_from(range(len(MODES))),
)
def test_the_all_ties_mask_fails_blamed(seed, shape, mode):
    cfg = network(np.random.default_rng(seed), "all", shape)
    report = _check(cfg, MODES[mode])
    if abs(shifted_sum_error(cfg)) < 1e-6:  # no tied window the bug changes dx . 1 at
        assert report.blamed_layers() in ([], ["pool"])
        return
    if report.exit_code == 0 and MODES[mode] == {"fast": True}:
        # ties only at ReLU zeros leave every network gradient right: fast mode then
        # checks no layer alone, and says so (a fresh draw: every window negative)
        assert shape == "relu" and ISOLATION_SKIPPED in report.warnings
        return
    assert report.exit_code == 1
    assert report.blamed_layers() == ["pool"]


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["alone", "upsample", "relu"]),
    st.sampled_from(range(len(MODES))),
)
def test_half_the_delta_to_the_first_maximum_fails_blamed(seed, shape, mode):
    """A hunt on the shift test: at a tie the first maximum's half delta equals the
    central difference there, so that element passes at its first step and is no kink;
    it must still move with its tie (shift._direction), or the bug passed."""
    cfg = network(np.random.default_rng(seed), "half", shape)
    report = _check(cfg, MODES[mode])
    assert report.exit_code == 1 and report.blamed_layers() == ["pool"]


def test_the_found_case():
    """The hunt's reduction: upsample by 2, then the all-ties pool: the identity, whose
    gradient came out 4 times too large and passed as 4 kinks."""
    cfg = {
        "input": {"value": [[[[0.3, -1.2], [0.7, 2.0]]]], "batched": True},
        "layers": [
            {"type": "upsample2d", "name": "up", "scale": 2},
            {"type": "test_tie_pool", "name": "pool", "rule": "all"},
        ],
        "loss": {"type": "upstream", "grad": [[[[1.0, 0.5], [0.8, -1.0]]]]},
    }
    report = gc.check(cfg, jobs=1)
    assert report.exit_code == 1 and report.blamed_layers() == ["pool"]
    (pool,) = [v for v in report.layers if v.name == "pool"]
    assert "every tied maximum" in (pool.diagnosis or "")


class OneOutputHead(gc.Layer):
    """A layer with one output, y = W f(x) + b, W of ones over x's first axis after the
    batch; subclasses give f in forward and backward."""

    param_names = ("weight", "bias")

    def output_shape(self, s):
        return (1,)

    def init_params(self, s, rng):
        return {"weight": np.ones((1, s[0])), "bias": np.zeros(1)}


def passes_in_every_mode(cfg: dict) -> None:
    for mode in MODES:
        report = gc.check(cfg, jobs=1, **mode)
        assert report.exit_code == 0 and report.blamed_layers() == [], mode


class ClipDense(OneOutputHead):
    """y = W clamp(x, 0, 1) + b in one layer; the backward masks with 0 < x < 1, as
    torch's hardtanh does: 0 at both bounds, a valid subgradient of each clamp."""

    def forward(self, x, params):
        c = np.clip(x, 0.0, 1.0)
        return c @ params["weight"].T + params["bias"], (x, c)

    def backward(self, dy, cache, params):
        x, c = cache
        open_ = (x > 0.0) & (x < 1.0)
        return (dy @ params["weight"]) * open_, {"weight": dy.T @ c, "bias": dy.sum(0)}


def test_separate_kinks_that_cancel_along_u_are_no_evidence():
    """A hunt on the shift test: inputs at 0 and at 1, clamped and summed into one
    output, which moves smoothly along u (one clamp opens as the other closes) while
    dx = 0 is a valid choice at both bounds. Separate kinks do not interact, so the
    shift test says nothing there (shift.coupled): it had failed the layer."""
    with registry_kept():
        gc.register_layer("test_clip_dense")(ClipDense)
        cfg = {
            "input": {"value": [[0.0, 1.0], [1.0, 0.0]], "batched": True},
            "layers": [{"type": "test_clip_dense", "name": "cd"}],
            "loss": {"type": "upstream", "grad": [[1.0], [0.5]]},
        }
        passes_in_every_mode(cfg)


class Relu6MaxHead(OneOutputHead):
    """y = W max_hw(clip(x, 0, 6)) + b over (C, H, W) inputs, one output; backward: the
    first maximum of each channel, masked with 0 < x < 6 (torch's dx)."""

    def forward(self, x, params):
        c = np.clip(x, 0.0, 6.0).reshape(len(x), x.shape[1], -1)
        m = c.max(axis=2)
        return m @ params["weight"].T + params["bias"], (x, c, m)

    def backward(self, dy, cache, params):
        x, c, m = cache
        first = c.argmax(axis=2)
        d = np.zeros_like(c)
        n, ch = np.meshgrid(np.arange(len(x)), np.arange(x.shape[1]), indexing="ij")
        d[n, ch, first] = (dy @ params["weight"])[n, ch]
        dx = d.reshape(x.shape) * ((x > 0.0) & (x < 6.0))
        return dx, {"weight": dy.T @ m, "bias": dy.sum(0)}


class LogOfPairMax(gc.Layer):
    """y_k = log(max(x_2k, x_2k+1)); ``bug``: the delta to both when they tie."""

    batch_independent = True

    def __init__(self, bug: bool = False):
        self.bug = bug

    def output_shape(self, s):
        return (s[0] // 2,)

    def forward(self, x, params):
        pairs = x.reshape(len(x), -1, 2)
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN past the domain
            return np.log(pairs.max(axis=2)), pairs

    def backward(self, dy, pairs, params):
        top = pairs == pairs.max(axis=2, keepdims=True)
        if not self.bug:
            top[..., 1] &= ~top[..., 0]  # the first maximum only
        dx = top * (dy / pairs.max(axis=2))[..., None]
        return dx.reshape(len(pairs), -1), {}


def test_kinks_of_two_kinds_in_one_output_are_not_moved_together():
    """A hunt on the shift test: a blank channel (zeros, a max of tied zeros) and a
    saturated one (all 6, clamped) summed into one output cancel along all-ones, where
    torch's dx of 0 failed. Only the kink elements move together now (the saturated
    sixes are no kink one by one), and the test passes it."""
    x = np.zeros((1, 2, 2, 2))
    x[0, 1] = 6.0
    with registry_kept():
        gc.register_layer("test_relu6_max_head")(Relu6MaxHead)
        cfg = {
            "input": {"value": x.tolist(), "batched": True},
            "layers": [{"type": "test_relu6_max_head", "name": "head"}],
            "loss": {"type": "upstream", "grad": [[1.0]]},
        }
        passes_in_every_mode(cfg)


def test_tied_maxima_far_below_the_tensors_scale():
    """A hunt: log(max(a, b)) with a = b = 1e-7 beside values of about 1, the delta sent
    to both. The shift's usual step carried the tied values past log's domain and the
    test said nothing; it now starts at a step of their own size."""
    x = [[1e-7, 1e-7, 0.8, 0.3, 0.5, 1.2]]
    with registry_kept():
        gc.register_layer("test_log_pair_max")(LogOfPairMax)
        for bug in (False, True):
            cfg = {
                "input": {"value": x, "batched": True},
                "layers": [{"type": "test_log_pair_max", "name": "lm", "bug": bug}],
                "loss": {"type": "upstream", "grad": [[1.0, 0.5, 2.0]]},
            }
            report = gc.check(cfg, jobs=1)
            assert report.exit_code == (1 if bug else 0), bug
            assert report.blamed_layers() == (["lm"] if bug else [])
