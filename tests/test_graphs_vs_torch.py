"""Random graphs of the built-in layers against PyTorch's autograd, float64, to 1e-8 relative.

Issue 11's acceptance criterion: residual adds, concats, forks, shared weights and
normalisation layers, checked against an independent autodiff framework.

Each graph is drawn from a numpy seed (the test id, ``graph-<seed>``): one or two
network inputs (flat vectors or images, batched or not), then a few steps, each one of

- a layer reading any value made so far (a second reader makes that value a fork);
- a residual block, ``add(v, f(v))`` with f a dense or same-size conv layer, an
  activation and sometimes a normalisation;
- a join of two values: ``add`` or ``multiply`` (same shapes) or ``concat``;
- a layer that shares an earlier dense or conv layer's parameters (``share:``);

then every value nothing reads yet is flattened, concatenated and read by a dense head,
the network's output, under one of the losses. The config goes through the public
config path (``problem_from_dict``) and gradcheck's analytic pass; the same graph is
rebuilt in torch from the problem's arrays, a sharing layer using its owner's tensor, so
that autograd sums the gradient over the uses itself.

The loss, every layer's delta, every network input's gradient and every parameter
gradient (once, under its owner) must agree to ``rtol=1e-8``, with the absolute floors
of tests/test_stacks_vs_torch.py (exact zeros, and gradients that are 0 in exact
arithmetic, e.g. a bias in front of a batchnorm).

Adding a layer type is one line in ``LAYER_TYPES`` (how to make a config item for a
shape, and its torch function). Skipped when torch is not installed. More graphs:
``GRADCHECK_TORCH_GRAPHS=2000 pytest tests/test_graphs_vs_torch.py``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gradcheck_cli.layers  # noqa: E402, F401  (registers the built-in layers)
from gradcheck_cli.config import problem_from_dict  # noqa: E402
from gradcheck_cli.engine import run_check  # noqa: E402
from gradcheck_cli.engine.passes import analytic_pass, problem_params  # noqa: E402
from gradcheck_cli.protocol import LAYERS, ORIGINS, takes_several  # noqa: E402

GRAPHS = int(os.environ.get("GRADCHECK_TORCH_GRAPHS", "100"))
RTOL = 1e-8
ATOL_FRACTION = 1e-12  # atol = ATOL_FRACTION * the tensor's largest magnitude
VANISHING = 1e-10  # a parameter gradient below VANISHING * its users' deltas is 0 (noise)
ROUNDING = 1e-12  # atol >= ROUNDING * the largest gradient of the graph (rounding floor)

Shape = tuple[int, ...]
#: (rng, per-example shape, batch size) -> (config item without name and inputs, its
#: output shape), or None when the type cannot read that shape
Make = Callable[[np.random.Generator, Shape, int], "tuple[dict, Shape] | None"]


# --------------------------------------------------------------------------- layer types


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _same(item: dict) -> Make:
    return lambda rng, shape, n: (dict(item), shape)


def _dense(rng: np.random.Generator, shape: Shape, n: int, out: int | None = None):
    if len(shape) != 1:
        return None
    out = int(rng.integers(1, 6)) if out is None else out
    item: dict = {"type": "dense", "out_features": out}
    if rng.random() < 0.25:
        item["bias"] = False
    if rng.random() < 0.5:
        item["weight"] = (rng.standard_normal((out, shape[0])) * 1.5 / np.sqrt(shape[0])).tolist()
    return item, (out,)


def _conv(rng: np.random.Generator, shape: Shape, n: int, same: bool = False):
    """A conv2d item for an image (C, H, W); ``same``: kernel 1 or 3 with the padding that
    keeps H and W (and C when ``same``), for a residual branch."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    if same:
        k = int(rng.choice([1, 3]))
        out, pad = c, (k - 1) // 2
    else:
        k, pad, out = int(rng.integers(1, 4)), int(rng.integers(0, 2)), int(rng.integers(1, 4))
        if h + 2 * pad < k or w + 2 * pad < k:
            return None
    item: dict = {"type": "conv2d", "out_channels": out, "kernel_size": k, "padding": pad}
    if rng.random() < 0.25:
        item["bias"] = False
    return item, (out, h + 2 * pad - k + 1, w + 2 * pad - k + 1)


