"""The copies probe (engine/interference.py): a network whose layers keep state outside
their arrays is refused (exit 3) in every mode instead of passing with both sides of the
check blind to the hidden path; correct user code, and networks of built-ins, are left
alone. Plugins: tests/purity_plugins/hidden_state.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.cli import cli
from gradcheck_cli.engine import interference
from gradcheck_cli.errors import NondeterministicError

PLUGIN = str(Path(__file__).parent / "purity_plugins" / "hidden_state.py")
X = [
    [-0.0127, -1.1173, 0.2344, 1.6598],
    [0.742, -0.1918, -0.8876, -0.7472],
    [1.6925, 0.0508, -0.637, 0.1909],
]
MODES = [{}, {"fast": True}, {"sample": 5}]


pytestmark = pytest.mark.usefixtures("clean_registry")  # the plugin registers its layers


def chain(*middle: dict, x=X, widths=(4,), seed: int = 1) -> dict:
    """input -> dense layers of ``widths`` -> the ``middle`` layers -> dense head -> mse."""
    layers = [{"type": "dense", "name": f"d{i}", "out_features": w} for i, w in enumerate(widths)]
    layers += [dict(m) for m in middle]
    layers.append({"type": "dense", "name": "head", "out_features": 2})
    target = np.linspace(-1.0, 1.0, 2 * len(x)).reshape(len(x), 2).tolist()
    return {
        "seed": seed,
        "plugins": [PLUGIN],
        "input": {"value": x, "batched": True},
        "layers": layers,
        "loss": {"type": "mse", "target": target},
    }


def sibling() -> dict:
    """The hunt's second network: the writer and the reader on two branches, added."""
    config = chain()
    config["layers"] = [
        {"type": "dense", "name": "d1", "inputs": ["input"], "out_features": 4},
        {"type": "dense", "name": "d2", "inputs": ["input"], "out_features": 4},
        {"type": "publish_mean", "name": "W", "inputs": ["d1"]},
        {"type": "read_global", "name": "R", "inputs": ["d2"]},
        {"type": "add", "name": "sum", "inputs": ["W", "R"]},
        {"type": "dense", "name": "head", "inputs": ["sum"], "out_features": 2},
    ]
    return config


WRITER_READER = chain({"type": "publish_mean", "name": "W"}, {"type": "read_global", "name": "R"})


@pytest.mark.parametrize("options", MODES, ids=["full", "fast", "sample"])
@pytest.mark.parametrize("config", [WRITER_READER, sibling()], ids=["serial", "sibling"])
def test_the_found_networks_are_refused_in_every_mode(config, options):
    """Hunt 14's networks (a mean published by one layer, read by another as a constant)
    passed in every mode with the real gradient 16.5% off: now the check cannot be
    carried out, naming the writer, the first layer with user code on the way."""
    with pytest.raises(NondeterministicError, match="perturbed copies") as caught:
        gc.check(config, **options)
    assert caught.value.layer == "W"
    assert "'W', 'R'" in str(caught.value)


def test_the_command_exits_3_and_points_at_the_layer(tmp_path):
    config = tmp_path / "net.yaml"
    import yaml

    config.write_text(yaml.safe_dump(WRITER_READER))
    result = CliRunner().invoke(cli, ["run", str(config), "--jobs", "1"])
    assert result.exit_code == 3, result.output
    assert "layer 'W'" in result.output and "module-level" in result.output


@pytest.mark.parametrize("writer", ["publish_mean", "publish_last_row", "publish_param"])
def test_each_writer_is_found_whichever_tensor_carries_the_leak(writer):
    """A value computed from the writer's input (its mean, its last example) or from its
    parameter alone: the leak shows on the tensors upstream of it. (Where the purity
    probes already see the reader answer differently to the same input, they refuse it
    first: exit 3 either way.)"""
    config = chain({"type": writer, "name": "W"}, {"type": "read_global", "name": "R"})
    with pytest.raises(NondeterministicError):
        gc.check(config)


