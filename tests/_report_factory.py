"""Hand-built Reports and Problems for the renderer and CLI tests (no engine involved)."""

from __future__ import annotations

import numpy as np

from gradcheck_cli.problem import CheckSettings, LayerSpec, LossSpec, Problem
from gradcheck_cli.protocol import Layer, Loss
from gradcheck_cli.report import (
    ExpectationResult,
    LayerVerdict,
    Mismatch,
    Report,
    TensorCheck,
)

SETTINGS = {
    "eps": 1e-6,
    "atol": 1e-7,
    "rtol": 1e-5,
    "method": "central",
    "mode": "full",
    "dtype": "float64",
    "seed": 0,
}


def tensor_check(
    name: str,
    analytic,
    numeric,
    *,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    kinks=None,
    mode: str = "full",
    **fields,
) -> TensorCheck:
    """A TensorCheck judged by the contract's rule; NaN in ``numeric`` = not checked."""
    a = np.asarray(analytic, dtype=float)
    n = np.asarray(numeric, dtype=float)
    checked = ~np.isnan(n)
    abs_error = np.where(checked, np.abs(a - n), np.nan)
    scale = np.maximum(np.abs(a), np.abs(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_error = np.where(scale > 0, abs_error / scale, 0.0)
    rel_error = np.where(checked, rel_error, np.nan)
    failed = checked & (np.nan_to_num(abs_error) > atol + rtol * np.nan_to_num(scale))
    kink_mask = np.zeros(a.shape, bool) if kinks is None else np.asarray(kinks, bool)
    layer, _, param = name.rpartition(".")
    return TensorCheck(
        name=name,
        layer=layer or None,
        param=param if layer else None,
        analytic=a,
        numeric=n,
        checked_mask=checked,
        failed_mask=failed,
        kink_mask=kink_mask,
        abs_error=abs_error,
        rel_error=rel_error,
        mode=mode,
        **fields,
    )


def passing_report(config: str = "configs/ok.yaml") -> Report:
    w = np.array([[0.044606, 0.094061], [0.011262, 0.068288]])
    x = np.linspace(-1, 1, 25).reshape(5, 5)
    return Report(
        config=config,
        name="ok-net",
        loss=0.125,
        settings=dict(SETTINGS),
        checks=[
            tensor_check("conv1.weight", w, w + 1e-12),
            tensor_check("conv1.bias", [0.0836], [0.0836]),
            tensor_check("input", x, x - 1e-12),
        ],
        expectations=[
            ExpectationResult("conv1.weight.grad", w.round(4), w, True, 4e-5),
        ],
        layers=[LayerVerdict("conv1", "conv2d", True, 1e-12, 1e-10, 0, 4)],
        total_s=0.0123,
        forward_passes=62,
    )


#: conv1.weight of the failing report: abs errors 0.0, 0.01, ..., 0.09 for flat
#: indices 0..9 (so index 9 is the worst); indices 10 and 11 were not checked.
FAIL_ANALYTIC = np.arange(12, dtype=float).reshape(3, 4)
FAIL_NUMERIC = FAIL_ANALYTIC + np.r_[np.arange(10) * 0.01, np.nan, np.nan].reshape(3, 4)
FAIL_KINKS = np.zeros((3, 4), bool)
FAIL_KINKS[0, 2] = True  # abs error 0.02


def failing_report(config: str = "configs/bad.yaml") -> Report:
    weight = tensor_check(
        "conv1.weight",
        FAIL_ANALYTIC,
        FAIL_NUMERIC,
        kinks=FAIL_KINKS,
        mode="sample",
        diagnosis="looks like a transposed kernel",
    )
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    inp = tensor_check("input", x, x * 1.5, consequence_of="conv1")
    fc = tensor_check("fc.weight", [[0.5, -0.5]], [[0.5, -0.5]])
    return Report(
        config=config,
        name="bad-net",
        loss=0.5,
        settings={**SETTINGS, "mode": "sample"},
        checks=[weight, inp, fc],
        expectations=[
            ExpectationResult(
                "conv1.weight.grad",
                np.array([1.0, 2.0]),
                np.array([1.0, 2.5]),
                False,
                0.5,
                mismatches=[Mismatch((1,), 2.0, 2.5, 0.05)],
                tolerance={"rule": "written", "description": "±0.05, from 1 written decimal"},
            ),
            ExpectationResult("loss", np.array(0.5), np.array(0.5), True, 0.0),
        ],
        layers=[
            LayerVerdict("conv1", "conv2d", False, 0.09, 0.05, 1, 12),
            LayerVerdict("fc", "dense", True, 1e-12, 1e-11, 0, 2),
        ],
        skipped=["fc.bias"],
        warnings=["float32: tolerances scaled by 100"],
        total_s=0.5,
        forward_passes=40,
    )


def tiny_problem(path: str = "net.yaml") -> Problem:
    """A Problem with tensors input, fc.weight, fc.bias (never run: the engine is faked)."""
    params = {"weight": np.zeros((2, 2)), "bias": np.zeros(2)}
    return Problem(
        path=path,
        name="tiny",
        seed=0,
        dtype="float64",
        x=np.zeros((1, 2)),
        batched=False,
        input_user_shape=(2,),
        layers=[LayerSpec("fc", "dense", Layer(), params, (2,), (2,))],
        loss=LossSpec("upstream", Loss(), None),
        settings=CheckSettings(),
    )
