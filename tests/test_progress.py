"""Progress that tells the truth (issues 13 and 14): the engine's snapshots
(engine/progress.py) and the time left estimated from them (cli/progress.py), as pure
functions of simulated checks whose true costs are known."""

from __future__ import annotations

import io
import pickle

import pytest
from rich.console import Console

from gradcheck_cli.cli.progress import Eta, LazyProgress, describe, format_left
from gradcheck_cli.engine.progress import CheckProgress, PlannedTensor, Tracker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def simulate(tensors, *, chunk_seconds=0.05, every=0.1):
    """Run a fake check through a real Tracker on a fake clock.

    tensors: (name, elements, seconds_per_element(k), weight), k the element's index in
    its tensor. Elements finish in chunks of about ``chunk_seconds``; the snapshots are
    thinned to the latest of every ``every`` seconds, as the worker's pipe sends them.
    Returns (snapshots, the clock when the last tensor ended)."""
    clock = Clock()
    sent: list[CheckProgress] = []
    plan = [PlannedTensor(name, n, weight) for name, n, _, weight in tensors]
    tracker = Tracker(plan, sent.append, clock=clock)
    for name, n, cost, _ in tensors:
        tracker.begin(name)
        k = 0
        while k < n:
            size = max(1, min(n - k, int(chunk_seconds / cost(k))))
            clock.now += sum(cost(j) for j in range(k, k + size))
            k += size
            tracker.tick(size)
    end = clock.now - 100.0
    tracker.stage("layers")
    thinned: dict[int, CheckProgress] = {}
    for s in sent:
        thinned[int(s.clock / every)] = s
    return list(thinned.values()), end


def constant(seconds):
    return lambda k: seconds


# A: 2,000 elements at 5 ms (10 s); B: 100,000 at 0.05 ms, 100x cheaper (5 s);
# C: 1,000 at 5 ms again (5 s).
COSTS = {"A": 5e-3, "B": 5e-5, "C": 5e-3}
SIZES = {"A": 2000, "B": 100_000, "C": 1000}


def three_tensors(weights=None):
    weights = weights or {t: 1.0 for t in COSTS}
    return [(t, SIZES[t], constant(COSTS[t]), weights[t]) for t in COSTS]


def run_eta(snapshots, end):
    """Feed every snapshot to an Eta; yield (snapshot, estimate, truth, eta)."""
    eta = Eta()
    for s in snapshots:
        eta.update(s)
        if s.tensor is not None:
            yield s, eta.remaining(), end - s.clock, eta


def test_each_tensor_is_costed_by_its_own_elements_once_measured():
    """Per-element costs 100x apart: the first tensor's cost is never carried over to a
    tensor that has been measured, and the estimate converges on the truth."""
    snapshots, end = simulate(three_tensors())
    for s, estimate, truth, eta in run_eta(snapshots, end):
        costs = eta.costs()
        if s.index >= 1:
            assert costs[0] == pytest.approx(COSTS["A"], rel=0.02)  # finished: exact
        if s.tensor.name == "B" and s.tensor_seconds > 0.5:
            assert costs[1] == pytest.approx(COSTS["B"], rel=0.05)
        if s.tensor.name == "C" and s.tensor_seconds > 0.5:
            assert costs[2] == pytest.approx(COSTS["C"], rel=0.05)
            assert estimate == pytest.approx(truth, rel=0.1, abs=0.2)


def test_the_elements_rate_would_be_wrong_by_far_where_this_estimate_is_right():
    """What the bar did before (every element costs the same): in B, whose elements are
    100x cheaper, it predicted the rest of B at A's rate."""
    snapshots, end = simulate(three_tensors(weights={"A": 100.0, "B": 1.0, "C": 100.0}))
    for s, estimate, truth, _ in run_eta(snapshots, end):
        if s.tensor.name == "B" and 1.0 < s.tensor_seconds < 1.5:
            naive = s.clock / s.done * (s.total - s.done)
            assert naive > 3 * truth
            assert estimate == pytest.approx(truth, rel=0.1)


