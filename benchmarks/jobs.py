"""``--jobs 1`` against ``--jobs N`` (default 2) on issue 14's sweep, whole processes.

    python benchmarks/jobs.py [--repeat 3] [--jobs 2] [--only lenet5_b8 ...] [--json out.json]

The sweep's networks are written to a temporary folder, every weight drawn from the
config's seed (float64, full element-wise check, softmax cross-entropy):

=================  =============================================================
name               network
=================  =============================================================
mlp_784_300_100    dense 784-300-100-10 with tanh, batch 1
lenet5_b1          LeNet-5 on 1x28x28, batch 1
lenet5_b8          the same, batch 8
cnn32_b1           conv 16, conv 32 (3x3, padding 1, relu, max pool 2), dense 10
                   on 3x32x32, batch 1
mlp_784_100_b8     dense 784-100-10 with tanh, batch 8
cnn32_b8           the same CNN, batch 8
=================  =============================================================

For each network, ``gradcheck run CONFIG -q --jobs 1`` and ``... --jobs N`` run in turn,
``--repeat`` times, the order swapped every round (so that neither always runs first on
a machine whose load changes). The script prints the median wall time of each, their
ratio, the median of each round's own ratio (``paired``: the two runs of a round are
next to each other in time, so that a machine whose speed drifts between rounds moves
both alike), the CPU seconds of each whole process tree, and the load average before
and after. First, once per network, both write their JSON reports, which are compared
apart from ``timing``: the script stops if they differ (the timed runs write no report,
whose rendering is the same serial work for both).

A second process can only pay when a second core is free. On a machine shared with
other users' sessions (Linux gives each session an equal share of the CPUs, whatever
its nice value, where ``/proc/sys/kernel/sched_autogroup_enabled`` is 1), ``--wait-idle
SECONDS`` waits before each run until the rest of the machine has used less than a
tenth of a CPU for half a second; the ``busy`` column is the most CPUs found busy
before a run (``-`` when not waiting). On a virtual machine the host may also run other
guests on the same cores: ``steal`` is the share of the CPUs' busy time it took while a
network's rounds ran (``/proc/stat``), time a process here was ready and waited, which
stretches wall times and not CPU seconds. Nothing here is a test: timings are never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the networks of issue 14, as benchmarks/sweep.py builds them (here with seeded weights)
from sweep import (  # noqa: E402
    CNN,
    LENET,
    byte_compiled,
    cpu_times,
    mlp,
    package_folder,
    stolen,
    stop_children_when_stopped,
)


def config(name: str, shape: list[int], layers: list[dict], batch: int) -> dict:
    given: dict = {"shape": ([batch] if batch > 1 else []) + shape}
    if batch > 1:
        given["batched"] = True
    target = [k % 10 for k in range(batch)] if batch > 1 else 3
    loss = {"type": "softmax_cross_entropy", "target": target}
    return {"name": name, "seed": 0, "input": given, "layers": layers, "loss": loss}


SWEEP = {
    "mlp_784_300_100": config("mlp", [784], mlp([300, 100, 10]), 1),
    "lenet5_b1": config("lenet", [1, 28, 28], LENET, 1),
    "lenet5_b8": config("lenet", [1, 28, 28], LENET, 8),
    "cnn32_b1": config("cnn", [3, 32, 32], CNN, 1),
    "mlp_784_100_b8": config("mlp", [784], mlp([100, 10]), 8),
    "cnn32_b8": config("cnn", [3, 32, 32], CNN, 8),
}


def busy_cpus(seconds: float = 0.5) -> float:
    """CPUs busy on the whole machine over ``seconds`` (from /proc/stat; 0 elsewhere)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
        return sum(fields) - fields[3] - fields[4], sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError):
        return 0.0
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


