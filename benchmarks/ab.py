"""A/B of two gradcheck trees on the sweep's networks: whole processes, interleaved.

    python benchmarks/ab.py OLD NEW [--repeats 7] [--networks a,b] [-- run options]

OLD and NEW are folders that hold a ``gradcheck_cli`` package (a checkout's root, or
``git worktree add /tmp/old <rev>``); each run is ``python -m gradcheck_cli run NET -q``
with ``PYTHONPATH`` set to the tree, started from a temporary folder (so that neither
the current folder nor an editable install decides which tree runs; the script checks
that each tree imports its own package). The runs alternate OLD, NEW, OLD, ... so that
the machine's drift falls on both alike, and the script prints each side's median, the
ratio NEW / OLD and both sides' quartiles. Anything after ``--`` goes to every run
(``-- --fast``, ``-- --jobs 1``).

Both trees are byte-compiled first (``sweep.byte_compiled``): with
``PYTHONDONTWRITEBYTECODE`` set, a fresh worktree has no ``__pycache__`` and compiles
gradcheck_cli at every start, about 0.09 s a process on a 2-core machine, which an A/B
would count as the code's time. Run it with both sides the same tree to see the noise
(``ratio 1.000`` with quartiles that overlap).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import (  # noqa: E402
    EXTRA,
    NETWORKS,
    byte_compiled,
    chosen_networks,
    stop_children_when_stopped,
    write_network,
)


def timed(tree: Path, config: Path, extra: list[str], cwd: Path) -> float:
    """Seconds of one whole ``gradcheck run`` of ``config`` with ``tree`` on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "run", str(config), "-q", *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1, 3):
        raise SystemExit(f"{tree}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}")
    return seconds


def imports_itself(tree: Path, cwd: Path) -> bool:
    """``tree`` on PYTHONPATH imports the gradcheck_cli inside it."""
    code = "import gradcheck_cli, sys; print(gradcheck_cli.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    found = Path(out.stdout.strip()).resolve()
    return out.returncode == 0 and found.is_relative_to(tree.resolve())


def quartiles(values: list[float]) -> str:
    if len(values) < 4:
        return f"{min(values):.3f}-{max(values):.3f}"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.3f}-{q[2]:.3f}"


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="folder holding the old gradcheck_cli")
    parser.add_argument("new", type=Path, help="folder holding the new gradcheck_cli")
    parser.add_argument("--repeats", type=int, default=7, help="runs of each side")
    parser.add_argument("--networks", default="all", help="comma-separated, or 'all'")
    args = parser.parse_args(argv)
    stop_children_when_stopped()
    known = {**NETWORKS, **EXTRA}
    names = chosen_networks(parser, args.networks)
    trees = [args.old.resolve(), args.new.resolve()]
    for tree in trees:
        if not (tree / "gradcheck_cli" / "__init__.py").is_file():
            parser.error(f"{tree} holds no gradcheck_cli package")
    byte_compiled(*(tree / "gradcheck_cli" for tree in trees))
    rows = []
    with tempfile.TemporaryDirectory(prefix="gradcheck-ab-") as tmp:
        cwd = Path(tmp)
        for tree in trees:
            if not imports_itself(tree, cwd):
                raise SystemExit(f"PYTHONPATH={tree} does not import its own gradcheck_cli")
        for name in names:
            folder = cwd / name
            folder.mkdir()
            config, _, _ = write_network(known[name], folder)
            runs: dict[int, list[float]] = {0: [], 1: []}
            for _ in range(args.repeats):
                for side, tree in enumerate(trees):
                    runs[side].append(timed(tree, config, extra, cwd))
            old, new = (statistics.median(runs[s]) for s in (0, 1))
            rows.append({"network": name, "old": runs[0], "new": runs[1], "ratio": new / old})
            print(
                f"{name:22s} old {old:.3f} s ({quartiles(runs[0])})  "
                f"new {new:.3f} s ({quartiles(runs[1])})  ratio {new / old:.3f}",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