def _norm(kind: str) -> Make:
    def make(rng: np.random.Generator, shape: Shape, n: int):
        if kind == "batchnorm" and (len(shape) not in (1, 3) or n * int(np.prod(shape[1:])) < 2):
            return None  # a statistic of one value
        c = shape[0] if kind == "batchnorm" else shape
        gamma = rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c)
        item = {"type": kind, "gamma": gamma.tolist(), "beta": rng.normal(size=c).tolist()}
        if rng.random() < 0.3:
            item["eps"] = 1e-3
        return item, shape

    return make


def _flatten(rng: np.random.Generator, shape: Shape, n: int):
    return ({"type": "flatten"}, (int(np.prod(shape)),)) if len(shape) > 1 else None


def _batch_norm(h, item, p):
    eps = item.get("eps", 1e-5)
    return F.batch_norm(h, None, None, p["gamma"], p["beta"], training=True, eps=eps)


def _layer_norm(h, item, p):  # torch.nn.LayerNorm(in_shape)
    return F.layer_norm(h, tuple(h.shape[1:]), p["gamma"], p["beta"], item.get("eps", 1e-5))


#: type -> (make a config item for a shape, its torch function of (x, item, params)).
#: Adding a single-input layer type to the random graphs is one line here (a type not
#: registered, as layernorm before its branch lands, is left out).
LAYER_TYPES: dict[str, tuple[Make, Callable]] = {
    "dense": (_dense, lambda h, it, p: F.linear(h, p["weight"], p.get("bias"))),
    "conv2d": (
        _conv,
        lambda h, it, p: F.conv2d(h, p["weight"], p.get("bias"), 1, _pair(it.get("padding", 0))),
    ),
    "relu": (_same({"type": "relu"}), lambda h, it, p: F.relu(h)),
    "tanh": (_same({"type": "tanh"}), lambda h, it, p: torch.tanh(h)),
    "sigmoid": (_same({"type": "sigmoid"}), lambda h, it, p: torch.sigmoid(h)),
    "flatten": (_flatten, lambda h, it, p: torch.flatten(h, 1)),
    "batchnorm": (_norm("batchnorm"), _batch_norm),
    "layernorm": (_norm("layernorm"), _layer_norm),
}
LAYER_TYPES = {k: v for k, v in LAYER_TYPES.items() if k in LAYERS}
ACTIVATIONS = ("relu", "tanh", "sigmoid")
NORMS = tuple(k for k in ("batchnorm", "layernorm") if k in LAYER_TYPES)

#: multi-input type -> its torch function of (the inputs, item)
JOINS: dict[str, Callable] = {
    "add": lambda xs, it: sum(xs[1:], xs[0]),
    "multiply": lambda xs, it: torch.stack(xs).prod(dim=0),
    "concat": lambda xs, it: torch.cat(xs, dim=it.get("axis", 0) % (xs[0].dim() - 1) + 1),
}


@pytest.mark.parametrize(
    ("type_name", "item", "shapes"),
    [
        ("add", {}, [(3,), (3,)]),
        ("add", {}, [(2, 3, 2)] * 3),
        ("multiply", {}, [(4,), (4,)]),
        ("multiply", {}, [(2, 2, 2)] * 3),
        ("concat", {}, [(2,), (3,)]),
        ("concat", {"axis": 0}, [(1, 2, 3), (2, 2, 3), (1, 2, 3)]),
        ("concat", {"axis": -1}, [(2, 2, 1), (2, 2, 3)]),
    ],
)
def test_multi_input_layer_matches_torch(type_name, item, shapes):
    """Each multi-input built-in alone: forward and every input's dx, to 1e-10."""
    layer = LAYERS[type_name](**item)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, *s)) for s in shapes]
    y, cache = layer.forward(tuple(xs), {})
    r = rng.standard_normal(y.shape)
    dxs, _ = layer.backward(r, cache, {})
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    yt = JOINS[type_name](ts, item)
    (yt * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-13)
    for dx, t in zip(dxs, ts, strict=True):
        np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- generator