@pytest.mark.parametrize("options", MODES, ids=["full", "fast", "sample"])
def test_a_leak_from_one_feature_or_one_parameter_element_is_found(options):
    """Hunt 16: a writer on the input that reads feature 1 alone, and one that reads the
    last element of its parameter alone, passed in every mode (the real gradient 15.8%
    and 8.95% off) while the probe moved only each tensor's first and middle elements.
    It now moves up to PROBE_ELEMENTS of them, the last among them."""
    x = [
        [0.3, -1.2, 0.8, 0.1],
        [1.1, 0.4, -0.6, 0.9],
        [-0.7, 0.2, 0.5, -1.3],
        [0.6, -0.9, 1.4, 0.2],
    ]
    feature = chain(x=x, widths=())
    feature["layers"] = [
        {"type": "publish_column", "name": "W"},
        {"type": "dense", "name": "d1", "out_features": 4},
        {"type": "read_global", "name": "R"},
        {"type": "dense", "name": "head", "out_features": 2},
    ]
    element = chain(
        {"type": "publish_last_scale", "name": "W"},
        {"type": "dense", "name": "d1", "out_features": 4},
        {"type": "read_global", "name": "R"},
        x=x,
    )
    for config in (feature, element):
        with pytest.raises(NondeterministicError, match="perturbed copies"):
            gc.check(config, **options)


def test_the_probed_elements_include_the_first_middle_and_last_and_all_of_a_small_tensor():
    assert interference.probed_elements(16, "t").tolist()[:3] == [0, 8, 15]
    assert sorted(interference.probed_elements(16, "t")) == list(range(16))
    big = interference.probed_elements(1000, "w")
    assert len(big) == interference.PROBE_ELEMENTS == len(set(big.tolist()))
    assert big.tolist()[:3] == [0, 500, 999]
    assert np.array_equal(big, interference.probed_elements(1000, "w"))  # the same every run


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writer=st.sampled_from(["publish_mean", "publish_last_row", "publish_param"]),
    widths=st.lists(st.integers(2, 6), min_size=1, max_size=3),
    gap=st.integers(0, 2),
    rows=st.integers(1, 4),
    scale=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**16),
)
def test_a_writer_and_a_later_reader_never_pass(writer, widths, gap, rows, scale, seed):
    """Anywhere in a random chain, any number of layers apart, any batch size: refused
    (exit 3, by this probe or by the purity probes' determinism test)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, 3)) * scale).tolist()
    between = [{"type": "tanh", "name": f"t{i}"} for i in range(gap)]
    middle = [{"type": writer, "name": "W"}, *between, {"type": "read_global", "name": "R"}]
    config = chain(*middle, x=x, widths=tuple(widths), seed=seed)
    with pytest.raises(NondeterministicError):
        gc.check(config)


PURE = ["read_constant", "count_calls", "gemm_dense"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(PURE), min_size=1, max_size=3),
    widths=st.lists(st.integers(2, 6), min_size=1, max_size=2),
    rows=st.integers(1, 5),
    exponent=st.integers(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_correct_user_code_is_never_refused(kinds, widths, rows, exponent, seed):
    """Pure plugins (a module-level constant, a call counter no output depends on, one
    gemm whose rounding changes with the batch size), at inputs from 1e-3 to 1e3: the
    probe lets them through and the check passes."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, 3)) * 10.0**exponent).tolist()
    middle = [{"type": k, "name": f"p{i}"} for i, k in enumerate(kinds)]
    report = gc.check(chain(*middle, x=x, widths=tuple(widths), seed=seed))
    assert report.passed, [c.name for c in report.checks if not c.passed]


def test_networks_of_built_ins_are_not_probed(monkeypatch):
    """Built-in layers are row consistent by construction: no probe, no cost."""

    def refuse(*args):
        raise AssertionError("probed a network of built-ins")

    monkeypatch.setattr(interference, "_probe", refuse)
    config = chain({"type": "tanh"})
    config.pop("plugins")
    assert gc.check(config).passed