def test_the_engines_weights_predict_the_tensors_not_yet_started():
    """With weights in the ratio of the true costs, the estimate is right from the first
    second on, before B and C are measured."""
    snapshots, end = simulate(three_tensors(weights={"A": 100.0, "B": 1.0, "C": 100.0}))
    seen = 0
    for s, estimate, truth, _ in run_eta(snapshots, end):
        if s.clock > 1.0 and truth > 0.5:
            assert estimate == pytest.approx(truth, rel=0.1), (s.tensor.name, s.clock)
            seen += 1
    assert seen > 100


def test_the_rate_follows_recent_throughput():
    """A tensor whose elements get twice as slow halfway (a busier machine): after one
    RECENT window at the new rate, the estimate is the new rate's."""
    slow_down = [("w", 10_000, lambda k: 1e-3 if k < 5000 else 2e-3, 1.0)]
    snapshots, end = simulate(slow_down)
    checked = 0
    for s, estimate, truth, _ in run_eta(snapshots, end):
        if s.tensor_done > 5000 and s.clock > 5.0 + 6.0 and truth > 0.5:
            assert estimate == pytest.approx(truth, rel=0.1)
            checked += 1
    assert checked > 10


def test_no_estimate_before_anything_is_measured_and_the_bar_fills_by_work():
    snapshots, end = simulate(three_tensors(weights={"A": 100.0, "B": 1.0, "C": 100.0}))
    eta = Eta()
    assert eta.remaining() is None and eta.fraction() == 0.0
    eta.update(CheckProgress(plan=snapshots[0].plan, index=0, clock=0.0))
    assert eta.remaining() is None  # A started, not one element done
    fractions = []
    for s in snapshots:
        eta.update(s)
        fractions.append(eta.fraction())
    assert fractions[-1] == 1.0
    # halfway through the time, about halfway along the bar (by elements it is at 2%)
    middle = min(snapshots, key=lambda s: abs(s.clock - end / 2))
    eta = Eta()
    for s in snapshots[: snapshots.index(middle) + 1]:
        eta.update(s)
    assert eta.fraction() == pytest.approx(0.5, abs=0.05)
    assert middle.done / middle.total < 0.05


def test_tracker_snapshots_are_whole_and_picklable():
    clock = Clock()
    sent = []
    plan = [PlannedTensor("input", 4, 2.0), PlannedTensor("fc.weight", 6), PlannedTensor("b", 0)]
    tracker = Tracker(plan, sent.append, clock=clock)
    clock.now += 5  # set-up before the first tensor is not counted
    tracker.begin("input")
    clock.now += 1
    tracker.tick(4)
    tracker.begin("fc.weight")
    clock.now += 3
    tracker.tick(2)
    last = sent[-1]
    assert (last.tensor.name, last.tensor_done, last.done, last.total) == ("fc.weight", 2, 6, 10)
    assert last.spent == (1.0,) and last.tensor_seconds == 3.0 and last.clock == 4.0
    assert pickle.loads(pickle.dumps(last)) == last
    tracker.stage("layers")
    end = sent[-1]
    assert end.tensor is None and end.stage == "layers" and end.spent == (1.0, 3.0, 0.0)
    assert end.done == end.total == 10
    counts = CheckProgress.counts(3, 7)
    assert (counts.done, counts.total) == (3, 7)


def test_describe_names_the_tensor_and_how_far_through_it():
    plan = (PlannedTensor("input", 24_576), PlannedTensor("conv1.weight", 432))
    s = CheckProgress(plan=plan, index=0, tensor_done=12_060)
    assert describe(s) == "input (1 of 2): 12,060/24,576"
    assert "own backward" in describe(CheckProgress(plan=plan, index=2, stage="layers"))
    assert format_left(96.4) == "0:01:36 left" and format_left(None) == "estimating…"


def test_the_bar_names_the_tensor_and_the_time_left():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120)
    snapshots, _ = simulate(three_tensors(weights={"A": 100.0, "B": 1.0, "C": 100.0}))
    with LazyProgress(console, enabled=True, delay=0.0) as bar:
        for s in snapshots[:50]:
            bar(s)
        bar._bar.refresh()
    out = stream.getvalue()
    assert "checking A (1 of 3):" in out and " left" in out
    quiet = io.StringIO()
    with LazyProgress(Console(file=quiet, force_terminal=True), enabled=False, delay=0.0) as bar:
        for s in snapshots[:50]:
            bar(s)
    assert quiet.getvalue() == ""