def wait_idle(limit: float) -> float:
    """Wait up to ``limit`` seconds for the machine to be idle; the CPUs busy then."""
    deadline = time.monotonic() + limit
    busy = busy_cpus()
    while busy > 0.1 and time.monotonic() < deadline:
        busy = busy_cpus()
    return busy


def run(config_path: Path, jobs: int, report: Path | None) -> tuple[float, float, dict | None]:
    """(wall seconds, CPU seconds of the process tree, report without timing)."""
    written = ["--json", str(report)] if report is not None else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "run", str(config_path), "-q"]
        + ["--jobs", str(jobs), *written],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        sys.exit(f"gradcheck exited {proc.returncode} on {config_path.name}:\n{proc.stderr}")
    if report is None:
        return wall, cpu, None
    data = json.loads(report.read_text())
    data.pop("timing")
    return wall, cpu, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per network")
    parser.add_argument("--jobs", type=int, default=2, help="compared with --jobs 1")
    parser.add_argument("--only", nargs="*", choices=list(SWEEP), help="these networks")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for the machine to be idle",
    )
    args = parser.parse_args()
    stop_children_when_stopped()
    byte_compiled(package_folder())
    names = args.only or list(SWEEP)
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f}", flush=True)
        print(
            f"{'network':<16} {'elements':>9} {'jobs 1 s':>9} {f'jobs {args.jobs} s':>9}"
            f" {'ratio':>6} {'paired':>6} {'cpu 1 s':>8} {f'cpu {args.jobs} s':>8} {'busy':>5}"
            f" {'steal':>5}  identical"
        )
        for name in names:
            path = tmp / f"{name}.yaml"
            path.write_text(json.dumps(SWEEP[name]))  # JSON is YAML
            runs: dict[int, list[tuple[float, float]]] = {1: [], args.jobs: []}
            reports = {jobs: run(path, jobs, tmp / f"{name}.{jobs}.json")[2] for jobs in runs}
            if reports[1] != reports[args.jobs]:
                sys.exit(f"{name}: the reports of --jobs 1 and --jobs {args.jobs} differ")
            elements = sum(c["checked"] for c in reports[1]["checks"])  # type: ignore[index]
            busy: list[float] = []
            ticks = cpu_times()
            for round_ in range(args.repeat):
                order = (1, args.jobs) if round_ % 2 == 0 else (args.jobs, 1)
                for jobs in order:
                    if args.wait_idle:
                        busy.append(wait_idle(args.wait_idle))
                    wall, cpu, _ = run(path, jobs, None)
                    runs[jobs].append((wall, cpu))
            one = statistics.median(w for w, _ in runs[1])
            many = statistics.median(w for w, _ in runs[args.jobs])
            cpu_one = statistics.median(c for _, c in runs[1])
            cpu_many = statistics.median(c for _, c in runs[args.jobs])
            paired = statistics.median(
                a / b for (a, _), (b, _) in zip(runs[1], runs[args.jobs], strict=True)
            )
            steal = stolen(ticks, cpu_times())
            results[name] = {
                "steal": steal,
                "elements": elements,
                "runs": {str(k): v for k, v in runs.items()},
                "paired_ratio": paired,
                "busy_before_runs": busy,
            }
            seen = f"{max(busy):.2f}" if busy else "-"
            taken = f"{100 * steal:.0f}%" if steal is not None else "-"
            print(
                f"{name:<16} {elements:>9,} {one:>9.2f} {many:>9.2f} {one / many:>5.2f}x"
                f" {paired:>5.2f}x"
                f" {cpu_one:>8.2f} {cpu_many:>8.2f} {seen:>5} {taken:>5}  yes",
                flush=True,
            )
    load_after = os.getloadavg()
    print(
        f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} "
        f"({os.cpu_count()} CPUs; medians of {args.repeat} interleaved rounds)"
    )
    if args.json:
        args.json.write_text(json.dumps({"load": [load_before, load_after], **results}, indent=1))


if __name__ == "__main__":
    main()