class Builder:
    """A config under construction: its layers and the values they may read."""

    def __init__(self, rng: np.random.Generator, n: int):
        self.rng, self.n = rng, n
        self.layers: list[dict] = []
        self.shapes: dict[str, Shape] = {}  # every value by the name layers read it by
        self.readers: Counter = Counter()
        self.owners: list[tuple[str, dict, Shape]] = []  # dense/conv layers: (name, item, in)

    def value(self, prefer_unread: bool = True) -> str:
        names = list(self.shapes)
        unread = [v for v in names if not self.readers[v]]
        pool = unread if unread and prefer_unread and self.rng.random() < 0.5 else names
        return str(self.rng.choice(pool))

    def add(self, item: dict, inputs: list[str], shape: Shape) -> str:
        name = f"n{len(self.layers)}"
        self.layers.append({**item, "name": name, "inputs": inputs})
        for v in inputs:
            self.readers[v] += 1
        self.shapes[name] = shape
        if item["type"] in ("dense", "conv2d") and "share" not in item:
            self.owners.append((name, item, self.shapes[inputs[0]]))
        return name

    def layer(self, kind: str, v: str, **options) -> str | None:
        made = LAYER_TYPES[kind][0](self.rng, self.shapes[v], self.n, **options)
        if made is None:
            return None
        item, shape = made
        return self.add(item, [v], shape)

    def unary(self) -> None:
        v = self.value()
        for kind in self.rng.permutation(sorted(LAYER_TYPES)):
            if self.layer(str(kind), v) is not None:
                return

    def residual(self) -> None:
        """add(v, f(v)): f a dense (flat) or same-size conv (image), an activation, and
        sometimes a normalisation."""
        v = self.value()
        shape = self.shapes[v]
        if len(shape) == 1:
            h = self.layer("dense", v, out=shape[0])
        elif len(shape) == 3:
            h = self.layer("conv2d", v, same=True)
        else:
            return
        if NORMS and self.rng.random() < 0.4:
            h = self.layer(str(self.rng.choice(NORMS)), h) or h
        h = self.layer(str(self.rng.choice(ACTIVATIONS)), h)
        self.add({"type": "add"}, [v, h] if self.rng.random() < 0.5 else [h, v], shape)

    def join(self) -> None:
        """add or multiply two values of one shape, or concat two that fit."""
        a = self.value()
        shape = self.shapes[a]
        same = [v for v, s in self.shapes.items() if s == shape and v != a]
        if same and self.rng.random() < 0.6:
            b = str(self.rng.choice(same))
            kind = "add" if self.rng.random() < 0.6 else "multiply"
            self.add({"type": kind}, [a, b], shape)
            return
        axes = [
            (v, k)
            for v, s in self.shapes.items()
            if len(s) == len(shape)
            for k in range(len(s))
            if all(s[j] == shape[j] for j in range(len(s)) if j != k)
        ]
        if not axes:
            return
        b, k = axes[int(self.rng.integers(len(axes)))]
        axis = k - len(shape) if self.rng.random() < 0.3 else k  # negative axes too
        out = list(shape)
        out[k] += self.shapes[b][k]
        self.add({"type": "concat", "axis": axis}, [a, b], tuple(out))

    def share(self) -> None:
        """A layer that uses an earlier dense or conv layer's parameters on another value
        of the owner's input shape (repeating its settings, giving no arrays)."""
        if not self.owners:
            return
        owner, item, in_shape = self.owners[int(self.rng.integers(len(self.owners)))]
        fits = [v for v, s in self.shapes.items() if s == in_shape]
        if not fits:
            return
        v = str(self.rng.choice(fits))
        settings = {k: val for k, val in item.items() if k != "weight"}
        self.add({**settings, "share": owner}, [v], self.shapes[owner])

    def head(self, outputs: int) -> Shape:
        """Flatten and concatenate every value nothing reads, and end with a dense head."""
        ends = [v for v in self.shapes if not self.readers[v]]
        flat = []
        for v in ends:
            flat.append(v if len(self.shapes[v]) == 1 else self.layer("flatten", v))
        joined = flat[0]
        if len(flat) > 1:
            size = sum(self.shapes[v][0] for v in flat)
            joined = self.add({"type": "concat"}, flat, (size,))
        self.layer("dense", joined, out=outputs)
        return (outputs,)


