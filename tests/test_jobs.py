"""``--jobs N``: the same report whatever N is, on every kind of check, and helper
processes that never outlive a run nor hide what killed it (issue 14).

The reports compared are real runs: the JSON of a check with helpers against the JSON of
the same check in one process, byte for byte apart from ``timing``. ``GRADCHECK_JOBS_EAGER``
makes the helpers take chunks from the start, however small the check (the rule that
keeps small checks in one process is tested on its own). Helper pools are shared by the
in-process tests, so that each starts its processes once.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from installed import GRADCHECK

import gradcheck_cli as gc
import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli import jobs
from gradcheck_cli.api import load
from gradcheck_cli.engine import run_check, schedule
from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.pool import HelperPool

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
MUTANTS = Path(__file__).resolve().parent / "mutants"

#: A plugin for the checks below: ``wiggle`` is a forward of so high a frequency that
#: some elements are resolved by no step (inconclusive) and others fail, and ``picky``
#: raises on one perturbed value, so that one chunk fails. ``evil`` misbehaves,
#: as the environment variable EVIL says, only in a process other than the one that ran
#: the analytic pass (a helper): it hangs, crashes or exits there.
PLUGIN = """\
import os, time, zlib
import numpy as np
import gradcheck_cli as gc

MARK = {mark!r}


@gc.register_layer("wiggle")
class Wiggle(gc.Layer):
    # y = x + a sin(k x), of a frequency that no finite step resolves everywhere
    batch_independent = True

    def __init__(self, amplitude=1e-9, frequency=1e12):
        self.a, self.k = amplitude, frequency

    def forward(self, x, params):
        return x + self.a * np.sin(self.k * x), x

    def backward(self, dy, x, params):
        return dy * (1 + self.a * self.k * np.cos(self.k * x)), {{}}


@gc.register_layer("picky")
class Picky(gc.Layer):
    batch_independent = True

    def forward(self, x, params):
        if np.any(x > 0.9 + 1e-7):  # the first step's +h of 0.9, not the noise probes
            raise ValueError("a value above 0.9")
        return x * 2.0, None

    def backward(self, dy, cache, params):
        return dy * 2.0, {{}}


@gc.register_layer("evil")
class Evil(gc.Layer):
    param_names = ("w",)

    def init_params(self, in_shape, rng):
        return {{"w": rng.uniform(0.5, 1.5, 400)}}

    def forward(self, x, params):
        mode = os.environ.get("EVIL", "")
        if mode == "slow":  # everywhere: a check that takes a few seconds
            time.sleep(0.005)
        if not os.path.exists(MARK):
            with open(MARK, "w") as f:
                f.write(str(os.getpid()))
        elif int(open(MARK).read()) != os.getpid():
            with open(MARK + "." + str(os.getpid()), "w") as f:
                f.write("helper")
            if mode == "hang":
                while True:
                    time.sleep(0.05)
            if mode == "segv":
                os.kill(os.getpid(), 11)
            if mode == "exit":
                os._exit(0)
        return x * params["w"].mean(), x

    def backward(self, dy, cache, params):
        return dy * params["w"].mean(), {{"w": np.full(400, (dy * cache).sum() / 400)}}
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("jobs")
    (folder / "jobs_layers.py").write_text(PLUGIN.format(mark=str(folder / "mark")))
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def cases(plugin_dir) -> dict[str, tuple[Path, dict]]:
    """Configs of every kind, each with the options to check it with."""
    f32 = write(
        plugin_dir,
        "f32.yaml",
        "dtype: float32\nseed: 3\ninput: {shape: [2, 3, 6, 6], batched: true}\n"
        "layers:\n  - {type: conv2d, name: c, out_channels: 3, kernel_size: 3}\n"
        "  - {type: tanh}\n  - {type: flatten}\n  - {type: dense, name: fc, out_features: 4}\n"
        "loss: {type: softmax_cross_entropy, target: [1, 3]}\n",
    )
    wiggle = write(
        plugin_dir,
        "wiggle.yaml",
        "plugins: [jobs_layers.py]\nseed: 1\ninput: {shape: [6]}\n"
        "layers:\n  - {type: dense, name: fc, out_features: 5}\n  - {type: wiggle}\n"
        "loss: {type: mse, target: [0, 0, 0, 0, 0]}\n",
    )
    picky = write(
        plugin_dir,
        "picky.yaml",
        "plugins: [jobs_layers.py]\ninput: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n"
        "layers:\n  - {type: picky}\n  - {type: dense, name: fc, out_features: 2}\n"
        "loss: {type: mse, target: [0, 0]}\n",
    )
    return {
        "stack, expectations": (CONFIGS / "example_b_network.yaml", {}),
        "batched": (CONFIGS / "example_d_batched.yaml", {}),
        "graph": (CONFIGS / "residual_block.yaml", {}),
        "shared weights": (CONFIGS / "rnn_unrolled.yaml", {}),
        "float32": (f32, {}),
        "failing, blamed": (MUTANTS / "conv_dw_factor.yaml", {}),
        "sample": (CONFIGS / "example_d_stack.yaml", {"sample": 7, "seed": 5}),
        "fast": (MUTANTS / "conv_dw_factor.yaml", {"fast": True}),
        "inconclusive": (wiggle, {}),
        "a plugin's error in one chunk": (picky, {}),
    }


