"""Time full gradient checks of LeNet-5 (configs/bench/lenet5.yaml), in one run.

    python benchmarks/bench_lenet5.py [--repeat 3] [--naive-elements 3000 | --naive-all]
                                      [--no-torch | --torch-threads default,1]
                                      [--json results.json]

Same config, same weights, same 45,210 elements (784 input + 44,426 parameters) for:

- gradcheck, full element-wise check: the whole process (``python -m gradcheck_cli run
  configs/bench/lenet5.yaml -q``) and in-process (``run_check`` on the loaded problem);
- gradcheck ``--fast``, whole process;
- a naive per-element loop: plain numpy, two full forward passes per element through
  the same layers, no prefix cache, no vectorisation. It is timed on a stratified
  random subset of every tensor and extrapolated, unless ``--naive-all``;
- ``torch.autograd.gradcheck`` (fast_mode=False, float64, the same weights, over the
  input and every parameter), whole process, when torch is importable.

It also prints the check's FLOP count and achieved GFLOP/s next to a float64 numpy
matmul measured in the same run, and the peak RSS of the full-check process. Every
figure is the best of ``--repeat`` runs (as timeit does: the least disturbed run); the
medians go to ``--json``. Nothing here is a test: timings are never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "bench" / "lenet5.yaml"
ELEMENTS = 45_210


# --- measuring -------------------------------------------------------------------------


def run_process(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, exit code, stdout) of one child process."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
    return wall, proc.returncode, proc.stdout


def whole_process(cmd: list[str], repeat: int) -> dict:
    runs = [run_process(cmd) for _ in range(repeat)]
    walls = [wall for wall, _, _ in runs]
    return {
        "seconds": min(walls),
        "median": statistics.median(walls),
        "runs": walls,
        "exit": runs[-1][1],
    }


def peak_rss_of(cmd: list[str]) -> float:
    """Peak RSS (MiB) of one run of ``cmd``, measured by the child itself."""
    code = textwrap.dedent(
        f"""
        import resource, runpy, sys
        sys.argv = {cmd!r}
        try:
            runpy.run_module("gradcheck_cli", run_name="__main__")
        except SystemExit:
            pass
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sys.stderr.write("PEAK_RSS_KIB=%d\\n" % kib)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_RSS_KIB="):
            return int(line.split("=")[1]) / 1024
    raise RuntimeError(proc.stderr)


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """Best float64 matmul rate of this machine (numpy's BLAS, its default threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _timed(f) -> float:
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


# --- the check's work ------------------------------------------------------------------


def layer_flops(spec) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward of a conv2d or dense layer, per example."""
    if spec.type == "conv2d":
        o, c, kh, kw = spec.params["weight"].shape
        _, ho, wo = spec.out_shape
        return 2 * o * c * kh * kw * ho * wo
    if spec.type == "dense":
        return 2 * spec.params["weight"].size
    return 0  # activations, pooling, flatten: not counted (as in the floor)


def dense_equivalent_flops(problem) -> int:
    """The issue's floor: two perturbed copies per element, each running layers k..L
    in full (prefix cached, no other shortcut)."""
    flops = [layer_flops(s) * problem.batch_size for s in problem.layers]
    total = 2 * problem.x.size * sum(flops)
    for k, spec in enumerate(problem.layers):
        for value in spec.params.values():
            total += 2 * value.size * sum(flops[k:])
    return total


def performed_flops(problem) -> tuple[int, list[int]]:
    """FLOPs the engine really spends on the network check: the conv/dense layers run on
    the copies that reach them (a copy whose activation equals the unperturbed one
    leaves the batch), plus, for a perturbed conv/dense parameter, the linear update
    of forward_perturbed (one multiply-add per output element of that copy)."""
    from gradcheck_cli.engine import numeric

    objective = objective_of(problem)
    with np.errstate(all="ignore"):
        for tensor, value in objective.tensors().items():
            index = np.arange(value.size)
            numeric.differences(objective, tensor, index, 1e-6, problem.settings.max_memory)
    flops = [layer_flops(s) * problem.batch_size for s in problem.layers]
    through = [objective.copies_through.get(s.name, 0) for s in problem.layers]
    total = sum(c * f for c, f in zip(through, flops, strict=True))
    for spec in problem.layers:
        if spec.type in ("conv2d", "dense"):
            out = int(np.prod(spec.out_shape)) * problem.batch_size
            for value in spec.params.values():
                total += 2 * value.size * 2 * out // max(1, spec.out_shape[0])
    return total, through