# --- after Ctrl-C: the partial summary says what was stopped, and never PASS ----------

NET = """\
seed: 0
input: [0.5, -1.0, 2.0, 0.25, 1.5]
layers:
  - {type: dense, name: fc, out_features: 4}
  - {type: tanh}
loss: {type: mse, target: [0.1, 0.2, 0.3, 0.4]}
"""


def interrupted_report(tmp_path):
    """A real check stopped by Ctrl-C part way through ``fc.weight`` (20 elements), as
    the engine's progress callback sees it: the snapshots themselves raise."""
    from gradcheck_cli.config import load_problem
    from gradcheck_cli.engine import CheckInterrupted, run_check

    (tmp_path / "net.yaml").write_text(NET)
    problem = load_problem(tmp_path / "net.yaml")
    seen = []

    def progress(snapshot):
        seen.append(snapshot)
        t = snapshot.tensor
        if t is not None and t.name == "fc.weight" and snapshot.tensor_done > 8:
            raise KeyboardInterrupt

    with pytest.raises(CheckInterrupted) as stop:
        run_check(problem, progress=progress)
    return stop.value.report, seen


def test_the_engine_names_the_tensor_in_progress_and_those_never_begun(tmp_path):
    report, seen = interrupted_report(tmp_path)
    assert [t.name for t in seen[0].plan] == ["input", "fc.weight", "fc.bias"]
    assert seen[0].plan[1].weight > 0
    names = [c.name for c in report.checks]
    assert names == ["input", "fc.weight"]
    partial = report.checks[1]
    assert partial.interrupted and 0 < partial.checked < 20 and not partial.passed
    assert report.interrupted and report.exit_code == 130
    assert any("stopped before 1 tensor(s) were checked: fc.bias" in w for w in report.warnings)


def test_an_interrupted_tensor_never_reads_pass(tmp_path):
    import json
    import xml.etree.ElementTree as ET

    from gradcheck_cli.render import Format
    from gradcheck_cli.render.table import Verbosity, render_report

    report, _ = interrupted_report(tmp_path)
    partial = report.checks[1]
    for verbosity in Verbosity:
        out = io.StringIO()
        Console(file=out, width=200, color_system=None).print(render_report(report, verbosity))
        text = out.getvalue()
        assert "PASS:" not in text and "INTERRUPTED (partial)" in text
        assert f"fc.weight stopped at {partial.checked} of 20" in text
        row = [line for line in text.splitlines() if line.lstrip().startswith("fc.weight ")]
        assert verbosity is Verbosity.QUIET or (row and "INTERRUPTED" in row[0])
        assert verbosity is Verbosity.QUIET or "PASS" not in row[0]
    data = json.loads(Format.JSON.render(report))
    assert data["passed"] is False and data["checks"][1]["passed"] is False
    assert data["checks"][1]["mode"] == "interrupted"
    suite = ET.fromstring(Format.JUNIT.render(report)).find("testsuite")
    case = suite.find("testcase[@name='fc.weight']")
    assert case.find("skipped") is not None and case.find("failure") is None
    assert suite.get("skipped") == "1" and suite.get("errors") == "1"  # and the run's <error>


def test_a_worker_killed_mid_tensor_is_named_with_how_far_it_got():
    from gradcheck_cli.cli.endings import ending
    from gradcheck_cli.supervise import Outcome, Stop, Watch

    plan = (PlannedTensor("input", 24_576), PlannedTensor("conv1.weight", 432))
    watch = Watch()
    watch.send("progress", CheckProgress(plan=plan, index=0, tensor_done=12_060))
    report, error = ending("net.yaml", watch, Outcome(stop=Stop.INTERRUPT, killed=True))
    assert error is None and report.interrupted and not report.passed
    assert any("(input: 12,060 of 24,576 elements done)" in w for w in report.warnings)