def outcome(path: Path, **options) -> dict:
    """The JSON report without timing, or the error a check raised, as data."""
    try:
        report = gc.check(path, **options)
    except GradcheckError as e:
        return {"error": type(e).__name__, "message": str(e)}
    data = json.loads(report.to_json())
    data.pop("timing")
    return data


@pytest.fixture(autouse=True)
def eager(monkeypatch):
    monkeypatch.setenv(jobs.EAGER_ENV, "1")


@pytest.fixture(scope="module")
def pools():
    """{N: (executor, jobs)} for N processes in all: this one and N - 1 helpers."""
    made = {2: HelperPool(1), 3: HelperPool(2)}
    yield {n: (pool, n - 1) for n, pool in made.items()}
    for pool in made.values():
        pool.shutdown()


pytestmark = pytest.mark.usefixtures("clean_registry")


def test_the_report_is_the_same_with_1_2_and_3_processes(cases, pools):
    seen = {}
    for name, (path, options) in cases.items():
        seen[name] = alone = outcome(path, jobs=1, **options)
        for n, (pool, inflight) in pools.items():
            shared = outcome(path, executor=pool, jobs=inflight, **options)
            assert shared == alone, f"{name}: {n} processes"
    # the cases are what they say
    assert seen["failing, blamed"]["exit_code"] == 1
    assert [x["name"] for x in seen["failing, blamed"]["layers"] if not x["passed"]] == ["mutant"]
    assert any(c["inconclusive"] for c in seen["inconclusive"]["checks"])
    assert seen["a plugin's error in one chunk"]["error"] == "PluginError"
    assert "above 0.9" in seen["a plugin's error in one chunk"]["message"]
    raised = [n for n, o in seen.items() if isinstance(o.get("error"), str)]
    assert raised == ["a plugin's error in one chunk"]
    assert seen["sample"]["checks"][0]["checked"] == 7
    assert seen["float32"]["settings"]["dtype"] == "float32"


def test_helpers_really_judge_chunks(cases, pools):
    """The pools above are not idle: their processes judge chunks (and count them)."""
    counted = Counting(pools[3][0])
    path, _ = cases["batched"]
    shared = outcome(path, executor=counted, jobs=2)
    assert shared == outcome(path, jobs=1) and shared["passed"], shared
    assert counted.submitted >= 2


class Counting(concurrent.futures.Executor):
    def __init__(self, inner):
        self.inner = inner
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)


