"""Correct networks whose softmax saturates are never failed (contract section 5: no
false alarm on correct layers, at any scale).

With the target's logit far above the others (a margin of 12 to 70), the loss is
log(1 + sum(exp(z_k - z_t))), as small as 1e-30, and so are its gradients. The loss
rounds as the log of a sum near 1 does, to steps of about 2e-16 whatever its value: a
perturbation that moves it by less leaves it exactly where it was, and the numeric
gradient reads 0. The rounding floor of one evaluation must therefore come from what
the loss rounds inside (``Loss.rounding_terms``), not from the loss's tiny value: when
it did (before ``rounding_terms``), 15 of 80 such networks failed ("gradient sent where
none should go", the loss blamed) and 5 ended inconclusive (networks of ``saturated``
with seeds 0-79 and margins drawn from 12-70, 2026-11-29); with it, all 80 pass.
``test_the_generator_reaches_the_rounding_it_is_about`` keeps showing the difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine import grid, run_check
from gradcheck_cli.errors import PluginError
from gradcheck_cli.losses.cross_entropy import SoftmaxCrossEntropy

#: cs231n's softmax_loss, a log-sum-exp that declares nothing: the grid is measured.
CS231N = str(Path(__file__).resolve().parent.parent / "configs/examples/cs231n_functions/layers.py")

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
}


def saturated(seed: int, margin: float, loss: str = "logits") -> dict:
    """A dense-activation-dense network of random size whose last layer is scaled so
    that every example's largest logit stands ``margin`` above the next; each example's
    target is that class. ``loss``: ``logits`` (softmax_cross_entropy), ``probabilities``
    (a softmax layer and cross_entropy) or ``function`` (cs231n's softmax_loss, mean)."""
    rng = np.random.default_rng(seed)
    n, f, hidden, classes = (int(v) for v in rng.integers([1, 2, 2, 2], [5, 7, 7, 6]))
    x = rng.standard_normal((n, f)) * 10.0 ** rng.integers(-1, 3)
    w1, b1 = rng.standard_normal((hidden, f)), rng.standard_normal(hidden)
    w2, b2 = rng.standard_normal((classes, hidden)), rng.standard_normal(classes)
    act = sorted(ACTIVATIONS)[rng.integers(len(ACTIVATIONS))]
    z = ACTIVATIONS[act](x @ w1.T + b1) @ w2.T + b2
    top2 = np.sort(z, axis=1)[:, -2:]
    k = margin / max(float((top2[:, 1] - top2[:, 0]).min()), 1e-3)
    layers = [
        {"type": "dense", "out_features": hidden, "weight": w1.tolist(), "bias": b1.tolist()},
        {"type": act},
        {"type": "dense", "out_features": classes, "weight": (k * w2).tolist()},
    ]
    layers[-1]["bias"] = (k * b2).tolist()
    doc = {
        "seed": seed,
        "dtype": "float64",
        "input": {"value": x.tolist(), "batched": True},
        "layers": layers,
        "loss": {"type": "softmax_cross_entropy", "target": z.argmax(axis=1).tolist()},
    }
    if loss == "probabilities":
        layers.append({"type": "softmax"})
        doc["loss"]["type"] = "cross_entropy"
    elif loss == "function":
        doc["plugins"] = [CS231N]
        doc["loss"].update(type="function", function="softmax_loss", reduction="mean")
    return doc


def verdict(doc: dict) -> str:
    report = run_check(problem_from_dict(doc))
    if report.passed and not report.blamed_layers():
        return "pass"
    return "fail" if report.failed else "inconclusive"


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    margin=st.floats(12.0, 70.0),
    loss=st.sampled_from(["logits", "probabilities", "function"]),
)
def test_correct_saturated_networks_pass(seed, margin, loss):
    """Every correct saturated network passes: on logits, on probabilities, and through
    a user's log-sum-exp that declares nothing (cs231n's softmax_loss)."""
    doc = saturated(seed, margin, loss)
    assert verdict(doc) == "pass", doc