def test_a_time_budget_bounds_the_probe_and_the_report_says_what_it_left():
    """Under ``--time-budget`` the probe takes at most PROBE_SHARE of it; the tensors it
    had no time for are named in a warning."""
    config = chain({"type": "slow_sin", "name": "slow"})
    started = time.perf_counter()
    report = gc.check(config, time_budget=0.5)
    assert time.perf_counter() - started < 3.0
    assert any("no time to compare perturbed copies" in w for w in report.warnings)


class _Objective:
    """A stand-in objective whose copies evaluated together miss the network alone by
    ``gap`` (relative to f)."""

    def __init__(self, gap: float):
        self.gap, self.f0 = gap, 1e8  # epsilons of f (3e-6) above 1e-7 of its change
        self.values = {"w": np.array([1.0, 2.0, 3.0])}

    def tensors(self):
        return self.values

    def losses(self, tensor, index, delta):
        return np.array([self._f(i, d) * (1 + self.gap) for i, d in zip(index, delta, strict=True)])

    def loss_at(self, values):
        moved = values["w"] - self.values["w"]
        (i,) = np.flatnonzero(moved)
        return self._f(i, moved[i])

    def _f(self, i, d):
        return self.f0 + (i + 1) * d


@pytest.mark.parametrize(
    ("gap", "noise", "refused"),
    [
        (1e-13, 0.0, True),  # beyond 64 epsilons of f, no noise measured to cover it
        (1e-13, 1e-6, False),  # within the tensor's measured noise of f
        (1e-15, 0.0, False),  # within 64 epsilons of f: the noise is not even measured
        (1e-6, 1e-6, True),  # a leak: 1e-6 of f is far beyond the noise
    ],
)
def test_the_rule_allows_rounding_and_the_measured_noise_of_f(monkeypatch, gap, noise, refused):
    """The probe's rule (module docstring): a gap within 64 epsilons of f, or within 64
    times the tensor's measured noise of f, is rounding; anything more is refused. The
    noise is measured only when epsilons do not cover the gap."""
    measured = []
    monkeypatch.setattr(interference, "tensor_noise", lambda *a: measured.append(1) or noise)
    run = lambda: interference._probe(_Objective(gap), "w", ["p"], 1e-6, 1 << 20, 1e-2)  # noqa: E731
    if refused:
        with pytest.raises(NondeterministicError, match="perturbed copies"):
            run()
    else:
        run()
    assert bool(measured) == (gap > 1e-14)


def test_a_layer_on_a_narrow_domain_is_probed_with_smaller_moves():
    """An input 0.006 above the edge of a layer's domain: the probe's moves of 1% of the
    input's magnitude cross it and the layer raises, so the probe moves SMALLER times as
    far; the check passes, as it did before the probe."""
    x = [[0.506, 0.9, 1.4], [0.7, 1.1, 0.8]]
    config = {
        "plugins": [PLUGIN],
        "input": {"value": x, "batched": True},
        "layers": [{"type": "log_above_half", "name": "log"}],
        "loss": {"type": "mse", "target": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]},
    }
    report = gc.check(config)
    assert report.passed and not any("not compared" in w for w in report.warnings)


def test_user_code_that_raises_at_every_move_is_noted_not_refused(monkeypatch):
    """Where user code raises even at the smaller moves, the tensor goes unprobed and the
    report says so (the check's own steps meet the error if it is theirs too)."""
    from gradcheck_cli.errors import PluginError

    def raising(objective, tensor, below, eps, max_memory, step):
        raise PluginError("p", "raised ValueError")

    monkeypatch.setattr(interference, "_probe", raising)
    report = gc.check(WRITER_READER)
    assert report.checks  # the check itself ran
    notes = [w for w in report.warnings if "were not compared" in w]
    assert notes and "input" in notes[0]
