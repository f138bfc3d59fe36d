"""The sweep of issue 14: gradcheck against torch.autograd.gradcheck on six networks.

    python benchmarks/sweep.py [--networks all|NAME,...] [--repeats 3] [--sample 20]
                               [--torch-repeats 1] [--python-torch PYTHON | --no-torch]
                               [--torch-threads default|N] [--json PATH]

Each network is written into a temporary folder as a YAML config with explicit weights
(``weights.npz``: a seeded uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) draw, as PyTorch
initialises, and a seeded input in [0, 1)), so that both checkers see the same network,
weights, input and targets. For each network, in one run:

- gradcheck, whole processes (``python -m gradcheck_cli run CONFIG -q``): the full
  check, ``--fast`` and ``--sample K``, each the median of ``--repeats`` runs, with
  gradcheck's default options (``--jobs`` included, where it exists);
- ``torch.autograd.gradcheck`` (float64, ``fast_mode=False``, eps 1e-6, over the input
  and every parameter), whole process, the median of ``--torch-repeats`` runs, with the
  Python that has torch (``--python-torch``, default: this one if it imports torch,
  else /tmp/venv/bin/python if that exists). Without torch the torch columns say so;
- the peak memory of the full check: ``ru_maxrss`` of the whole process tree (``wait4``
  reports the largest of the process and the children it waited for: the worker);
- the full check's FLOP rate against one core's float64 matmul, measured in the same
  run (numpy's ``a @ b`` of 1024x1024 in a child process with one BLAS thread).

How FLOPs are counted: a child process runs the full check in-process
(``gradcheck_cli.check``) with ``NetworkObjective.losses`` wrapped to count the
perturbed copies of each tensor (the report's ``forward_passes`` on the network). Each
copy is charged the multiply-adds (2 FLOPs each) of every dense and conv2d layer
downstream of the perturbed tensor, over the rows a copy carries (one example for an
input element of a batch-independent network, the whole batch otherwise). That is the
*dense-equivalent* count: what running the downstream layers in full on each copy costs.
The engine computes less (a perturbed parameter's layer updates its output linearly, a
pixel's change is carried as the window it touches), so the rate is what the check
achieves measured against that plain way. Activations, pooling, the loss and the
per-layer isolation are not counted. The rate divides by the check's own time (the
report's ``total_s``, start-up excluded).

``--networks tiny`` is a seconds-long smoke run (tests/test_benchmarks.py runs it).
Nothing here is a test: timings are never asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TORCH_DEFAULT = Path("/tmp/venv/bin/python")

# --- the networks ------------------------------------------------------------------------


def conv(name: str, out: int, k: int, padding: int = 0) -> dict:
    return {
        "type": "conv2d",
        "name": name,
        "out_channels": out,
        "kernel_size": k,
        "padding": padding,
    }


LENET = [
    conv("conv1", 6, 5),
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    conv("conv2", 16, 5),
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "dense", "name": "fc1", "out_features": 120},
    {"type": "relu"},
    {"type": "dense", "name": "fc2", "out_features": 84},
    {"type": "relu"},
    {"type": "dense", "name": "fc3", "out_features": 10},
]
CNN = [
    conv("conv1", 16, 3, padding=1),
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    conv("conv2", 32, 3, padding=1),
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 10},
]


def mlp(sizes: list[int]) -> list[dict]:
    layers: list[dict] = []
    for k, size in enumerate(sizes):
        layers.append({"type": "dense", "name": f"fc{k + 1}", "out_features": size})
        if k < len(sizes) - 1:
            layers.append({"type": "tanh"})
    return layers


@dataclass(frozen=True)
class Net:
    """A network of the sweep: its title, input shape (one example), layers, batch."""

    title: str
    shape: tuple[int, ...]
    layers: list[dict]
    batch: int


NETWORKS = {
    "mlp_784_300_100_b1": Net("MLP 784-300-100-10, batch 1", (784,), mlp([300, 100, 10]), 1),
    "lenet5_b1": Net("LeNet-5, batch 1", (1, 28, 28), LENET, 1),
    "lenet5_b8": Net("LeNet-5, batch 8", (1, 28, 28), LENET, 8),
    "cnn32_b1": Net("CNN on 3x32x32, batch 1", (3, 32, 32), CNN, 1),
    "mlp_784_100_b8": Net("MLP 784-100-10, batch 8", (784,), mlp([100, 10]), 8),
    "cnn32_b8": Net("CNN on 3x32x32, batch 8", (3, 32, 32), CNN, 8),
}
#: A network of seconds, for a smoke run: not part of ``all``.
EXTRA = {"tiny": Net("tiny MLP 8-4-3, batch 2", (8,), mlp([4, 3]), 2)}


def shapes_of(net: Net) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape, by ``<layer>.<param>``, walking the layers' shapes."""
    shape, out = net.shape, {}
    for layer in net.layers:
        kind = layer["type"]
        if kind == "dense":
            fan_in, n = int(np.prod(shape)), layer["out_features"]
            out[f"{layer['name']}.weight"], out[f"{layer['name']}.bias"] = (n, fan_in), (n,)
            shape = (n,)
        elif kind == "conv2d":
            c, h, w = shape
            o, k, p = layer["out_channels"], layer["kernel_size"], layer.get("padding", 0)
            out[f"{layer['name']}.weight"], out[f"{layer['name']}.bias"] = (o, c, k, k), (o,)
            shape = (o, h + 2 * p - k + 1, w + 2 * p - k + 1)
        elif kind == "maxpool2d":
            c, h, w = shape
            k = layer["kernel_size"]
            shape = (c, h // k, w // k)
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
    return out


def write_network(net: Net, folder: Path, seed: int = 0) -> tuple[Path, Path, int]:
    """The YAML config and ``weights.npz`` of ``net`` in ``folder``; returns (config,
    arrays, elements checked). Input in [0, 1); weights and biases uniform in
    +-1/sqrt(fan_in), as PyTorch initialises them; targets k mod 10."""
    import yaml

    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    x = rng.random((net.batch, *net.shape))
    arrays["input"] = x if net.batch > 1 else x[0]
    for name, shape in shapes_of(net).items():
        layer = name.rpartition(".")[0]
        fan_in = int(np.prod(shapes_of(net)[f"{layer}.weight"][1:]))
        bound = 1 / np.sqrt(fan_in)
        arrays[name] = rng.uniform(-bound, bound, size=shape)
    classes = net.layers[-1]["out_features"]
    target = [k % classes for k in range(net.batch)]
    arrays["target"] = np.array(target)
    layers = []
    for layer in net.layers:
        layer = dict(layer)
        if layer["type"] in ("dense", "conv2d"):
            for p in ("weight", "bias"):
                layer[p] = {"file": "weights.npz", "key": f"{layer['name']}.{p}"}
        layers.append(layer)
    source = {"file": "weights.npz", "key": "input"}
    config = {
        "name": net.title,
        "seed": seed,
        "input": {**source, "batched": True} if net.batch > 1 else source,
        "layers": layers,
        "loss": {
            "type": "softmax_cross_entropy",
            "target": target if net.batch > 1 else target[0],
        },
    }
    weights = folder / "weights.npz"
    np.savez(weights, **arrays)
    path = folder / "net.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    elements = sum(a.size for k, a in arrays.items() if k != "target")
    return path, weights, elements


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    code: int
    peak_mib: float
    stdout: str
    stderr: str


def stop_children_when_stopped() -> None:
    """Make SIGTERM (``kill``, ``pkill``) end this script as Ctrl-C does, by an exception,
    so that the child it is timing is killed on the way out (``run``; ``subprocess.run``
    does the same). Killed outright, the script left a torch gradcheck of several
    minutes running on both cores, under the next benchmark's timings."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> Run:
    """One child process: wall seconds, exit code, and the peak RSS of its process tree
    (``wait4``: the largest of the child and the children it reaped). The child is
    killed if this script is stopped while it runs."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return Run(seconds, proc.returncode, usage.ru_maxrss / 1024, out.read(), err.read())


def median_of(cmd: list[str], cwd: Path, repeats: int, env: dict | None = None) -> dict:
    """The median wall time of ``repeats`` runs, the largest peak RSS, the exit codes
    (a check that does not exit 0 is timed all the same, and the table says so)."""
    runs = [run(cmd, cwd, env) for _ in range(repeats)]
    for r in runs:
        if r.code not in (0, 1, 3):
            raise SystemExit(f"{' '.join(cmd)} exited {r.code}:\n{r.stderr[-2000:]}")
    return {
        "seconds": statistics.median(r.seconds for r in runs),
        "runs": [r.seconds for r in runs],
        "peak_mib": max(r.peak_mib for r in runs),
        "exit": sorted({r.code for r in runs}),
    }


MATMUL = """
import json, sys, time
import numpy as np
n = int(sys.argv[1])
rng = np.random.default_rng(0)
a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
a @ b
best = float("inf")
for _ in range(7):
    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
print(json.dumps({"gflops": 2 * n**3 / best / 1e9}))
"""


def chosen_networks(parser: argparse.ArgumentParser, spec: str) -> list[str]:
    """The names ``--networks`` chose ("all" = the six of NETWORKS); a parser error
    naming the known ones for any other name."""
    known = {**NETWORKS, **EXTRA}
    names = list(NETWORKS) if spec == "all" else spec.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def byte_compiled(*folders: str | Path) -> None:
    """Compile every module under ``folders`` to byte-code now, once: a tree timed with
    PYTHONDONTWRITEBYTECODE set (as this machine's shells have it) and no __pycache__
    compiles all of gradcheck_cli at every start, about 0.09 s a process here, and a
    comparison of two trees then measures that instead of the code."""
    import compileall

    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)