def test_a_thread_pool_rebuilds_the_problem_and_gives_the_same_report(cases):
    """Any Executor will do; here one whose workers share this process's modules."""
    path, _ = cases["graph"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        counted = Counting(pool)
        assert outcome(path, executor=counted, jobs=2) == outcome(path, jobs=1)
    assert counted.submitted >= 2


class Slow(concurrent.futures.Executor):
    """Helpers that take their time: this process judges its own chunks first, then
    waits for theirs, and runs the isolation ahead meanwhile."""

    def __init__(self, inner):
        self.inner = inner

    def submit(self, fn, /, *args, **kwargs):
        def late():
            time.sleep(0.2)
            return fn(*args, **kwargs)

        return self.inner.submit(late)


@pytest.mark.parametrize("name", ["batched", "graph", "failing, blamed", "sample"])
def test_the_isolation_run_ahead_gives_the_report_of_one_process(cases, name, monkeypatch):
    """Helpers that cannot take the isolation: while this process waits for their last
    chunks it isolates the layers ahead (engine/isolation.py ``Ahead``): taken when every
    tensor passed, dropped when one failed (the isolation then goes element-wise in its
    turn), the report is the one a single process gives, layers and all."""
    from gradcheck_cli.engine import isolation

    monkeypatch.setattr(jobs.ExecutorHelpers, "isolate", None)
    ran, taken = [], []
    run, take = isolation.Ahead.run, isolation.Ahead.take

    def spy_run(self):
        run(self)
        ran.append(self.layers is not None)

    def spy_take(self, how):
        got = take(self, how)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(isolation.Ahead, "run", spy_run)
    monkeypatch.setattr(isolation.Ahead, "take", spy_take)
    path, options = cases[name]
    alone = outcome(path, jobs=1, **options)
    assert ran == [] and taken == [False]  # one process never waits
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        shared = outcome(path, executor=Slow(pool), jobs=1, **options)
    assert shared == alone
    # it ran once (for a failure still out with a helper, too: then dropped)
    assert len(ran) == 1 and taken == [False, alone["passed"]]
    if alone["passed"]:
        assert ran == [True]


@pytest.mark.parametrize("name", ["batched", "graph", "failing, blamed", "sample", "float32"])
@pytest.mark.parametrize("slow", [False, True])
def test_the_isolation_handed_to_a_helper_gives_the_report_of_one_process(
    cases, name, slow, monkeypatch
):
    """Helpers that take the isolation: it goes to them as they start, before their
    chunks, and runs there alongside the element-wise check; taken when every tensor
    passed, dropped when one failed, and the report is the one a single process gives,
    layers and all, whether the helper is quick or slow."""
    from gradcheck_cli.engine import isolation

    sent, taken = [], []
    remote, take = jobs.isolate_remote, isolation.Ahead.take

    def spy_remote(*args):
        sent.append(args[3].mode)  # the check's settings travel with it
        return remote(*args)

    def spy_take(self, how):
        got = take(self, how)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(jobs, "isolate_remote", spy_remote)
    monkeypatch.setattr(isolation.Ahead, "take", spy_take)
    path, options = cases[name]
    alone = outcome(path, jobs=1, **options)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        shared = outcome(path, executor=Slow(pool) if slow else pool, jobs=1, **options)
    assert shared == alone
    assert len(sent) == 1 and taken == [False, alone["passed"]]
    assert sent[0].value == ("sample" if "sample" in options else "full")


def test_an_isolation_that_fails_in_a_helper_runs_here(cases, monkeypatch):
    """A helper that cannot run the isolation (it died, or raised) costs nothing but
    time: it runs here in its turn, with the same report."""

    def broken(*args):
        raise RuntimeError("this helper broke")

    monkeypatch.setattr(jobs, "isolate_remote", broken)
    path, options = cases["batched"]
    alone = outcome(path, jobs=1, **options)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert outcome(path, executor=pool, jobs=1, **options) == alone
    assert alone["passed"] and alone["layers"]


def test_layers_registered_only_here_leave_the_work_to_this_process(pools):
    """A helper cannot load a type registered in this process (no plugin lists it): the
    check goes on without it, with the same report."""

    @gc.register_layer("scale_here")
    class Scale(gc.Layer):
        param_names = ("gain",)

        def init_params(self, in_shape, rng):
            return {"gain": rng.uniform(0.5, 1.5, size=in_shape)}

        def forward(self, x, params):
            return x * params["gain"], x

        def backward(self, dy, x, params):
            return dy * params["gain"], {"gain": (dy * x).sum(axis=0)}

    network = {
        "input": {"value": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], "batched": True},
        "layers": [{"type": "scale_here", "name": "scale"}, {"type": "tanh"}],
        "loss": {"type": "mse", "target": [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]},
    }
    alone = json.loads(gc.check(network, jobs=1).to_json())
    shared = json.loads(gc.check(network, executor=pools[2][0], jobs=1).to_json())
    alone.pop("timing")
    shared.pop("timing")
    assert shared == alone and alone["passed"] is True