def objective_of(problem):
    """The engine's float64 network objective of a problem (its prefix cache built)."""
    from gradcheck_cli.engine import passes
    from gradcheck_cli.engine.objective import NetworkObjective

    trace, grads = passes.analytic_pass(problem, passes.problem_params(problem))
    return NetworkObjective.build(problem, trace, grads, passes.problem_params(problem, np.float64))


# --- the reference checkers ------------------------------------------------------------


def naive_loop(problem, elements: int | None, seed: int = 0) -> dict:
    """Two full forwards per element, plain numpy, one element at a time.

    elements: how many to time (stratified over the tensors, at least 20 per tensor or
    all of it), extrapolated to every element; None = every element.
    """
    from gradcheck_cli.engine.passes import loss_forward, reduce_losses

    x = problem.x.astype(np.float64)
    target = problem.loss.target

    def loss(x, params) -> float:
        a = x
        for spec in problem.layers:
            a, _ = spec.layer.forward(a, params[spec.name])
        losses, _ = loss_forward(problem.loss, a, target)
        return float(reduce_losses(losses, x.shape[0], problem.loss.reduction)[0])

    tensors = {"input": x}
    for spec in problem.layers:
        for name, value in spec.params.items():
            tensors[f"{spec.name}.{name}"] = value
    total = sum(v.size for v in tensors.values())
    rng = np.random.default_rng(seed)
    eps, seconds, timed, numerics = 1e-6, 0.0, 0, {}
    for tensor, value in tensors.items():
        if elements is None:
            index = np.arange(value.size)
        else:
            k = min(value.size, max(20, round(elements * value.size / total)))
            index = np.sort(rng.choice(value.size, size=k, replace=False))
        started = time.perf_counter()
        out = np.empty(len(index))
        for j, i in enumerate(index):
            values = dict(tensors)
            moved = value.copy()
            moved.flat[i] = value.flat[i] + eps
            values[tensor] = moved
            f_plus = _loss_of(loss, values, problem)
            moved.flat[i] = value.flat[i] - eps
            f_minus = _loss_of(loss, values, problem)
            out[j] = (f_plus - f_minus) / (2 * eps)
        spent = time.perf_counter() - started
        seconds += spent * value.size / len(index)
        timed += len(index)
        numerics[tensor] = (index, out)
    return {"seconds": seconds, "timed_elements": timed, "numerics": numerics}


def _loss_of(loss, values, problem) -> float:
    params = {s.name: {k: values[f"{s.name}.{k}"] for k in s.params} for s in problem.layers}
    return loss(values["input"], params)


TORCH_SCRIPT = """
import json, sys, time
import numpy as np
import torch
import torch.nn.functional as F

data = np.load(sys.argv[1])
if sys.argv[2] != "default":
    torch.set_num_threads(int(sys.argv[2]))
names = [n for n in data.files if n not in ("x", "target")]
x = torch.tensor(data["x"], requires_grad=True)
params = [torch.tensor(data[n], requires_grad=True) for n in names]
target = torch.tensor(data["target"], dtype=torch.long)
convs = [n for n in names if n.startswith("conv")]
denses = [n for n in names if n.startswith("fc")]

def lenet(x, c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b):
    a = F.max_pool2d(F.relu(F.conv2d(x, c1w, c1b)), 2)
    a = F.max_pool2d(F.relu(F.conv2d(a, c2w, c2b)), 2).flatten(1)
    a = F.relu(F.linear(a, f1w, f1b))
    a = F.relu(F.linear(a, f2w, f2b))
    return F.cross_entropy(F.linear(a, f3w, f3b), target, reduction="sum")

started = time.perf_counter()
ok = torch.autograd.gradcheck(lenet, (x, *params), eps=1e-6, fast_mode=False)
print(json.dumps({"ok": bool(ok), "gradcheck_s": time.perf_counter() - started,
                  "threads": torch.get_num_threads(), "version": torch.__version__,
                  "loss": float(lenet(x, *params))}))
"""