def package_folder() -> Path:
    """The gradcheck_cli package these benchmarks time (this checkout's)."""
    import gradcheck_cli

    return Path(gradcheck_cli.__file__).resolve().parent


def one_core_matmul_gflops(n: int = 1024) -> float:
    """numpy's float64 matmul rate on one core (a child with one BLAS thread)."""
    threads = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {**os.environ, **dict.fromkeys(threads, "1")}
    done = run([sys.executable, "-c", MATMUL, str(n)], ROOT, env)
    return json.loads(done.stdout)["gflops"]


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters in ticks (user, nice, system, idle, iowait, irq,
    softirq, steal: the first line of /proc/stat), or None where there is none."""
    try:
        with open("/proc/stat") as stat:
            return [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def stolen(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the CPUs' busy time between two ``cpu_times`` readings that the
    hypervisor gave to other guests (steal): time a process here was ready to run and
    did not, which stretches wall times and not CPU seconds (17% of a LeNet-5 check's
    on a bad hour of this 2-core VM)."""
    if before is None or after is None:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        b - a for a, b in zip(before, after, strict=True)
    )
    busy = user + nice + system + irq + softirq + steal
    return steal / busy if busy else 0.0


def startup_floor(repeats: int = 5) -> float:
    """The median wall seconds of ``python -c "import numpy"``: an interpreter and numpy,
    the least any whole gradcheck process costs on this machine as it is now (0.19 s to
    0.31 s on this 2-core machine over 2026-11-29, hour by hour). It tells how much of a
    small check's time, and of the ``--fast`` target of 0.5 s, the machine takes."""
    cmd = [sys.executable, "-c", "import numpy"]
    return statistics.median(run(cmd, ROOT).seconds for _ in range(repeats))


