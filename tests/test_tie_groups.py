"""Ties beside a kink of another kind, in one layer (engine/shift.py ``_smooth_groups``).

A hunt on the joint shift test found four layers routing a tie's delta to every tied
maximum pass in every mode, because one group of their moved elements was a kink of its
own along the shift direction: a fused ReLU's zeros (moved up together they pass the
ReLU, moved down they do not), a zero padding's 0 tied with an input 0, a ReLU fused
after a max of two inputs, a clamp inside a max. The objective then had two slopes
along u, the test said nothing, and the wrong sums at the other ties went unseen. The
test now moves each group of one value alone, drops those with two slopes of their
own, and moves the rest together once more. The layers below are the hunt's, in short.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc

#: full, --fast, --sample 5: the options of gradcheck_cli.check
MODES = [{}, {"fast": True}, {"sample": 5}]


def _route(win: np.ndarray, rule: str) -> np.ndarray:
    """Weights over each window's last axis for its delta: ``first`` tied maximum
    (right), or ``all`` of them (the bug)."""
    top = win == win.max(axis=-1, keepdims=True)
    if rule == "all":
        return top * 1.0
    flat = top.reshape(-1, top.shape[-1])
    one = np.zeros(flat.shape)
    one[np.arange(len(flat)), flat.argmax(axis=1)] = 1.0
    return one.reshape(top.shape)


class Pool(gc.Layer):
    """k x k max pool of stride ``st`` over (N, C, H, W), padded by ``pad`` with
    ``padval``, with a ReLU fused in front when ``relu`` (cs231n's conv-relu-pool
    sandwich: the pool's backward, then the ReLU's mask x > 0)."""

    kinks = "ties"
    batch_independent = True

    def __init__(self, k=2, st=2, pad=0, padval=-np.inf, rule="first", relu=False):
        self.k, self.st, self.pad, self.padval, self.rule, self.relu = (
            k,
            st,
            pad,
            padval,
            rule,
            relu,
        )

    def _size(self, n: int) -> int:
        return (n + 2 * self.pad - self.k) // self.st + 1

    def output_shape(self, s):
        return (s[0], self._size(s[1]), self._size(s[2]))

    def _windows(self, x):
        n, c, h, w = x.shape
        p, k, st = self.pad, self.k, self.st
        xp = np.full((n, c, h + 2 * p, w + 2 * p), self.padval)
        xp[:, :, p : p + h, p : p + w] = x
        ho, wo = self._size(h), self._size(w)
        win = np.empty((n, c, ho, wo, k * k))
        for i in range(ho):
            for j in range(wo):
                win[:, :, i, j] = xp[:, :, i * st : i * st + k, j * st : j * st + k].reshape(
                    n, c, -1
                )
        return xp, win

    def forward(self, x, params):
        r = np.maximum(x, 0.0) if self.relu else x
        xp, win = self._windows(r)
        return win.max(axis=-1), (x, xp, win)

    def backward(self, dy, cache, params):
        x, xp, win = cache
        weights = _route(win, self.rule) * dy[..., None]
        dxp = np.zeros_like(xp)
        n, c, ho, wo, _ = win.shape
        k, st, p = self.k, self.st, self.pad
        for i in range(ho):
            for j in range(wo):
                dxp[:, :, i * st : i * st + k, j * st : j * st + k] += weights[:, :, i, j].reshape(
                    n, c, k, k
                )
        dx = dxp[:, :, p : p + x.shape[2], p : p + x.shape[3]]
        return (dx * (x > 0) if self.relu else dx), {}


class PairOfTwo(gc.Layer):
    """y = max(a, b, 0) (``kind`` relu: a ReLU fused after a max of two inputs) or
    max(a, clip(b, 0, 1)) (``kind`` clip); ``rule`` first (right) or ``both``
    (cs231n-style masks a >= b and b >= a: the delta of a tie to both inputs)."""

    n_inputs = 2
    batch_independent = True
    kinks = "ties"

    def __init__(self, kind="relu", rule="first"):
        self.kind, self.rule = kind, rule

    def output_shape(self, shapes):
        return shapes[0]

    def forward(self, xs, params):
        a, b = xs
        if self.kind == "relu":
            m = np.maximum(a, b)
            return np.maximum(m, 0.0), (a, b, m)
        c = np.clip(b, 0.0, 1.0)
        return np.maximum(a, c), (a, b, c)

    def backward(self, dy, cache, params):
        a, b, m = cache
        second = (b >= a) if self.rule == "both" else (b > a)
        if self.kind == "relu":
            g = dy * (m > 0)
            return (g * (a >= b), g * second), {}
        inside = (b > 0) & (b < 1)
        second = (m >= a) if self.rule == "both" else (m > a)
        return (dy * (a >= m), dy * second * inside), {}


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_group_pool")(Pool)
        gc.register_layer("test_pair_of_two")(PairOfTwo)
        yield


def _relu_pool(rule: str) -> dict:
    # upsampled by 2, then ReLU and the pool: the network is relu(x); x holds one 0
    return {
        "input": {"value": [[[[0.0, 1.2], [0.7, -0.4]]]], "batched": True},
        "layers": [
            {"type": "upsample2d", "name": "up", "scale": 2},
            {"type": "test_group_pool", "name": "pool", "relu": True, "rule": rule},
        ],
        "loss": {"type": "upstream", "grad": [[[[1.0, 0.5], [0.8, -1.0]]]]},
    }


def _zero_pad_pool(rule: str) -> dict:
    # stride 1, padded with 0: x[0, 0] = 0 ties with the padding in the corner window
    return {
        "input": {
            "value": [[[[0.0, -1.0, -1.0], [-1.0, 2.0, 2.0], [-1.0, -1.0, -1.0]]]],
            "batched": True,
        },
        "layers": [
            {
                "type": "test_group_pool",
                "name": "pool",
                "k": 2,
                "st": 1,
                "pad": 1,
                "padval": 0.0,
                "rule": rule,
            },
        ],
        "loss": {
            "type": "upstream",
            "grad": [
                [
                    [
                        [0.3, 0.5, -0.7, 0.4],
                        [0.8, -1.0, 1.3, 0.2],
                        [0.6, 1.1, -0.9, 0.5],
                        [0.7, -0.3, 0.9, 1.2],
                    ]
                ]
            ],
        },
    }


def _pair(kind: str, rule: str) -> dict:
    # element 0 a tie above 0, element 1 a tie at 0 (a kink of the ReLU or the clamp)
    b = [0.5, 0.0, -0.2] if kind == "relu" else [0.5, 0.0, 0.8]
    return {
        "inputs": {
            "a": {"value": [[0.5, 0.0, 0.3]], "batched": True},
            "b": {"value": [b], "batched": True},
        },
        "layers": [
            {
                "type": "test_pair_of_two",
                "name": "pool",
                "inputs": ["input.a", "input.b"],
                "kind": kind,
                "rule": rule,
            }
        ],
        "loss": {"type": "upstream", "grad": [[1.0, 0.7, -0.6]]},
    }


def _found(which: str, rule: str) -> dict:
    if which == "relu_pool":
        return _relu_pool(rule)
    if which == "zero_pad_pool":
        return _zero_pad_pool(rule)
    return _pair("relu" if which == "relu_max" else "clip", rule)


@pytest.mark.parametrize("which", ["relu_pool", "zero_pad_pool", "relu_max", "clip_max"])
@pytest.mark.parametrize("mode", range(len(MODES)))
def test_the_found_cases(which, mode):
    """Each hunt case: the right tie-break passes, the delta to every tied maximum
    fails with the layer blamed (all four passed before, in every mode)."""
    right = gc.check(_found(which, "first"), jobs=1, **MODES[mode])
    assert right.exit_code == 0, right.blamed_layers()
    wrong = gc.check(_found(which, "all" if "pool" in which else "both"), jobs=1, **MODES[mode])
    assert wrong.exit_code == 1 and wrong.blamed_layers() == ["pool"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["relu", "clip"]), st.booleans())
def test_a_tie_beside_a_tie_at_a_kink(seed, kind, wrong):
    """Random pairs holding ties above 0 and ties at 0 (and, for the clamp, at 1): the
    right rule passes in every mode, the delta to both fails, blamed, wherever a tie
    inside the smooth range carries a delta."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(3, 9))
    a = np.round(rng.uniform(-1, 1.5, d) * 4) / 4
    b = np.round(rng.uniform(-1, 1.5, d) * 4) / 4
    tie = rng.random(d) < 0.5
    b[tie] = a[tie]
    a[0] = b[0] = 0.0  # always a tie at a kink
    a[1] = b[1] = 0.5  # and one inside the smooth range
    g = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)
    cfg = {
        "inputs": {
            "a": {"value": [a.tolist()], "batched": True},
            "b": {"value": [b.tolist()], "batched": True},
        },
        "layers": [
            {
                "type": "test_pair_of_two",
                "name": "pool",
                "inputs": ["input.a", "input.b"],
                "kind": kind,
                "rule": "both" if wrong else "first",
            }
        ],
        "loss": {"type": "upstream", "grad": [g.tolist()]},
    }
    for mode in MODES:
        report = gc.check(cfg, jobs=1, **mode)
        if wrong:
            assert report.exit_code == 1 and report.blamed_layers() == ["pool"], mode
        else:
            assert report.exit_code == 0, (mode, report.blamed_layers())