def torch_reference(problem, repeat: int, thread_settings=("default", "1")) -> dict | None:
    """torch.autograd.gradcheck in its own process, with torch's default threads and
    with one thread (the faster on 2 busy cores: OpenMP threads wait on each other);
    the faster of the two is the reference."""
    try:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return None
    except (ImportError, ValueError):
        return None
    order = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    specs = {s.name: s for s in problem.layers}
    arrays = {"x": problem.x, "target": problem.loss.target.argmax(axis=1)}
    for name in order:
        for p in ("weight", "bias"):
            arrays[f"{name}.{p}"] = specs[name].params[p]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "lenet5.npz"
        script = Path(tmp) / "torch_gradcheck.py"
        np.savez(data, **arrays)
        script.write_text(TORCH_SCRIPT)
        variants = {}
        for threads in thread_settings:
            cmd = [sys.executable, str(script), str(data), threads]
            runs = [run_process(cmd) for _ in range(repeat)]
            walls = [r[0] for r in runs]
            calls = [json.loads(r[2].strip().splitlines()[-1]) for r in runs]
            variants[threads] = {
                **calls[-1],
                "gradcheck_s": min(c["gradcheck_s"] for c in calls),
                "seconds": min(walls),
                "median": statistics.median(walls),
                "runs": walls,
            }
    best = min(variants.values(), key=lambda v: v["seconds"])
    return {**best, "variants": variants}


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per whole process")
    parser.add_argument("--naive-elements", type=int, default=3000)
    parser.add_argument("--naive-all", action="store_true", help="time every element")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--torch-threads",
        default="default,1",
        help="torch thread settings to time, comma-separated (on a busy machine torch's "
        "default OpenMP threads can take many times longer: use 1)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sweep import byte_compiled, package_folder

    byte_compiled(package_folder())

    from gradcheck_cli.config import load_problem
    from gradcheck_cli.engine import run_check

    problem = load_problem(CONFIG)
    elements = problem.x.size + sum(v.size for s in problem.layers for v in s.params.values())
    assert elements == ELEMENTS, elements

    gc = [sys.executable, "-m", "gradcheck_cli", "run", str(CONFIG.relative_to(ROOT)), "-q"]
    results: dict = {
        "elements": elements,
        "config": str(CONFIG.relative_to(ROOT)),
        "repeat": args.repeat,
    }
    results["matmul_gflops"] = matmul_gflops()
    results["full_process"] = whole_process(gc, args.repeat)
    results["fast_process"] = whole_process([*gc, "--fast"], args.repeat)
    results["full_peak_rss_mib"] = peak_rss_of(gc[2:])
    in_process, cpu = [], []
    for _ in range(args.repeat):
        problem_copy = load_problem(CONFIG)
        started = time.process_time()
        report = run_check(problem_copy)
        cpu.append(time.process_time() - started)
        assert report.passed
        in_process.append(report.total_s)
    results["full_in_process"] = {
        "seconds": min(in_process),
        "median": statistics.median(in_process),
        "runs": in_process,
        "cpu_seconds": min(cpu),
    }
    results["flops_dense_equivalent"] = dense_equivalent_flops(problem)
    results["flops_performed"], results["copies_through"] = performed_flops(problem)
    naive = naive_loop(problem, None if args.naive_all else args.naive_elements)
    results["naive"] = {k: naive[k] for k in ("seconds", "timed_elements")}
    results["naive"]["agrees_with_gradcheck"] = naive_agrees(problem, naive["numerics"])
    settings = tuple(t.strip() for t in args.torch_threads.split(",") if t.strip())
    results["torch"] = None if args.no_torch else torch_reference(problem, args.repeat, settings)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return results