def _input(rng: np.random.Generator, n: int, batched: bool) -> tuple[object, Shape]:
    if rng.random() < 0.5:
        shape: Shape = (int(rng.integers(2, 7)),)
    else:
        shape = (int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    x = rng.standard_normal((n, *shape)) * rng.uniform(0.5, 2.0)
    return ({"value": x.tolist(), "batched": True} if batched else x[0].tolist()), shape


def random_graph(seed: int) -> dict:
    """A valid random graph config (see the module docstring)."""
    rng = np.random.default_rng(seed)
    batched = rng.random() < 0.6
    n = int(rng.integers(2, 4)) if batched else 1
    g = Builder(rng, n)
    config: dict = {"name": f"graph-{seed}", "seed": seed}
    if rng.random() < 0.35:
        config["inputs"] = {}
        for key in ("x", "h"):
            config["inputs"][key], g.shapes[f"input.{key}"] = _input(rng, n, batched)
    else:
        config["input"], g.shapes["input"] = _input(rng, n, batched)
    steps = {"unary": g.unary, "residual": g.residual, "join": g.join, "share": g.share}
    kinds = list(steps)
    for _ in range(int(rng.integers(3, 8))):
        steps[kinds[int(rng.choice(4, p=[0.35, 0.25, 0.25, 0.15]))]]()
    loss = str(rng.choice(["mse", "upstream", "softmax_cross_entropy"]))
    out = g.head(int(rng.integers(2 if loss == "softmax_cross_entropy" else 1, 5)))
    config["layers"] = g.layers
    if loss == "softmax_cross_entropy":
        k = rng.integers(0, out[0], size=n)
        target: object = k.tolist() if batched else int(k[0])
        config["loss"] = {"type": loss, "target": target}
    else:
        t = rng.standard_normal((n, *out))
        config["loss"] = {
            "type": loss,
            ("grad" if loss == "upstream" else "target"): (
                t.tolist() if batched else t[0].tolist()
            ),
        }
    if rng.random() < 0.5:
        config["loss"]["reduction"] = str(rng.choice(["sum", "mean"]))
    return config


# --------------------------------------------------------------------------- both sides


def torch_gradients(problem, cfg: dict) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, {name: gradient}) of the same graph in torch: ``<layer>.delta`` for every
    layer, each network input by its value name, ``<owner>.<param>``."""
    network = problem.network
    values = {v: torch.tensor(a, requires_grad=True) for v, a in problem.inputs.items()}
    params = {
        node.name: {k: torch.tensor(a, requires_grad=True) for k, a in node.params.items()}
        for node in network
        if node.share is None
    }
    items = {item["name"]: item for item in cfg["layers"]}
    inputs = list(values.items())
    for node in network:
        item = items[node.name]
        xs = [values[v] for v in node.inputs]
        if takes_several(node.layer):
            y = JOINS[node.type](xs, item)
        else:
            y = LAYER_TYPES[node.type][1](xs[0], item, params[node.owner])
        y.retain_grad()
        values[node.name] = y
    loss = torch_loss(cfg["loss"], values[network.output], problem)
    loss.backward()
    grads = {f"{n.name}.delta": values[n.name].grad.numpy() for n in network}
    grads.update({v: t.grad.numpy() for v, t in inputs})
    for owner, ps in params.items():
        grads.update({f"{owner}.{p}": t.grad.numpy() for p, t in ps.items()})
    return float(loss.detach()), grads


def torch_loss(block: dict, y, problem):
    kind = block["type"]
    raw = np.asarray(block["grad" if kind == "upstream" else "target"], dtype=float)
    if not problem.batched:
        raw = raw[np.newaxis]
    if kind == "softmax_cross_entropy":
        per = F.cross_entropy(y, torch.tensor(raw.astype(np.int64)), reduction="none")
    else:
        t = torch.tensor(raw.reshape(tuple(y.shape)))
        terms = 0.5 * (t - y) ** 2 if kind == "mse" else t * y
        per = terms.reshape(y.shape[0], -1).sum(1)
    return per.mean() if block.get("reduction", "sum") == "mean" else per.sum()


def ours(problem) -> tuple[float, dict[str, np.ndarray]]:
    trace, grads = analytic_pass(problem, problem_params(problem))
    network = problem.network
    out = {f"{n.name}.delta": grads.deltas[n.name] for n in network}
    out.update({v: grads.deltas[v] for v in network.input_names})
    for owner, ps in grads.params.items():
        out.update({f"{owner}.{p}": g for p, g in ps.items()})
    return trace.loss, out


def assert_agree(problem, cfg: dict, got, want) -> None:
    """Every tensor to RTOL, with the absolute floors of tests/test_stacks_vs_torch.py:
    ATOL_FRACTION of the tensor's largest magnitude, ROUNDING of the graph's largest
    gradient, and a parameter gradient within VANISHING of its users' deltas counted as
    0 on both sides."""
    (loss, grads), (t_loss, t_grads) = got, want
    assert sorted(grads) == sorted(t_grads), cfg["name"]
    largest = max(max(np.abs(g).max(), np.abs(t_grads[k]).max()) for k, g in grads.items())
    network = problem.network
    failures = []
    for name, mine in [("loss", np.asarray(loss)), *grads.items()]:
        theirs = np.asarray(t_loss) if name == "loss" else t_grads[name]
        scale = max(np.abs(mine).max(), np.abs(theirs).max())
        atol = max(ATOL_FRACTION * scale, ROUNDING * largest)
        owner, _, param = name.rpartition(".")
        if owner in network and param != "delta":
            ref = max(np.abs(grads[f"{u.name}.delta"]).max() for u in network.users(owner))
            if scale <= VANISHING * ref:
                atol = max(atol, VANISHING * ref)
        if np.all(np.abs(mine - theirs) <= atol + RTOL * np.abs(theirs)):
            continue  # (assert_allclose's own check, without its cost on every tensor)
        try:
            np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=atol, err_msg=name)
        except AssertionError as err:
            failures.append(str(err).strip())
    if failures:
        kinds = " -> ".join(f"{i['name']}:{i['type']}" for i in cfg["layers"])
        raise AssertionError(f"{cfg['name']}: {kinds}\n\n" + "\n\n".join(failures))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: torch's threads cost more than they give (ten times, on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("seed", range(GRAPHS), ids=lambda s: f"graph-{s}")
def test_random_graph_matches_torch(seed):
    cfg = random_graph(seed)
    problem = problem_from_dict(cfg)
    assert not problem.warnings, problem.warnings  # every value is read
    assert_agree(problem, cfg, ours(problem), torch_gradients(problem, cfg))


CHECKED = 10  # graphs through the whole numeric check in the default run
CHECKED_SLOW = 500


def _passes_the_check(seed: int) -> None:
    report = run_check(problem_from_dict(random_graph(seed)))
    failing = [(c.name, c.failed, c.inconclusive) for c in report.checks if not c.passed]
    assert report.passed, (failing, report.blamed_layers())


@pytest.mark.parametrize("seed", range(CHECKED), ids=lambda s: f"graph-{s}")
def test_random_graph_passes_the_check(seed):
    """No false alarm: the element-wise check of a correct graph passes (the prefix
    cache runs only what lies downstream of each perturbed tensor)."""
    _passes_the_check(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(CHECKED, CHECKED_SLOW), ids=lambda s: f"graph-{s}")
def test_many_random_graphs_pass_the_check(seed):
    _passes_the_check(seed)


def test_generator_covers_every_kind_of_connection():
    """The graphs above hold forks, residual adds, multiplies, concats (negative axes too),
    shared dense and conv weights, several inputs, batchnorm, and every multi-input
    built-in."""
    seen: Counter = Counter()
    for seed in range(GRAPHS):
        cfg = random_graph(seed)
        seen["several-inputs" if "inputs" in cfg else "one-input"] += 1
        reads: Counter = Counter()
        for item in cfg["layers"]:
            seen[item["type"]] += 1
            reads.update(item["inputs"])
            if "share" in item:
                seen[f"shared-{item['type']}"] += 1
            if item["type"] == "concat" and item.get("axis", 0) < 0:
                seen["concat-negative-axis"] += 1
        seen["fork"] += any(k > 1 for k in reads.values())
    multi = {
        n for n in LAYERS if ORIGINS.get(("layer", n)) == "built-in" and takes_several(LAYERS[n])
    }
    wanted = multi | set(NORMS) | {"fork", "several-inputs", "one-input", "shared-dense"}
    wanted |= {"shared-conv2d", "concat-negative-axis"}
    missing = sorted(w for w in wanted if not seen[w])
    assert not missing, f"the {GRAPHS} graphs never have: {missing}"


def test_the_comparison_catches_a_wrong_branch():
    """...and can fail: a gradient 1e-7 off in one element is named."""
    cfg = random_graph(0)
    problem = problem_from_dict(cfg)
    loss, grads = ours(problem)
    name = next(k for k in grads if k.endswith(".weight"))
    g = grads[name].copy()
    g.flat[np.abs(g).argmax()] *= 1 + 1e-7
    with pytest.raises(AssertionError, match=name):
        assert_agree(problem, cfg, (loss, {**grads, name: g}), torch_gradients(problem, cfg))
