"""Property tests: correct built-in layers never fail, on inputs full of kinks and ties.

Hypothesis builds random valid stacks of built-in layers (conv2d with random kernel,
stride, padding and channels; max and average pooling with overlapping windows; every
activation; flatten, dense, softmax, dropout) and a loss, on random shapes and seeds,
batched or not, and feeds them through the public config path. The inputs and weights
are drawn to be hard: small sets of repeated values (max-pool ties, exact zeros before a
ReLU, conv outputs that cancel to 0), values within the finite-difference step of a kink
(1e-7, 5e-7), and ordinary random values; a quarter of the cases run in float32. Each
array is rescaled by its own power of ten, so that values span 1e-6 to 1e4 (issue 10):
the input and every weight by one of SCALES, an upstream gradient by up to 1e6 and an
MSE target by up to 1e3 (losses up to 1e6). Every case must pass: zero false failures,
and no layer blamed.

The default run (``pytest``) draws DEFAULT_EXAMPLES cases; ``pytest -m slow`` draws
SLOW_EXAMPLES more. ``python tests/test_properties.py [N] [SEED]`` runs N cases and
prints the false alarms and the distribution of |a - n| / error_bound over the correct
elements (how much of the rule's SAFETY factor is used).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from layer_cases import first_of_each_type

from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine import run_check
from gradcheck_cli.errors import NumericalError
from gradcheck_cli.protocol import LOSSES, ORIGINS

#: The cs231n-style functions the ``functions`` layers name.
CS231N = str(Path(__file__).resolve().parent.parent / "configs/examples/cs231n_functions/layers.py")

DEFAULT_EXAMPLES = 100
SLOW_EXAMPLES = 5000

#: Values that make ties (repeated), exact zeros, and kinks within the step (eps = 1e-6).
TIE_VALUES = (-1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 2.0)
NEAR_KINK = (0.0, 1e-7, -1e-7, 5e-7, -5e-7, 3e-8, 0.3, -0.3)

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "dropout")

#: Powers of ten an input or weight tensor is multiplied by (1 drawn most often).
SCALES = (1e-6, 1e-4, 1e-2, 1.0, 1.0, 1.0, 1e2, 1e4)
#: ... an upstream gradient (the loss's own scale), and an MSE target.
GRAD_SCALES = (1e-3, 1.0, 1.0, 1e2, 1e4, 1e6)
TARGET_SCALES = (1e-3, 1.0, 1.0, 1e1, 1e2, 1e3)


def values(draw, shape: tuple[int, ...], kind: str, seed: int) -> np.ndarray:
    """An array of ``shape`` drawn from one of the hard value families."""
    rng = np.random.default_rng(seed)
    if kind == "ties":
        return rng.choice(TIE_VALUES, size=shape)
    if kind == "near_kink":
        return rng.choice(NEAR_KINK, size=shape)
    if kind == "mixed":
        base = rng.standard_normal(shape)
        hard = rng.choice(TIE_VALUES + NEAR_KINK, size=shape)
        return np.where(rng.random(shape) < 0.5, hard, base)
    return rng.standard_normal(shape)


KINDS = st.sampled_from(["ties", "near_kink", "mixed", "normal"])
SCALE = st.sampled_from(SCALES)


@st.composite
def activation(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(ACTIVATIONS))
    if kind == "leaky_relu":
        return {"type": kind, "negative_slope": draw(st.sampled_from([0.01, 0.2, -0.5, 2.0]))}
    if kind == "dropout":
        return {
            "type": kind,
            "p": draw(st.sampled_from([0.25, 0.5])),
            "seed": draw(st.integers(0, 9)),
        }
    return {"type": kind}


@st.composite
def image_layer(draw, shape: tuple[int, int, int], seed: int, kind: str | None = None, n: int = 1):
    """One layer on a (C, H, W) input and its output shape, or None when none fits.

    kind: "conv2d", "pool" (max or average) or None (any, activations included).
    """
    c, h, w = shape
    if kind is None:
        kind = draw(st.sampled_from(["conv2d", "conv2d", "pool", "pool", "act", "act", "other"]))
    if kind == "act":
        return draw(activation()), shape
    if kind == "other":  # normalisation and reshaping layers
        other = draw(st.sampled_from(["batchnorm", "layernorm", "upsample2d", "transpose"]))
        if other == "upsample2d":
            sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            return {"type": other, "scale": [sh, sw]}, (c, h * sh, w * sw)
        if other == "transpose":
            axes = draw(st.permutations([0, 1, 2]))
            return {"type": other, "axes": list(axes)}, tuple(shape[a] for a in axes)
        if other == "batchnorm" and n * h * w == 1:  # a statistic of one value: refused
            other = "layernorm"
        return norm_layer(draw, other, shape, seed), shape
    if kind == "pool":
        kind = draw(st.sampled_from(["maxpool2d", "maxpool2d", "avgpool2d"]))
    k = draw(st.integers(1 if kind == "conv2d" else 2, 3))
    s = draw(st.integers(1, 2))
    if kind == "conv2d":
        p = draw(st.integers(0, 1))
    else:
        p = draw(st.integers(0, k // 2))
        s = draw(st.integers(1, k))  # stride < kernel: overlapping windows
    if k > h + 2 * p or k > w + 2 * p:
        return None
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    layer: dict[str, Any] = {"type": kind, "kernel_size": k, "stride": s, "padding": p}
    if kind == "conv2d":
        o = draw(st.integers(1, 3))
        layer["out_channels"] = o
        wkind, magnitude = draw(KINDS), draw(SCALE)
        if wkind != "normal" or magnitude != 1.0:  # else left out: seeded default init
            # scaled by 1/sqrt(fan_in): ties and zeros stay, saturation (log 0) does not
            # come unless the magnitude brings it
            scale = magnitude / np.sqrt(c * k * k)
            layer["weight"] = (scale * values(draw, (o, c, k, k), wkind, seed + 1)).tolist()
            if draw(st.booleans()):
                layer["bias"] = [0.0] * o  # exact zeros stay exact zeros
        return layer, (o, ho, wo)
    return layer, (c, ho, wo)


def norm_layer(draw, kind: str, shape: tuple[int, ...], seed: int) -> dict[str, Any]:
    """A batchnorm or layernorm on examples of ``shape``, its gamma/beta drawn hard or
    left to their defaults (ones, zeros)."""
    layer: dict[str, Any] = {"type": kind}
    own = shape[:1] if kind == "batchnorm" else shape
    if draw(st.booleans()):
        layer["gamma"] = (draw(SCALE) * values(draw, own, draw(KINDS), seed + 5)).tolist()
        layer["beta"] = values(draw, own, draw(KINDS), seed + 6).tolist()
    if draw(st.booleans()):
        layer["eps"] = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return layer


@st.composite
def flat_layer(draw, features: int, seed: int, n: int = 1):
    kind = draw(st.sampled_from(["dense", "dense", "act", "softmax", "norm", "functions"]))
    if kind == "act":
        return draw(activation()), features
    if kind == "functions":  # cs231n's affine pair: x.dot(w) + b in one gemm
        out = draw(st.integers(1, 4))
        scale = draw(SCALE) / np.sqrt(features)
        w = scale * values(draw, (features, out), draw(KINDS), seed + 7)
        layer = {
            "type": "functions",
            "forward": "affine_forward",
            "backward": "affine_backward",
            "params": {"w": w.tolist(), "b": values(draw, (out,), draw(KINDS), seed + 8).tolist()},
            "batch_independent": draw(st.booleans()),
        }
        return layer, out
    if kind == "norm":
        norm = draw(st.sampled_from(["batchnorm", "layernorm"] if n > 1 else ["layernorm"]))
        return norm_layer(draw, norm, (features,), seed), features
    if kind == "softmax":
        return {"type": "softmax"}, features
    out = draw(st.integers(1, 4))
    layer: dict[str, Any] = {"type": "dense", "out_features": out}
    wkind, magnitude = draw(KINDS), draw(SCALE)
    if wkind != "normal" or magnitude != 1.0:
        scale = magnitude / np.sqrt(features)
        layer["weight"] = (scale * values(draw, (out, features), wkind, seed + 2)).tolist()
    return layer, out


@st.composite
def image_stack(draw, shape: tuple[int, int, int], seed: int, n: int = 1):
    """Image layers on a (C, H, W) input: a random sequence, or the classic
    conv -> ReLU-like -> pool block (twice at most). Returns (layers, output shape)."""
    layers: list[dict[str, Any]] = []
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 2))):
            for kind in ("conv2d", "act", "pool"):
                if kind == "act":
                    made = draw(activation()), shape
                else:
                    made = draw(image_layer(shape, seed + len(layers), kind, n))
                if made is not None:
                    layers.append(made[0])
                    shape = made[1]
        return layers, shape
    for _ in range(draw(st.integers(1, 4))):
        made = draw(image_layer(shape, seed + len(layers), None, n))
        if made is not None:
            layers.append(made[0])
            shape = maybe_join(draw, layers, shape, made[1])
    return layers, shape


def maybe_join(draw, layers: list[dict[str, Any]], before: tuple, after: tuple) -> tuple:
    """Sometimes make the last layer a branch: join its output with its own input (a
    residual ``add``, a gate ``multiply``, or a ``concat`` along axis 0, channels or
    features), which makes that input a fork. Names the layers it refers to. Returns the
    shape after the join (or ``after``)."""
    if draw(st.integers(0, 3)) != 0:
        return after
    same = before == after
    if not same and before[1:] != after[1:]:
        return after
    kind = draw(st.sampled_from(["add", "multiply", "concat"] if same else ["concat"]))
    source = "input" if len(layers) == 1 else layers[-2].setdefault("name", f"v{len(layers) - 1}")
    branch = layers[-1].setdefault("name", f"v{len(layers)}")
    join: dict[str, Any] = {"type": kind, "inputs": [source, branch]}
    if draw(st.booleans()):
        join["inputs"].reverse()
    if kind != "concat":
        layers.append(join)
        return after
    join["axis"] = 0
    layers.append(join)
    return (before[0] + after[0], *after[1:])


@st.composite
def configs(draw) -> dict[str, Any]:
    seed = draw(st.integers(0, 2**16))
    batch = draw(st.sampled_from([None, 1, 2, 3]))
    n = 1 if batch is None else batch
    image = draw(st.sampled_from([True, True, False]))
    layers: list[dict[str, Any]] = []
    if image:
        in_shape: tuple[int, ...] = (
            draw(st.integers(1, 3)),
            draw(st.integers(2, 7)),
            draw(st.integers(2, 7)),
        )
        layers, shape = draw(image_stack(in_shape, seed, n))
        if draw(st.integers(0, 4)) == 0:
            layers.append({"type": "global_avgpool2d"})
            shape = shape[:1]
        else:
            layers.append({"type": "flatten"})
        features = int(np.prod(shape))
    else:
        features = draw(st.integers(1, 6))
        in_shape = (features,)
    for _ in range(draw(st.integers(0 if image else 1, 3))):
        layer, out = draw(flat_layer(features, seed + len(layers), n))
        layers.append(layer)
        (features,) = maybe_join(draw, layers, (features,), (out,))

    full = in_shape if batch is None else (batch, *in_shape)
    x = draw(SCALE) * values(draw, full, draw(KINDS), seed)
    kinds = ["mse", "upstream", "softmax_cross_entropy", "cross_entropy"]
    loss_kind = draw(st.sampled_from(kinds + (["function"] if batch is not None else [])))
    if loss_kind == "cross_entropy" and layers[-1]["type"] != "softmax":
        layers.append({"type": "softmax"})
    out = (features,) if batch is None else (n, features)
    rng = np.random.default_rng(seed + 3)
    if loss_kind == "mse":
        target = draw(st.sampled_from(TARGET_SCALES)) * rng.standard_normal(out)
        loss = {"type": "mse", "target": target.tolist()}
    elif loss_kind == "upstream":
        grad = draw(st.sampled_from(GRAD_SCALES)) * values(draw, out, draw(KINDS), seed + 4)
        loss = {"type": "upstream", "grad": grad.tolist()}
    else:
        classes = rng.integers(0, features, size=n)
        loss = {"type": loss_kind, "target": int(classes[0]) if batch is None else classes.tolist()}
        if loss_kind == "function":  # cs231n's softmax_loss: a mean over the batch
            loss.update(type="function", function="softmax_loss", reduction="mean")
    if batch is not None and loss_kind != "function" and draw(st.booleans()):
        loss["reduction"] = "mean"
    doc = {
        **({"plugins": [CS231N]} if "function" in types_of(layers, loss) else {}),
        "seed": seed,
        "dtype": draw(st.sampled_from(["float64", "float64", "float64", "float32"])),
        "input": x.tolist() if batch is None else {"value": x.tolist(), "batched": True},
        "layers": layers,
        "loss": loss,
    }
    return doc


def types_of(layers: list[dict[str, Any]], loss: dict[str, Any]) -> set[str]:
    """The layer and loss types of a config ("function" where any user function is named)."""
    types = {layer["type"] for layer in layers} | {loss["type"]}
    return types | ({"function"} if "functions" in types else set())


def test_every_built_in_type_is_generated():
    """The generator draws every built-in layer type of the shared table
    (tests/layer_cases.py, guarded against the registry) and every built-in loss."""
    seen: set[str] = set()

    @settings(max_examples=250, database=None, derandomize=True, phases=[Phase.generate])
    @given(configs())
    def draw_configs(doc):
        seen.update(types_of(doc["layers"], doc["loss"]))

    draw_configs()
    built_in = {n for n in LOSSES if ORIGINS.get(("loss", n)) == "built-in"}
    assert set(first_of_each_type()) | built_in <= seen


def assert_no_false_failure(doc: dict[str, Any], allow_inconclusive: bool = False) -> bool:
    """Fail the test on a correct stack that does not pass. With ``allow_inconclusive``,
    an inconclusive verdict with nothing failed, nothing blamed and every layer's own
    backward passing in isolation is let through: returns whether the stack passed."""
    try:
        report = run_check(problem_from_dict(doc))
    except NumericalError:
        # exit 3 (log of 0 after a saturated softmax): a refusal, not a verdict
        reject()
    blamed = report.blamed_layers()
    vouched = report.inconclusive and not report.disagreeing_layers()
    if allow_inconclusive and vouched and not report.failed and not blamed:
        assert not report.passed  # never green while an element is unresolved
        return False
    if not report.passed or blamed:
        bad = [
            (c.name, c.failed, c.max_abs_error, c.diagnosis) for c in report.checks if not c.passed
        ]
        pytest.fail(f"false failure: {bad}, blamed {blamed}\nconfig: {doc}")
    return True


SETTINGS = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    derandomize=True,
)


@settings(max_examples=DEFAULT_EXAMPLES, **SETTINGS)
@given(configs())
def test_correct_built_in_stacks_never_fail(doc):
    assert_no_false_failure(doc)


#: The share of generated correct stacks that may end inconclusive in the long run. The
#: README's long survey measured 3 in 3,000 (a bias at 0 before inputs of 1e-10: no step
#: both clears the loss's rounding and stays short of the kinks); a verdict that called
#: hard cases inconclusive instead of resolving them would exceed it many times over.
INCONCLUSIVE_SHARE = 0.01


@pytest.mark.slow
def test_correct_built_in_stacks_never_fail_many():
    """SLOW_EXAMPLES random stacks: no false alarm and no layer wrongly blamed, ever; an
    inconclusive verdict (exit 3, never a pass) only where the chain rule vouches for the
    gradient (every backward on the way passes its own check, nothing failed), and on at
    most INCONCLUSIVE_SHARE of the stacks."""
    unresolved: list[dict[str, Any]] = []

    @settings(max_examples=SLOW_EXAMPLES, **{**SETTINGS, "derandomize": False})
    @given(configs())
    def run(doc):
        if not assert_no_false_failure(doc, allow_inconclusive=True):
            unresolved.append(doc)

    run()
    assert len(unresolved) <= INCONCLUSIVE_SHARE * SLOW_EXAMPLES, (
        f"{len(unresolved)} of {SLOW_EXAMPLES} correct stacks inconclusive; the first: "
        f"{unresolved[:3]}"
    )


def survey(stacks: int, seed: int) -> str:
    """Run ``stacks`` generated cases; report false alarms and |a - n| / error_bound.

    The ratio is taken over every checked element that is neither a kink nor failed, in
    float64 cases, and only where error_bound exceeds the analytic side's rounding
    allowance (elsewhere the allowance, not the numeric estimate, sets the pass line);
    1 would be an element at its bound.

    The stacks drawn depend on ``seed`` (and Hypothesis's version) alone, not on the
    engine (checked: 80 stacks drawn with an empty test body and with the check are the
    same), so two versions of the code surveyed at one seed are judged on the same
    stacks; the float32 count includes the stacks refused.
    """
    from hypothesis import seed as hypothesis_seed

    from gradcheck_cli.engine.objective import NetworkObjective
    from gradcheck_cli.engine.passes import analytic_pass, problem_params
    from gradcheck_cli.engine.verdict import ANALYTIC_ULPS, gradient_scale

    counts = {"stacks": 0, "refused": 0, "false": 0, "unresolved": 0, "blamed": 0}
    counts |= {"float32": 0, "refused32": 0}
    ratios: list[np.ndarray] = []
    failures: list[dict[str, Any]] = []

    @hypothesis_seed(seed)
    @settings(max_examples=stacks, database=None, **{**SETTINGS, "derandomize": False})
    @given(configs())
    def run(doc):
        # counted before the check: the sample is the seed's alone (the same stacks for
        # any engine), while what is refused depends on the engine
        counts["stacks"] += 1
        counts["float32"] += doc["dtype"] == "float32"
        try:
            problem = problem_from_dict(doc)
            report = run_check(problem)
        except NumericalError:
            counts["refused"] += 1
            counts["refused32"] += doc["dtype"] == "float32"
            return
        failed = any(c.failed for c in report.checks) or not all(
            e.passed for e in report.expectations
        )
        counts["false"] += failed or report.failed
        counts["unresolved"] += not report.passed and not failed
        counts["blamed"] += bool(report.blamed_layers())
        if not report.passed or report.blamed_layers():
            failures.append(doc)
        if doc["dtype"] != "float64":
            return
        trace, grads = analytic_pass(problem, problem_params(problem))
        objective = NetworkObjective.build(problem, trace, grads, problem_params(problem, float))
        for c in report.checks:
            scale = gradient_scale(objective, c.name)
            allowance = ANALYTIC_ULPS * np.finfo(float).eps * (np.abs(c.analytic) + scale)
            use = c.checked_mask & ~c.kink_mask & ~c.failed_mask & ~c.inconclusive_mask
            use &= c.error_bound > allowance
            with np.errstate(all="ignore"):
                ratio = np.abs(c.analytic - c.numeric)[use] / c.error_bound[use]
            ratios.append(ratio[np.isfinite(ratio)])

    run()
    r = np.concatenate(ratios) if ratios else np.zeros(1)
    lines = [
        f"{counts['stacks']} stacks ({counts['float32']} float32), "
        f"{counts['refused']} refused (exit 3; {counts['refused32']} of them float32): "
        f"false alarms {counts['false']}, "
        f"inconclusive (exit 3) {counts['unresolved']}, "
        f"layers wrongly blamed {counts['blamed']}",
        f"|a - n| / error_bound over {r.size} correct float64 elements: max {r.max():.3g}, "
        f"99.9th percentile {np.percentile(r, 99.9):.3g}, 99th {np.percentile(r, 99):.3g}, "
        f"median {np.median(r):.3g}",
    ]
    lines += [f"false alarm or inconclusive: {doc}" for doc in failures[:5]]
    return "\n".join(lines)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(survey(args[0] if args else 2000, args[1] if len(args) > 1 else 0))