def test_a_small_check_starts_no_helper(monkeypatch, tmp_path):
    """Without the eager switch, a check whose work is far below a helper's start-up
    never hands a chunk out."""
    monkeypatch.delenv(jobs.EAGER_ENV)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        counted = Counting(pool)
        helpers = jobs.ExecutorHelpers(counted, jobs.Source.of("unused"), 1, startup=1.0)
        run_check(load(CONFIGS / "example_d_stack.yaml"), helpers=helpers)
    assert counted.submitted == 0


class Prepared:
    """Helpers (engine/schedule.py) that only note the ``prepare`` hint."""

    def __init__(self, workers: int = 1):
        self.workers, self.prepared = workers, 0

    def prepare(self):
        self.prepared += 1


@pytest.mark.parametrize(
    ("values", "hinted"),
    [
        ({}, True),
        ({"mode": "sample", "sample": 5}, True),
        ({"mode": "fast"}, False),
        ({"method": "taylor"}, False),
    ],
)
def test_the_prepare_hint_goes_out_only_for_chunked_checks_large_enough(values, hinted):
    """Helpers are asked to load the config beside this process only when the check
    cuts chunks (central differences, full or sample mode) of PREPARE_ELEMENTS
    elements or more; never when there are no helpers."""
    from gradcheck_cli.options import merge

    problem = load(CONFIGS / "example_d_stack.yaml")
    problem = replace(problem, settings=merge(problem.settings, values))
    for elements, want in (
        (schedule.PREPARE_ELEMENTS, hinted),
        (schedule.PREPARE_ELEMENTS - 1, False),
    ):
        helpers = Prepared()
        schedule.prepare_early(problem, elements, helpers)
        assert helpers.prepared == int(want), (values, elements)
    schedule.prepare_early(problem, 10**9, None)  # no helpers: nothing to hint
    schedule.prepare_early(problem, 10**9, Prepared(workers=0))


def test_a_helper_that_loaded_ahead_gives_the_same_report(monkeypatch, cases):
    """The prepare hint: the helpers this object makes load the config and run the
    analytic pass before the setup is known, and the chunks then use what they loaded
    (one load per check); the report is the one of a single process."""
    monkeypatch.setattr(schedule, "PREPARE_ELEMENTS", 0)
    path, _ = cases["graph"]
    loads, rebuilt = [], []
    real_load, real_rebuild = jobs._load, schedule.rebuild_all
    monkeypatch.setattr(jobs, "_load", lambda source: loads.append(source) or real_load(source))

    def rebuild_all(problem, setup, passed=None):
        rebuilt.append(passed is not None)
        return real_rebuild(problem, setup, passed)

    monkeypatch.setattr(schedule, "rebuild_all", rebuild_all)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        counted = Counting(pool)
        source = jobs.Source.of(path)
        helpers = jobs.ExecutorHelpers(None, source, 1, eager=True, make=lambda: counted)
        problem = load(path)
        shared = run_check(problem, helpers=helpers)
    alone = run_check(load(path))
    # one load, by the hint, whose analytic pass the chunks' rebuild used
    assert counted.submitted > 1 and len(loads) == 1 and rebuilt == [True]
    assert json.loads(shared.to_json()) | {"timing": None} == json.loads(alone.to_json()) | {
        "timing": None
    }