FLOPS = """
import json, sys
import numpy as np
import gradcheck_cli as gc
from gradcheck_cli.engine.objective import NetworkObjective

copies = {}
rows_of = {}
losses = NetworkObjective.losses

def counted(self, tensor, index, delta):
    copies[tensor] = copies.get(tensor, 0) + len(index)
    if tensor not in rows_of:
        rowwise = self.network.is_input(tensor) and self.rowwise(tensor)
        rows = 1 if rowwise else self.n
        macs = 0
        for node in self.network.downstream(tensor):
            w = node.params.get("weight")
            if node.type == "dense" and w is not None:
                macs += w.size
            elif node.type == "conv2d" and w is not None:
                macs += w.size * int(np.prod(node.out_shape[1:]))
        rows_of[tensor] = 2 * macs * rows
    return losses(self, tensor, index, delta)

NetworkObjective.losses = counted
report = gc.check(sys.argv[1])
flops = sum(copies[t] * rows_of[t] for t in copies)
print(json.dumps({"flops": flops, "total_s": report.total_s, "copies": sum(copies.values()),
                  "forward_passes": report.forward_passes, "loss": report.loss,
                  "passed": report.passed}))
"""


def flop_rate(config: Path) -> dict:
    """The full check in-process with its copies counted (module docstring)."""
    done = run([sys.executable, "-c", FLOPS, str(config)], config.parent)
    if done.code != 0:
        raise SystemExit(f"counting FLOPs failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- torch -------------------------------------------------------------------------------

TORCH = """
import json, sys, time
import numpy as np
import torch
import torch.nn.functional as F

layers = json.loads(sys.argv[2])
batch = int(sys.argv[3])
if sys.argv[4] != "default":
    torch.set_num_threads(int(sys.argv[4]))
data = np.load(sys.argv[1])
x = np.asarray(data["input"], dtype=np.float64)
if batch == 1:
    x = x[None]
names = [n for n in data.files if n not in ("input", "target")]
tensors = [torch.tensor(x, requires_grad=True)]
tensors += [torch.tensor(data[n], dtype=torch.float64, requires_grad=True) for n in names]
where = {n: k + 1 for k, n in enumerate(names)}
target = torch.tensor(data["target"], dtype=torch.long)

def net(*ts):
    a = ts[0]
    for layer in layers:
        kind = layer["type"]
        if kind in ("dense", "conv2d"):
            w, b = ts[where[layer["name"] + ".weight"]], ts[where[layer["name"] + ".bias"]]
            if kind == "dense":
                a = F.linear(a, w, b)
            else:
                a = F.conv2d(a, w, b, padding=layer.get("padding", 0))
        elif kind == "relu":
            a = F.relu(a)
        elif kind == "tanh":
            a = torch.tanh(a)
        elif kind == "maxpool2d":
            a = F.max_pool2d(a, layer["kernel_size"])
        elif kind == "flatten":
            a = a.flatten(1)
    return F.cross_entropy(a, target, reduction="sum")

started = time.perf_counter()
ok = torch.autograd.gradcheck(net, tuple(tensors), eps=1e-6, fast_mode=False)
print(json.dumps({"ok": bool(ok), "call_s": time.perf_counter() - started,
                  "loss": float(net(*tensors)), "version": torch.__version__,
                  "threads": torch.get_num_threads()}))
"""


def torch_python(choice: str | None) -> str | None:
    """The Python to run torch with: ``choice``, else this one when it has torch, else
    TORCH_DEFAULT when it exists; None when there is none."""
    if choice:
        return choice
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    return str(TORCH_DEFAULT) if TORCH_DEFAULT.exists() else None


def torch_gradcheck(python: str, net: Net, weights: Path, repeats: int, threads: str) -> dict:
    script = weights.parent / "torch_gradcheck.py"
    script.write_text(TORCH)
    cmd = [python, str(script), str(weights), json.dumps(net.layers), str(net.batch), threads]
    runs = [run(cmd, weights.parent) for _ in range(repeats)]
    for r in runs:
        if r.code != 0:
            raise SystemExit(f"torch gradcheck failed:\n{r.stderr[-2000:]}")
    said = [json.loads(r.stdout.strip().splitlines()[-1]) for r in runs]
    return {
        "seconds": statistics.median(r.seconds for r in runs),
        "runs": [r.seconds for r in runs],
        "call_s": statistics.median(s["call_s"] for s in said),
        **{k: said[-1][k] for k in ("ok", "loss", "version", "threads")},
    }


# --- the sweep -----------------------------------------------------------------------------


def measure(name: str, net: Net, args, torch: str | None, folder: Path) -> dict:
    config, weights, elements = write_network(net, folder)
    gc = [sys.executable, "-m", "gradcheck_cli", "run", str(config), "-q"]
    row: dict = {"network": name, "title": net.title, "elements": elements}
    say(f"{name}: {elements:,} elements")
    row["full"] = median_of(gc, folder, args.repeats)
    say(f"  full      {row['full']['seconds']:.3f} s, {row['full']['peak_mib']:.0f} MiB")
    row["baseline"] = None
    if args.baseline:
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
        row["baseline"] = median_of(gc, folder, args.repeats, env)
        base = row["baseline"]
        say(f"  baseline  {base['seconds']:.3f} s, {base['peak_mib']:.0f} MiB")
    row["fast"] = median_of([*gc, "--fast"], folder, args.repeats)
    say(f"  --fast    {row['fast']['seconds']:.3f} s")
    row["sample"] = median_of([*gc, "--sample", str(args.sample)], folder, args.repeats)
    say(f"  --sample  {row['sample']['seconds']:.3f} s")
    row["work"] = flop_rate(config)
    row["torch"] = None
    if torch is not None:
        row["torch"] = torch_gradcheck(torch, net, weights, args.torch_repeats, args.torch_threads)
        say(f"  torch     {row['torch']['seconds']:.3f} s (ok: {row['torch']['ok']})")
        same = abs(row["torch"]["loss"] - row["work"]["loss"]) <= 1e-9 * max(
            1.0, abs(row["work"]["loss"])
        )
        row["same_loss"] = same
        if not same:
            say(f"  WARNING: torch's loss {row['torch']['loss']} != {row['work']['loss']}")
    return row


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def table(rows: list[dict], matmul: float, floor: float, args, torch_note: str) -> str:
    head = (
        "| network | elements | full | `--fast` | `--sample "
        f"{args.sample}` | torch gradcheck | lead (torch / full) | peak memory (full) "
        "| GFLOP/s, dense-equivalent (full) | of one core's matmul |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes_odd: list[str] = []
    for r in rows:
        t = r["torch"]
        odd = [
            f"{k} exit {r[k]['exit']}" for k in ("full", "fast", "sample") if r[k]["exit"] != [0]
        ]
        if odd or (t and not t["ok"]):
            notes_odd.append(
                f"{r['title']}: " + ", ".join(odd + (["torch not ok"] if t and not t["ok"] else []))
            )
        gflops = r["work"]["flops"] / r["work"]["total_s"] / 1e9 if r["work"]["total_s"] else 0
        lines.append(
            f"| {r['title']} | {r['elements']:,} | {r['full']['seconds']:.2f} s "
            f"| {r['fast']['seconds']:.2f} s | {r['sample']['seconds']:.2f} s "
            + (
                f"| {t['seconds']:.1f} s | {t['seconds'] / r['full']['seconds']:.0f}x "
                if t
                else "| — | — "
            )
            + f"| {r['full']['peak_mib']:.0f} MiB | {gflops:.1f} | {100 * gflops / matmul:.0f}% |"
        )
    notes = [
        "",
        f"Whole processes, median of {args.repeats} run(s) each for gradcheck"
        + (f" and {args.torch_repeats} for torch" if rows and rows[0]["torch"] else "")
        + f"; one core's float64 matmul: {matmul:.1f} GFLOP/s (same run). {torch_note}",
        f'Start-up floor: `python -c "import numpy"` takes {floor:.2f} s here (median of 5,'
        " same run), the least any whole process above costs.",
    ]
    notes += [f"Not a pass: {n}" for n in notes_odd]
    based = [r for r in rows if r.get("baseline")]
    if based:
        lines_b = [
            "",
            f"Against the baseline (`--baseline {args.baseline}`), full check, same run:",
            "",
            "| network | baseline full | full | time ratio | baseline peak | peak | memory ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in based:
            b, f = r["baseline"], r["full"]
            lines_b.append(
                f"| {r['title']} | {b['seconds']:.2f} s | {f['seconds']:.2f} s "
                f"| {f['seconds'] / b['seconds']:.2f} | {b['peak_mib']:.0f} MiB "
                f"| {f['peak_mib']:.0f} MiB | {f['peak_mib'] / b['peak_mib']:.2f} |"
            )
        notes += lines_b
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--networks",
        default="all",
        help=f"comma-separated, from {', '.join([*NETWORKS, *EXTRA])}; 'all' = the six",
    )
    parser.add_argument("--repeats", type=int, default=3, help="gradcheck runs per median")
    parser.add_argument("--sample", type=int, default=20, help="K of the --sample K column")
    parser.add_argument("--torch-repeats", type=int, default=1, help="torch runs per median")
    parser.add_argument("--python-torch", help="a Python with torch (default: see --help)")
    parser.add_argument("--torch-threads", default="default", help="torch threads, or default")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch columns")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also time the full check of the gradcheck_cli package in folder SRC (an older"
        " checkout's source folder), for the memory and time ratios",
    )
    args = parser.parse_args(argv)
    stop_children_when_stopped()

    known = {**NETWORKS, **EXTRA}
    names = chosen_networks(parser, args.networks)
    torch = None if args.no_torch else torch_python(args.python_torch)
    if args.no_torch:
        torch_note = "torch columns skipped (--no-torch)."
    elif torch is None:
        torch_note = "torch columns skipped: no Python with torch found (--python-torch)."
    else:
        torch_note = f"torch: {torch}, threads {args.torch_threads}."
    trees = [package_folder()] + ([Path(args.baseline) / "gradcheck_cli"] if args.baseline else [])
    byte_compiled(*trees)
    started = datetime.datetime.now()
    load = os.getloadavg()
    ticks = cpu_times()
    matmul = one_core_matmul_gflops()
    floor = startup_floor()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gradcheck-sweep-") as tmp:
        for name in names:
            folder = Path(tmp) / name
            folder.mkdir()
            rows.append(measure(name, known[name], args, torch, folder))
    load_after = os.getloadavg()
    steal = stolen(ticks, cpu_times())
    text = table(rows, matmul, floor, args, torch_note)
    machine = (
        f"{started:%Y-%m-%d}, {platform.machine()}, nproc {len(os.sched_getaffinity(0))}, "
        "load average "
        f"{load[0]:.2f} before and {load_after[0]:.2f} after, "
        + (f"steal {100 * steal:.0f}% of the busy CPU time, " if steal is not None else "")
        + "Python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    print(text)
    print(f"\n{machine}\n`python benchmarks/sweep.py {' '.join(argv or sys.argv[1:])}`")
    results = {
        "machine": machine,
        "matmul_gflops": matmul,
        "startup_floor_s": floor,
        "steal": steal,
        "rows": rows,
        "args": vars(args),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
