"""Time the JSON report's writer against the element-by-element writer it replaced.

    python benchmarks/json_report.py [--network mlp_784_300_100_b1] [--repeats 5] [--full]

Checks one network of the sweep (benchmarks/sweep.py; ``--fast`` unless ``--full``) in
this process, then writes its JSON report with ``render_json`` and with the writer
before issue 14 (``json.dumps(..., indent=2)`` of nested lists made by a recursive
``to_jsonable``, a Python call per element), alternately, and prints the medians (CPU
time of this thread: other processes on the machine do not count) and whether the two
texts are the same. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import NETWORKS, write_network  # noqa: E402


def old_to_jsonable(a):
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        v = float(arr)
        return None if math.isnan(v) else v
    return [old_to_jsonable(x) for x in arr]


def old_render(report) -> str:
    import gradcheck_cli.render.json as module

    fast = module.to_jsonable
    module.to_jsonable = old_to_jsonable
    try:
        return json.dumps(module.report_to_dict(report), indent=2, allow_nan=False) + "\n"
    finally:
        module.to_jsonable = fast


def timed(f, report) -> tuple[float, str]:
    started = time.thread_time()
    text = f(report)
    return time.thread_time() - started, text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="mlp_784_300_100_b1", choices=list(NETWORKS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="a full check, not --fast")
    args = parser.parse_args(argv)

    import gradcheck_cli as gc
    from gradcheck_cli.render.json import render_json

    with tempfile.TemporaryDirectory() as tmp:
        config, _, elements = write_network(NETWORKS[args.network], Path(tmp))
        report = gc.check(config, fast=not args.full)
    new, old = [], []
    for _ in range(args.repeats):
        seconds, new_text = timed(render_json, report)
        new.append(seconds)
        seconds, old_text = timed(old_render, report)
        old.append(seconds)
    mode = "full" if args.full else "--fast"
    print(f"{args.network} ({elements:,} elements, {mode}; the check took {report.total_s:.3f} s)")
    print(f"report: {len(new_text) / 1e6:.1f} MB; identical text: {new_text == old_text}")
    print(f"render_json:            {statistics.median(new):.3f} s (median of {args.repeats})")
    print(f"element-by-element:     {statistics.median(old):.3f} s")
    print(f"speed-up:               {statistics.median(old) / statistics.median(new):.1f}x")


if __name__ == "__main__":
    main()
