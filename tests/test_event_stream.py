"""The worker's event stream (gradcheck_cli/stream.py): every message comes back bit for
bit; a large array sent again unchanged travels as a key, one changed in place travels
again; an array of one repeated value travels as that value; a message that failed to
pickle leaves nothing behind that a later one could refer to. And through a real
``gradcheck run``: the report that crossed the pipe is the in-process report."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck_cli import messages, stream
from gradcheck_cli.report import TensorCheck

ROOT = str(Path(__file__).resolve().parents[1])


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


def relay(sent):
    """Each message pickled by one Sender and read back by one Receiver, in order."""
    sender, receiver = stream.Sender(), stream.Receiver()
    sizes, out = [], []
    for m in sent:
        data = messages.joined(sender.dumps(m))
        sizes.append(len(data))
        out.append(receiver.loads(data))
    return out, sizes


dtypes = st.sampled_from(["f8", "f4", "f2", "i8", "i4", "u1", "?", "c16"])


@st.composite
def arrays(draw):
    dtype = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=70))
    kind = draw(st.sampled_from(["random", "filled", "nan_payload", "view"]))
    if kind == "filled":  # one repeated value (the compact path when large enough)
        one = draw(hnp.arrays(dtype, (), elements=None))
        return np.full(shape, one, dtype=dtype)
    a = draw(hnp.arrays(dtype, shape))
    if kind == "nan_payload" and a.dtype.kind == "f" and a.size:
        bits = a.reshape(-1).view(f"u{a.dtype.itemsize}")
        bits[:] = np.iinfo(bits.dtype).max  # every element the same NaN, payload and sign set
    if kind == "view" and a.ndim >= 2:
        return a[:, ::2] if draw(st.booleans()) else a.T  # not C-contiguous
    return a


@settings(max_examples=200, deadline=None)
@given(st.lists(arrays(), min_size=1, max_size=4), st.integers(0, 3))
def test_every_array_comes_back_bit_for_bit_sent_once_or_again(batch, repeats):
    # the same arrays in several messages, as checked tensors and then the report
    reports = [("report", {"arrays": batch, "n": k}) for k in range(repeats)]
    messages = [("checked", batch), *reports]
    out, _ = relay(messages)
    for a, b in zip(batch, out[0][1], strict=True):
        assert same_bits(a, b)
    for k in range(repeats):
        for a, b in zip(batch, out[k + 1][1]["arrays"], strict=True):
            assert same_bits(a, b)


def test_an_unchanged_large_array_travels_once():
    a = np.random.default_rng(0).standard_normal(100_000)  # 800 kB
    out, sizes = relay([("checked", a), ("report", [a, a])])
    assert sizes[0] > a.nbytes and sizes[1] < 1000
    assert out[1][1][0] is out[0][1] and out[1][1][1] is out[0][1]


def test_an_array_changed_in_place_travels_again():
    a = np.zeros(100_000)
    a[5] = 1.0
    sender, receiver = stream.Sender(), stream.Receiver()
    first = receiver.loads(messages.joined(sender.dumps(a)))
    a[7] = 2.0  # same object, new bytes
    data = messages.joined(sender.dumps(a))
    second = receiver.loads(data)
    assert len(data) > a.nbytes
    assert same_bits(second, a) and not same_bits(first, a)


def test_one_repeated_value_travels_as_that_value():
    for a in (np.full(100_000, np.nan), np.zeros((300, 400), dtype=bool), np.full(5000, -0.0)):
        data = messages.joined(stream.Sender().dumps(a))
        assert len(data) < 1000
        b = stream.Receiver().loads(data)
        assert same_bits(a, b) and b.flags.c_contiguous and b.flags.writeable


def test_a_message_that_failed_to_pickle_leaves_no_key_behind():
    a = np.arange(100_000.0)
    sender, receiver = stream.Sender(), stream.Receiver()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        sender.dumps([a, lambda: None])  # never written: the receiver never sees it
    # must send a whole again, not a key the receiver lacks
    data = messages.joined(sender.dumps([a]))
    assert same_bits(receiver.loads(data)[0], a)


def test_a_tensor_check_and_a_report_holding_it_come_back_equal():
    rng = np.random.default_rng(1)
    analytic = rng.standard_normal((300, 784))
    check = TensorCheck.unchecked("fc1.weight", analytic, "fast")
    out, sizes = relay([("checked", check), ("report", {"checks": [check]})])
    assert sizes[0] < analytic.nbytes + 10_000  # the all-NaN and all-False arrays are tiny
    assert sizes[1] < 2_000
    for got in (out[0][1], out[1][1]["checks"][0]):
        for f in ("analytic", "numeric", "checked_mask", "failed_mask", "error_bound"):
            assert same_bits(getattr(got, f), getattr(check, f))
    assert pickle.loads(pickle.dumps(check)).name == check.name


@pytest.mark.parametrize("mode", [[], ["--fast"]])
def test_a_supervised_run_reports_what_an_in_process_run_reports(tmp_path, mode):
    """Wide layers (arrays above the sharing size), through the real worker's pipe."""
    rng = np.random.default_rng(3)
    np.savez(
        tmp_path / "w.npz",
        x=rng.standard_normal(300),
        w=rng.standard_normal((40, 300)) * 0.1,
        b=rng.standard_normal(40) * 0.1,
        t=rng.standard_normal(40) * 0.5,
    )
    (tmp_path / "net.yaml").write_text(
        "input: {file: w.npz, key: x}\n"
        "layers:\n"
        "- {type: dense, name: fc, out_features: 40, weight: {file: w.npz, key: w},"
        " bias: {file: w.npz, key: b}}\n"
        "- {type: tanh}\n"
        "loss: {type: mse, target: {file: w.npz, key: t}}\n"
    )
    reports = {}
    for supervise in ("1", "0"):
        out = tmp_path / f"r{supervise}.json"
        done = subprocess.run(
            [sys.executable, "-m", "gradcheck_cli", "run", "net.yaml", "-q", "--jobs", "1"]
            + mode
            + ["--json", str(out)],
            cwd=tmp_path,
            env={"GRADCHECK_SUPERVISE": supervise, "PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        reports[supervise] = json.loads(out.read_text())
    for r in reports.values():
        r.pop("total_s", None)
        r.pop("timing", None)
    assert reports["1"]["checks"] == reports["0"]["checks"]
    assert reports["1"]["layers"] == reports["0"]["layers"]