def spread(seed: int) -> float:
    """A margin from 12 to 70, spread over the seeds (golden-ratio steps)."""
    return 12.0 + 58.0 * ((seed * 0.6180339887) % 1.0)


@pytest.mark.parametrize("loss", ["logits", "function"])
def test_the_generator_reaches_the_rounding_it_is_about(monkeypatch, loss):
    """The networks above are the class the loss's rounding terms are for: with neither
    the declared terms nor the measured grid, some of them fail. (Proves the property
    test can fail.)"""
    monkeypatch.setattr(SoftmaxCrossEntropy, "rounding_terms", lambda self, y, t: 0.0)
    monkeypatch.setattr(grid, "loss_grid", lambda spec, y, t: 0.0)
    outcomes = [verdict(saturated(seed, spread(seed), loss)) for seed in range(40)]
    assert outcomes.count("fail") > 0, outcomes


def test_the_measured_grid_alone_covers_a_loss_that_declares_nothing(monkeypatch):
    """With softmax_cross_entropy's declaration taken away, the grid measured on the
    loss alone (what a plugin's log-sum-exp relies on) fails none of the networks. Where
    the loss is exactly 0 (a margin of 40 puts exp(-40) below one epsilon of 1) no step
    reaches its grid, and an element whose gradient is above the analytic allowance may
    stay inconclusive (exit 3, never a pass): honest, where it failed before."""
    monkeypatch.setattr(SoftmaxCrossEntropy, "rounding_terms", lambda self, y, t: 0.0)
    outcomes = [verdict(saturated(seed, spread(seed))) for seed in range(40)]
    assert "fail" not in outcomes, outcomes
    assert outcomes.count("pass") >= 36, outcomes


def test_the_grid_is_the_loss_s_rounding_step():
    """Logits 30 apart: the loss is 1e-13 and its grid the log-sum-exp's step near 1,
    a few epsilons (not a few epsilons of 1e-13); logits of about 1: a few epsilons of
    the loss."""
    from gradcheck_cli.engine.passes import forward, problem_params

    eps = np.finfo(np.float64).eps
    cases = {
        "saturated": (np.array([[30.0, 0.0, 0.0], [0.0, 31.0, 1.0]]), [0, 1]),
        "ordinary": (np.array([[0.3, -0.2, 1.1], [0.5, 0.9, -1.3]]), [2, 0]),
    }
    for name, (logits, target) in cases.items():
        doc = {
            "dtype": "float64",
            "input": {"value": logits.tolist(), "batched": True},
            "layers": [{"type": "dense", "out_features": 3, "weight": np.eye(3).tolist()}],
            "loss": {"type": "softmax_cross_entropy", "target": target},
        }
        problem = problem_from_dict(doc)
        trace = forward(problem, problem.inputs, problem_params(problem))
        y = trace.values[problem.network.output].astype(np.float64)
        q = grid.loss_grid(problem.loss, y, problem.loss.target.astype(np.float64))
        assert eps / 8 < q < 16 * eps * max(1.0, trace.loss), (name, q, trace.loss)
        if name == "saturated":
            assert q > 100 * eps * trace.loss, (q, trace.loss)


@pytest.mark.usefixtures("clean_registry")
@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (-1.0, "must return a finite number >= 0"),
        (float("nan"), "must return a finite number >= 0"),
        (ZeroDivisionError, "ZeroDivisionError"),
    ],
)
def test_a_plugin_loss_s_rounding_terms_is_guarded(returns, message):
    """A plugin loss whose ``rounding_terms`` raises or returns nonsense is a plugin
    error naming the loss (exit 2), never a traceback or a silently wrong floor."""

    @gc.register_loss("sce_plugin")
    class Plugin(SoftmaxCrossEntropy):
        def rounding_terms(self, y, target):
            if isinstance(returns, type):
                raise returns("in rounding_terms")
            return returns

    doc = saturated(3, 20.0)
    doc["loss"]["type"] = "sce_plugin"
    with pytest.raises(PluginError, match=message) as raised:
        run_check(problem_from_dict(doc))
    assert "sce_plugin" in str(raised.value)