# --- the rule behind it: every element's verdict is its own ---------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_cutting_of_a_tensor_gives_the_verdicts_of_one_call(data):
    """Chunks of any sizes, judged in any order, on a second objective rebuilt from the
    same config with the first one's noise and gradient scale, put back together give
    the arrays of one call on the whole tensor, bit for bit."""
    from gradcheck_cli.engine.check import tolerances
    from gradcheck_cli.engine.compare import ElementVerdict
    from gradcheck_cli.engine.elements import _joined
    from gradcheck_cli.engine.verdict import gradient_scale, judge_elements, tensor_noise

    path = data.draw(st.sampled_from(["example_d_batched.yaml", "residual_block.yaml"]))
    problem = load(CONFIGS / path)
    tol = tolerances(problem)[0]
    whole = schedule.rebuild(problem, schedule.Setup.of(problem, _objective(problem)))
    tensor = data.draw(st.sampled_from(problem.tensor_names()))
    size = whole.tensors()[tensor].size
    index = np.arange(size)
    analytic = np.asarray(whole.analytic[tensor]).reshape(-1)
    one = judge_elements(whole, tensor, index, analytic, tol, 1 << 30)
    rho = tensor_noise(whole, tensor, tol.eps, 1 << 30)

    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, size - 1)), max_size=6)))
    bounds = [0, *[c for c in cuts if c < size], size]
    pieces = [index[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    order = data.draw(st.permutations(range(len(pieces))))
    other = load(CONFIGS / path)
    elsewhere = schedule.rebuild(other, schedule.Setup.of(problem, whole))
    verdicts: dict[int, ElementVerdict] = {}
    for k in order:
        chunk = schedule.Chunk(
            k,
            tensor,
            pieces[k],
            analytic[pieces[k]],
            rho,
            gradient_scale(whole, tensor),
            tol,
            1 << 30,
        )
        verdicts[k] = schedule.judge_chunk(elsewhere, chunk).verdict
    joined = _joined([verdicts[k] for k in range(len(pieces))])
    names = ("numeric", "abs_error", "rel_error", "failed", "kink", "jump", "inconclusive", "bound")
    for name in names:
        assert np.array_equal(getattr(joined, name), getattr(one, name), equal_nan=True), name


def _objective(problem):
    from gradcheck_cli.engine.objective import NetworkObjective
    from gradcheck_cli.engine.passes import analytic_pass, problem_params

    trace, grads = analytic_pass(problem, problem_params(problem))
    return NetworkObjective.build(problem, trace, grads, problem_params(problem, np.float64))


# --- the command line: --jobs, and helpers that misbehave ------------------------------


def gradcheck(*args, cwd, env=None, timeout=60) -> subprocess.CompletedProcess:
    environment = {**os.environ, "NO_COLOR": "1", jobs.EAGER_ENV: "1", **(env or {})}
    for name in ("GRADCHECK_DEBUG", "GRADCHECK_SUPERVISE"):
        environment.pop(name, None)
    return subprocess.run(
        [*GRADCHECK, *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_jobs_on_the_command_line_gives_the_same_json(tmp_path):
    """``gradcheck run --jobs 2`` (a helper loading the plugin itself) against the same
    check in one process."""
    config = MUTANTS / "conv_dw_factor.yaml"
    reports = {}
    for n in (1, 2):
        proc = gradcheck("run", config, "--jobs", str(n), "-q", "--json", "r.json", cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        reports[n] = json.loads((tmp_path / "r.json").read_text())
        reports[n].pop("timing")
    assert reports[2] == reports[1]
    assert reports[2]["exit_code"] == 1 and reports[2]["explain"] is not None
    # and the command's report is the API's, apart from the explain section it adds
    assert {**reports[2], "explain": None} == outcome(config, jobs=1)


@pytest.fixture
def evil(tmp_path) -> Path:
    (tmp_path / "jobs_layers.py").write_text(PLUGIN.format(mark=str(tmp_path / "mark")))
    (tmp_path / "net.yaml").write_text(
        "plugins: [jobs_layers.py]\ninput: [0.5, -1.0, 2.0]\n"
        "layers: [{type: evil, name: evil}]\nloss: {type: mse, target: [0, 0, 0]}\n"
    )
    return tmp_path


def helper_pids(folder: Path) -> list[int]:
    return [int(p.name.rsplit(".", 1)[1]) for p in folder.glob("mark.*")]


def gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_helper_that_crashes_is_named_with_its_call_and_leaves_nothing(evil):
    proc = gradcheck(
        "run", "net.yaml", "--jobs", "2", "--json", "r.json", cwd=evil, env={"EVIL": "segv"}
    )
    assert proc.returncode == 3, proc.stderr
    line = "a helper process (--jobs) was killed by SIGSEGV"
    assert line in proc.stderr and "while layer 'evil' was running forward" in proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((evil / "r.json").read_text())
    assert report["passed"] is False and report["error"]["kind"] == "crashed"
    pids = helper_pids(evil)
    assert pids and gone(pids)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exit", "hang"])
def test_a_helper_that_exits_or_hangs_gives_a_verdict_and_leaves_nothing(evil, mode):
    args = ["run", "net.yaml", "--jobs", "3", "--json", "r.json"]
    if mode == "hang":
        args += ["--timeout", "4"]
    started = time.monotonic()
    proc = gradcheck(*args, cwd=evil, env={"EVIL": mode})
    assert time.monotonic() - started < 30
    assert proc.returncode == 3, proc.stderr
    if mode == "hang":
        assert "timed out after 4 s while layer 'evil' was running forward" in proc.stderr
    else:
        assert "a helper process (--jobs) exited with status 0" in proc.stderr
    assert json.loads((evil / "r.json").read_text())["passed"] is False
    pids = helper_pids(evil)
    assert pids and gone(pids)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_a_run_with_helpers_writes_the_partial_report_and_leaves_nothing(evil, signum):
    env = {**os.environ, "NO_COLOR": "1", jobs.EAGER_ENV: "1", "EVIL": "slow"}
    env.pop("GRADCHECK_SUPERVISE", None)
    proc = subprocess.Popen(
        [*GRADCHECK, "run", "net.yaml", "--jobs", "3", "--json", "r.json"],
        cwd=evil,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(helper_pids(evil)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == (143 if signum == signal.SIGTERM else 130), err
    report = json.loads((evil / "r.json").read_text())
    assert report["interrupted"] is True and report["passed"] is False
    assert report["checks"] and report["checks"][-1]["mode"] == "interrupted"
    pids = helper_pids(evil)
    assert len(pids) >= 2 and gone(pids)


# --- a Dask cluster ------------------------------------------------------------------


def test_a_local_dask_cluster_gives_the_same_report(cases):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        counted = Counting(client.get_executor())
        for name in ("failing, blamed", "graph"):
            path, options = cases[name]
            assert outcome(path, executor=counted, jobs=2, **options) == outcome(
                path, jobs=1, **options
            ), name
    assert counted.submitted >= 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


@pytest.mark.parametrize("pidfd", [True, False])
def test_waiting_for_a_process_wakes_as_it_exits_and_never_reaps_it(pidfd, monkeypatch):
    """wire.wait_exit: how the supervisor and a pool wait for processes that are ending.
    It returns as the child exits (not at the next poll), times out on one that lives,
    and leaves the exited child unreaped (its pid and group stay its own until the
    caller reaps it), with a pidfd and without one."""
    from gradcheck_cli import wire

    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    try:
        started = time.monotonic()
        assert wire.wait_exit(child.pid, 0.05) is False
        assert time.monotonic() - started >= (0.04 if pidfd else 0.0)
        if pidfd:  # one wait of a minute returns as the child ends, 0.3 s in
            assert wire.wait_exit(child.pid, 60.0) is True
            assert time.monotonic() - started < 30
        else:  # a short look each time
            deadline = time.monotonic() + 30
            while not wire.wait_exit(child.pid, 60.0):
                assert time.monotonic() < deadline
        assert wire.exited(child.pid)
        # not reaped: the status is still there to collect
        assert os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG) is not None
        assert wire.wait_exit(child.pid, 0.0) is True  # reaped now: gone counts as exited
    finally:
        child.kill()
        child.wait()