def naive_agrees(problem, numerics: dict) -> float:
    """Largest |naive - gradcheck| numeric value over the elements the naive loop timed."""
    from gradcheck_cli.engine import numeric

    objective = objective_of(problem)
    worst = 0.0
    for tensor, (index, values) in numerics.items():
        d = numeric.differences(objective, tensor, index, 1e-6, problem.settings.max_memory)
        worst = max(worst, float(np.max(np.abs(d.central - values))))
    return worst


def print_table(r: dict) -> None:
    n = r["elements"]
    full_p, fast_p = r["full_process"]["seconds"], r["fast_process"]["seconds"]
    full_i = r["full_in_process"]["seconds"]
    naive = r["naive"]["seconds"]
    rows = [
        ("gradcheck full, whole process", full_p),
        ("gradcheck full, in-process (run_check)", full_i),
        ("gradcheck full, in-process, CPU time", r["full_in_process"]["cpu_seconds"]),
        ("gradcheck --fast, whole process", fast_p),
    ]
    note = (
        ""
        if r["naive"]["timed_elements"] >= n
        else (f" (extrapolated from {r['naive']['timed_elements']:,} timed elements)")
    )
    rows.append(("naive numpy loop, 2 forwards/element" + note, naive))
    if r["torch"]:
        for v in r["torch"]["variants"].values():
            threads = f"{v['threads']} thread" + ("s" if v["threads"] > 1 else "")
            rows.append((f"torch.autograd.gradcheck full, whole process, {threads}", v["seconds"]))
            rows.append(
                (f"torch.autograd.gradcheck full, the call alone, {threads}", v["gradcheck_s"])
            )
    width = max(len(name) for name, _ in rows)
    print(f"LeNet-5, {n:,} elements ({r['config']}); best of {r['repeat']} runs each\n")
    print(f"{'':{width}}  {'seconds':>9}  {'elements/s':>12}")
    for name, seconds in rows:
        print(f"{name:{width}}  {seconds:9.3f}  {n / seconds:12,.0f}")
    print()
    print(f"full check vs naive loop:            {naive / full_p:6.1f}x faster (whole process)")
    if r["torch"]:
        t = r["torch"]["seconds"]
        print(
            f"full check vs torch gradcheck:       {t / full_p:6.1f}x faster "
            f"(whole processes, torch's faster thread setting: {r['torch']['threads']})"
        )
        print(
            "                                     "
            f"{r['torch']['gradcheck_s'] / full_i:6.1f}x (in-process, the checks alone)"
        )
    dense, done = r["flops_dense_equivalent"], r["flops_performed"]
    matmul = r["matmul_gflops"]
    print()
    print(f"FLOPs, dense-equivalent (layers k..L per perturbed copy): {dense / 1e9:.2f} GFLOP")
    print(f"FLOPs the engine performs (pruned copies, linear updates): {done / 1e9:.2f} GFLOP")
    rate_i, rate_p = dense / full_i / 1e9, dense / full_p / 1e9
    print(f"float64 numpy matmul, this run:     {matmul:7.1f} GFLOP/s")
    print(
        f"achieved (dense-equivalent / time):  {rate_i:7.1f} GFLOP/s in-process "
        f"= {100 * rate_i / matmul:.0f}% of matmul; {rate_p:.1f} GFLOP/s whole process "
        f"= {100 * rate_p / matmul:.0f}%"
    )
    print(
        f"performed FLOPs / in-process time: {done / full_i / 1e9:7.1f} GFLOP/s "
        f"= {100 * done / full_i / 1e9 / matmul:.0f}% of matmul"
    )
    print()
    print(f"peak RSS of the full check process: {r['full_peak_rss_mib']:.0f} MiB")
    agree = r["naive"]["agrees_with_gradcheck"]
    print(f"naive loop vs gradcheck numerics, max |difference|: {agree:.1e}")
    codes = (r["full_process"]["exit"], r["fast_process"]["exit"])
    print(
        f"exit codes (full, fast): {codes}; torch gradcheck ok: "
        f"{r['torch']['ok'] if r['torch'] else 'not run'}"
    )


if __name__ == "__main__":
    main()
