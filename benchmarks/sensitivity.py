"""How small an error in ONE element of a smooth layer's gradient each checker catches.

For each relative error r in 1e-1 ... 1e-9 (and r = 0, the false-alarm row), on each of
several smooth float64 networks, a layer's backward multiplies one randomly chosen
element of its weight gradient by (1 + r). The same network and the same planted error
are checked by

- gradcheck at its defaults (in-process ``gradcheck_cli.check``): caught = exit 1;
- ``torch.autograd.gradcheck`` at its defaults (eps=1e-6, atol=1e-5, rtol=1e-3);
- ``torch.autograd.gradcheck`` at its best: atol=0 and the smallest rtol of 1e-4 ...
  1e-9 that raises no false alarm on any of these networks when they are correct
  (chosen on the very networks measured, which favours torch; rtol=1e-8 itself fails
  correct networks, see the false-alarm row printed for it);

and the table gives the fraction of networks caught. The torch columns are skipped when
torch is not importable. Usage:

    python benchmarks/sensitivity.py            # 20 networks per family
    python benchmarks/sensitivity.py --networks 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.layers.dense import Dense

RELATIVE_ERRORS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 0.0)


# --- the planted error: one element of a weight gradient times (1 + r) --------------------


@gc.register_layer("planted_dense")
class PlantedDense(Dense):
    """dense whose dweight.flat[element] is (1 + rel) times right."""

    def __init__(self, out_features: int, element: int = 0, rel: float = 0.0):
        super().__init__(out_features)
        self.element, self.rel = int(element), float(rel)

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"].flat[self.element] *= 1 + self.rel
        return dx, grads


@gc.register_layer("planted_conv2d")
class PlantedConv2d(Conv2d):
    """conv2d whose dweight.flat[element] is (1 + rel) times right."""

    def __init__(self, out_channels: int, kernel_size: int, element: int = 0, rel: float = 0.0):
        super().__init__(out_channels, kernel_size)
        self.element, self.rel = int(element), float(rel)

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"].flat[self.element] *= 1 + self.rel
        return dx, grads


# --- the networks ---------------------------------------------------------------------------


@dataclass
class Network:
    """One random smooth network: its gradcheck config and what torch needs."""

    family: str
    doc: dict[str, Any]
    x: np.ndarray  # (N, *shape)
    params: list[np.ndarray]  # weights and biases in layer order
    target: np.ndarray
    element: int  # flat index into the planted layer's weight
    weight_size: int


def dense_tanh(rng: np.random.Generator) -> Network:
    """planted dense (8 -> 6), tanh, dense (6 -> 3), MSE; batch of 2."""
    x = rng.standard_normal((2, 8))
    w1, b1 = rng.uniform(-0.35, 0.35, (6, 8)), rng.uniform(-0.35, 0.35, 6)
    w2, b2 = rng.uniform(-0.4, 0.4, (3, 6)), rng.uniform(-0.4, 0.4, 3)
    t = rng.standard_normal((2, 3))
    layers = [
        {"type": "planted_dense", "name": "fc1", "out_features": 6, "weight": w1, "bias": b1},
        {"type": "tanh"},
        {"type": "dense", "name": "fc2", "out_features": 3, "weight": w2, "bias": b2},
    ]
    return _network("dense", x, layers, t, [w1, b1, w2, b2], rng)


def conv_sigmoid(rng: np.random.Generator) -> Network:
    """planted conv (2 -> 3 channels, 3x3) on 2x6x6, sigmoid, 2x2 average pool, dense
    (12 -> 2), MSE; one example."""
    x = rng.standard_normal((1, 2, 6, 6))
    w1, b1 = rng.uniform(-0.24, 0.24, (3, 2, 3, 3)), rng.uniform(-0.24, 0.24, 3)
    w2, b2 = rng.uniform(-0.29, 0.29, (2, 12)), rng.uniform(-0.29, 0.29, 2)
    t = rng.standard_normal((1, 2))
    layers = [
        {"type": "planted_conv2d", "name": "conv1", "out_channels": 3, "kernel_size": 3,
         "weight": w1, "bias": b1},
        {"type": "sigmoid"},
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 2, "weight": w2, "bias": b2},
    ]  # fmt: skip
    return _network("conv", x, layers, t, [w1, b1, w2, b2], rng)


def sigmoid_tanh_stack(rng: np.random.Generator) -> Network:
    """planted dense (5 -> 8), sigmoid, dense (8 -> 8), tanh, dense (8 -> 4), MSE;
    batch of 3."""
    x = rng.standard_normal((3, 5))
    w1, b1 = rng.uniform(-0.45, 0.45, (8, 5)), rng.uniform(-0.45, 0.45, 8)
    w2, b2 = rng.uniform(-0.35, 0.35, (8, 8)), rng.uniform(-0.35, 0.35, 8)
    w3, b3 = rng.uniform(-0.35, 0.35, (4, 8)), rng.uniform(-0.35, 0.35, 4)
    t = rng.standard_normal((3, 4))
    layers = [
        {"type": "planted_dense", "name": "fc1", "out_features": 8, "weight": w1, "bias": b1},
        {"type": "sigmoid"},
        {"type": "dense", "name": "fc2", "out_features": 8, "weight": w2, "bias": b2},
        {"type": "tanh"},
        {"type": "dense", "name": "fc3", "out_features": 4, "weight": w3, "bias": b3},
    ]
    return _network("sigmoid/tanh", x, layers, t, [w1, b1, w2, b2, w3, b3], rng)


def _network(family, x, layers, t, params, rng) -> Network:
    size = params[0].size
    doc = {
        "input": {"value": x.tolist(), "batched": True},
        "layers": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in layer.items()}
                   for layer in layers],
        "loss": {"type": "mse", "target": t.tolist()},
    }  # fmt: skip
    return Network(family, doc, x, params, t, int(rng.integers(size)), size)


FAMILIES = (dense_tanh, conv_sigmoid, sigmoid_tanh_stack)


# --- gradcheck --------------------------------------------------------------------------------


def gradcheck_catches(net: Network, rel: float) -> bool:
    doc = json.loads(json.dumps(net.doc))
    doc["layers"][0].update(element=net.element, rel=rel)
    report = gc.check(doc)
    return int(report.exit_code) == 1


def screening_catches(net: Network, rel: float) -> bool:
    """gradcheck with its precision stage turned off: the screening steps alone."""
    from gradcheck_cli.engine import verdict

    saved, verdict.PRECISION_EPS = verdict.PRECISION_EPS, 0.0
    try:
        return gradcheck_catches(net, rel)
    finally:
        verdict.PRECISION_EPS = saved


# --- torch -------------------------------------------------------------------------------------


def torch_catches(net: Network, rel: float, **settings) -> bool:
    import torch
    import torch.nn.functional as F

    element = net.element

    class Planted(torch.autograd.Function):
        """The first layer, with dweight.flat[element] times (1 + rel)."""

        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w, b)
            return _first(x, w, b)

        @staticmethod
        def backward(ctx, dy):
            x, w, b = ctx.saved_tensors
            with torch.enable_grad():
                xs, ws, bs = (t.detach().requires_grad_() for t in (x, w, b))
                dx, dw, db = torch.autograd.grad(_first(xs, ws, bs), (xs, ws, bs), dy)
            dw = dw.clone()
            dw.view(-1)[element] *= 1 + rel
            return dx, dw, db

    def _first(x, w, b):
        return F.conv2d(x, w, b) if w.dim() == 4 else F.linear(x, w, b)

    def loss(x, *p):
        h = Planted.apply(x, p[0], p[1])
        if net.family == "dense":
            y = F.linear(torch.tanh(h), p[2], p[3])
        elif net.family == "conv":
            y = F.linear(F.avg_pool2d(torch.sigmoid(h), 2).flatten(1), p[2], p[3])
        else:
            y = F.linear(torch.tanh(F.linear(torch.sigmoid(h), p[2], p[3])), p[4], p[5])
        return 0.5 * ((y - target) ** 2).sum()

    target = torch.tensor(net.target, dtype=torch.float64)
    inputs = [
        torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in [net.x, *net.params]
    ]
    return not torch.autograd.gradcheck(loss, inputs, raise_exception=False, **settings)


TORCH_DEFAULT = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}
#: rtol values tried for torch's best setting (with atol=0), loosest first.
TORCH_RTOLS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)


def torch_best_rtol(nets: list[Network]) -> tuple[float, dict[str, int]]:
    """The smallest rtol (atol=0) with no false alarm on any correct network, and the
    false alarms of every rtol tried."""
    alarms = {
        f"{rtol:g}": sum(torch_catches(n, 0.0, eps=1e-6, atol=0.0, rtol=rtol) for n in nets)
        for rtol in TORCH_RTOLS
    }
    clean = [rtol for rtol in TORCH_RTOLS if alarms[f"{rtol:g}"] == 0]
    return (min(clean) if clean else TORCH_RTOLS[0]), alarms


# --- the table ---------------------------------------------------------------------------------


def measure(networks: int, seed: int, screening: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    nets = [family(rng) for family in FAMILIES for _ in range(networks)]
    checkers = {"gradcheck (defaults)": gradcheck_catches}
    if screening:
        checkers["gradcheck, screening steps only"] = screening_catches
    torch_alarms: dict[str, int] = {}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        best, torch_alarms = torch_best_rtol(nets)
        checkers["torch (defaults)"] = lambda n, r: torch_catches(n, r, **TORCH_DEFAULT)
        checkers[f"torch (atol=0, rtol={best:g})"] = lambda n, r: torch_catches(
            n, r, eps=1e-6, atol=0.0, rtol=best
        )
    caught = {name: {r: 0 for r in RELATIVE_ERRORS} for name in checkers}
    by_family = {name: {} for name in checkers}
    seconds = {name: 0.0 for name in checkers}
    for name, catches in checkers.items():
        for r in RELATIVE_ERRORS:
            for net in nets:
                started = time.perf_counter()
                hit = catches(net, r)
                seconds[name] += time.perf_counter() - started
                caught[name][r] += hit
                key = f"{net.family} {r:g}"
                by_family[name][key] = by_family[name].get(key, 0) + hit
    return {
        "networks": len(nets),
        "per_family": networks,
        "families": [" ".join(f.__doc__.split()) for f in FAMILIES],
        "torch_false_alarms_by_rtol": torch_alarms,
        "caught": {n: {f"{r:g}": c for r, c in v.items()} for n, v in caught.items()},
        "by_family": by_family,
        "seconds": seconds,
    }


def table(result: dict[str, Any]) -> str:
    names = list(result["caught"])
    total = result["networks"]
    head = "| relative error | " + " | ".join(names) + " |"
    rule = "| ---: | " + " | ".join("---:" for _ in names) + " |"
    rows = []
    for r in RELATIVE_ERRORS:
        label = "0 (correct: false alarms)" if r == 0 else f"{r:g}"
        cells = [f"{result['caught'][n][f'{r:g}']}/{total}" for n in names]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    seconds = " | ".join(f"{result['seconds'][n]:.1f} s" for n in names)
    rows.append(f"| time, all runs | {seconds} |")
    return "\n".join([head, rule, *rows])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=20, help="random networks per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument(
        "--screening",
        action="store_true",
        help="add a column: gradcheck without its precision stage (the steps of eps alone)",
    )
    args = parser.parse_args(argv)
    result = measure(args.networks, args.seed, args.screening)
    print(f"{result['networks']} networks ({args.networks} per family), one planted element each:")
    for family in result["families"]:
        print(f"  - {family}")
    if result["torch_false_alarms_by_rtol"]:
        tried = result["torch_false_alarms_by_rtol"].items()
        alarms = ", ".join(f"rtol {k}: {v}" for k, v in tried)
        print(f"torch (atol=0) false alarms on the correct networks: {alarms}")
    print(table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
