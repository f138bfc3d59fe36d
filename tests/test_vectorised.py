"""Vectorised == plain: stacking perturbed copies must not change a single numeric value.

The vectorised path evaluates many perturbed copies per call (one P*N batch, chunked);
the plain path (``chunk=1``) one copy per call. Both must give the same central
differences to 1e-12 relative, for the input and every parameter, on a network of
built-in layers. That holds only if every layer is row-consistent (row n of the output
never depends on how many rows the batch has; a plain 2-D gemm breaks this through BLAS
blocking), which is why the comparison is made here on real layers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from engine_toys import Affine, Tanh, make_problem

import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
import gradcheck_cli.losses  # noqa: F401
from gradcheck_cli.engine import numeric, passes
from gradcheck_cli.engine.objective import NetworkObjective
from gradcheck_cli.problem import CheckSettings, LayerSpec, LossSpec, Problem
from gradcheck_cli.protocol import LAYERS, LOSSES, Layer, perturbed_by_loop

RTOL = 1e-12

ARCH = [
    ("conv", "conv2d", {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}),
    ("pool", "maxpool2d", {"kernel_size": 2}),
    ("act", "relu", {}),
    ("flat", "flatten", {}),
    ("fc", "dense", {"out_features": 5}),
]


def build(arch, x: np.ndarray, classes: list[float], seed: int = 0) -> Problem:
    """A batched Problem of built-in layers [(name, type, fields)] on x (N, ...), with a
    softmax_cross_entropy loss and one class index per example."""
    rng = np.random.default_rng(seed)
    specs, shape = [], x.shape[1:]
    for name, type_, fields in arch:
        layer = LAYERS[type_](**fields)
        out = tuple(layer.output_shape(shape))
        specs.append(LayerSpec(name, type_, layer, layer.init_params(shape, rng), shape, out))
        shape = out
    loss = LOSSES["softmax_cross_entropy"]()
    target = loss.prepare_target(np.array(classes), shape)
    return Problem(
        path="<test>",
        name="built-in",
        seed=seed,
        dtype="float64",
        x=x,
        batched=True,
        input_user_shape=x.shape,
        layers=specs,
        loss=LossSpec("softmax_cross_entropy", loss, target),
        settings=CheckSettings(),
    )


def built_in_network(seed: int = 0) -> Problem:
    """conv2d (stride 2, padding 1) -> maxpool -> relu -> flatten -> dense ->
    softmax_cross_entropy, on a batch of 3 examples of shape (2, 9, 9)."""
    x = np.random.default_rng(seed).standard_normal((3, 2, 9, 9))
    return build(ARCH, x, [1.0, 4.0, 0.0], seed=seed + 1)


def objective_of(problem: Problem):
    params = passes.problem_params(problem)
    trace, grads = passes.analytic_pass(problem, params)
    return NetworkObjective.build(problem, trace, grads, passes.problem_params(problem, np.float64))


def numerics(objective, tensor: str, chunk: int | None) -> np.ndarray:
    index = np.arange(objective.tensors()[tensor].size)
    return numeric.differences(objective, tensor, index, 1e-6, 1 << 30, chunk=chunk).central


def assert_vectorised_equals_plain(problem: Problem, chunks=(None, 7)) -> None:
    """Every tensor's central differences, many copies per call vs one, bit for bit, in
    every way copies travel (engine/local.py): whole batches, the rows they reach, a few
    changed positions."""
    for rows, local in ((False, False), (True, False), (True, True)):
        objective = objective_of(problem)
        objective.rows, objective.local = rows, local
        for tensor in objective.tensors():
            plain = numerics(objective, tensor, chunk=1)
            for chunk in chunks:
                np.testing.assert_array_equal(
                    numerics(objective, tensor, chunk),
                    plain,
                    err_msg=f"{tensor}, {chunk or 'default'} copies per call, {rows=} {local=}",
                )


def test_copies_as_the_rows_they_reach_give_the_numbers_of_whole_batches():
    """Batched inputs: a perturbed input element runs only its own example, and the other
    examples keep their cached losses; the numbers are those of whole batches, bit for
    bit. Copies carried as a few changed positions agree with them up to rounding."""
    problem = built_in_network()
    results = {}
    for rows, local in ((False, False), (True, False), (True, True)):
        objective = objective_of(problem)
        objective.rows, objective.local = rows, local
        results[rows, local] = {t: numerics(objective, t, None) for t in objective.tensors()}
    for t, whole in results[False, False].items():
        np.testing.assert_array_equal(results[True, False][t], whole, err_msg=t)
        scale = float(np.abs(whole).max())
        np.testing.assert_allclose(results[True, True][t], whole, rtol=0, atol=1e-8 * scale)


def test_dense_weights_reaching_every_example_give_the_numbers_of_whole_batches():
    """An MLP on a batch: a hidden weight moves its unit in every example, so each copy
    carries whole batches as rows, handed to the loss with the target's tiling; the
    numbers are those of whole batches and of one copy per call, bit for bit (a batch
    of 8 one-hot targets, and of 3)."""
    arch = [
        ("fc1", "dense", {"out_features": 7}),
        ("act", "tanh", {}),
        ("fc2", "dense", {"out_features": 10}),
    ]
    for n in (8, 3):
        x = np.random.default_rng(n).standard_normal((n, 6))
        problem = build(arch, x, [float(k % 10) for k in range(n)], seed=n)
        assert_vectorised_equals_plain(problem)
        results = {}
        for rows in (False, True):
            objective = objective_of(problem)
            objective.rows, objective.local = rows, rows
            results[rows] = {t: numerics(objective, t, None) for t in objective.tensors()}
        for t in ("fc1.weight", "fc1.bias", "fc2.weight"):
            np.testing.assert_array_equal(results[True][t], results[False][t], err_msg=t)


def test_built_in_network_vectorised_equals_plain():
    problem = built_in_network()
    assert problem.tensor_names() == [
        "input",
        "conv.weight",
        "conv.bias",
        "fc.weight",
        "fc.bias",
    ]
    assert_vectorised_equals_plain(problem)


#: Issue 11's single-input layers, one after another (layernorm's gamma and beta go
#: through its forward_perturbed).
NEW_ARCH = [
    ("up", "upsample2d", {"scale": [2, 1]}),
    ("ln", "layernorm", {}),
    ("act", "gelu", {}),
    ("hwc", "transpose", {"axes": [1, 2, 0]}),
    ("chw", "transpose", {"axes": [2, 0, 1]}),
    ("gap", "global_avgpool2d", {}),
    ("fc", "dense", {"out_features": 5}),
]


def test_issue_11_layers_vectorised_equal_plain():
    x = np.random.default_rng(7).standard_normal((3, 2, 3, 4))
    problem = build(NEW_ARCH, x, [1.0, 4.0, 0.0], seed=8)
    assert problem.tensor_names() == ["input", "ln.gamma", "ln.beta", "fc.weight", "fc.bias"]
    assert_vectorised_equals_plain(problem)


def test_default_chunks_stack_many_copies():
    """The comparison above is meaningful only if the default path really stacks."""
    objective = objective_of(built_in_network())
    for tensor in objective.tensors():
        per_call = numeric.chunk_size(objective.bytes_per_copy(tensor), 1 << 30)
        assert per_call >= numeric.MIN_CHUNK


class SizeDependent(Layer):
    """Claims batch independence but adds a term that depends on the batch size: the
    kind of layer (a plain 2-D gemm, in effect) the comparison exists to catch."""

    batch_independent = True

    def forward(self, x, params):
        return x * (1.0 + 1e-9 * len(x)), None

    def backward(self, dy, cache, params):
        return dy, {}


def test_the_comparison_catches_a_row_inconsistent_layer():
    rng = np.random.default_rng(3)
    x, target = rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    layers = [("fc", Affine(3)), ("odd", SizeDependent())]
    with pytest.raises(AssertionError):
        assert_vectorised_equals_plain(make_problem(layers, x, target, batched=True))


def test_plugin_without_forward_perturbed_falls_back_and_matches():
    rng = np.random.default_rng(4)
    x, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    layers = [("fc1", Affine(5)), ("act", Tanh()), ("fc2", Affine(2))]
    assert not Affine.supports_perturbed
    assert_vectorised_equals_plain(make_problem(layers, x, target, batched=True))


@pytest.mark.parametrize("layer_name", ["conv", "fc"])
def test_forward_perturbed_equals_the_loop(layer_name):
    """Built-in forward_perturbed (linearity, no weight copies) vs one forward per copy."""
    problem = built_in_network(seed=5)
    objective = objective_of(problem)
    spec = problem.network.node(layer_name)
    assert spec.layer.supports_perturbed
    x = objective.values[spec.inputs[0]]
    rng = np.random.default_rng(6)
    for name, value in spec.params.items():
        index = np.arange(value.size)
        delta = rng.uniform(-1e-3, 1e-3, value.size)
        fast = spec.layer.forward_perturbed(x, spec.params, name, index, delta)
        loop = perturbed_by_loop(spec.layer, x, spec.params, name, index, delta)
        assert fast.shape == loop.shape == (value.size, *x.shape[:1], *spec.out_shape)
        # relative to the output's scale: entries near 0 carry the rounding of the others
        scale = float(np.abs(loop).max())
        np.testing.assert_allclose(fast, loop, rtol=RTOL, atol=RTOL * scale, err_msg=name)
        # and each copy really is perturbed (the comparison is not vacuous)
        base, _ = spec.layer.forward(x, spec.params)
        assert np.all(np.any(loop.reshape(len(index), -1) != base.reshape(1, -1), axis=1))


def test_chunk_tuner_grows_while_it_pays_and_keeps_the_fastest_within_the_budget():
    def run(tuner, cost_per_copy, calls=12):
        seen = []
        for _ in range(calls):
            size = tuner.next_size()
            seen.append(size)
            tuner.record(size, cost_per_copy(size) * size)
        return seen

    # each size tried is timed TIMINGS times before the search moves on
    twice = [size for size in (400, 800, 1600, 3200) for _ in range(numeric.TIMINGS)]
    # cheaper per copy up to 1600, dearer beyond: grows to 1600, tries 3200, keeps 1600
    grows = numeric.ChunkTuner(estimate=400, copies=10**7, limit=10**6)
    seen = run(grows, lambda n: 1.0 / min(n, 1600) + (n > 1600))
    assert seen[: len(twice)] == twice and seen[-1] == 1600
    # doubling never pays: halves once, keeps the cheapest
    shrinks = numeric.ChunkTuner(estimate=400, copies=10**7, limit=10**6)
    seen = run(shrinks, lambda n: n)
    assert seen[:: numeric.TIMINGS][:4] == [400, 800, 200, 100]
    assert seen[-1] == 25  # halves down to MIN_CHUNK
    # the memory budget is never passed, and few copies are not worth a search
    capped = numeric.ChunkTuner(estimate=400, copies=10**7, limit=500)
    assert max(run(capped, lambda n: 1.0 / n)) <= 500
    assert run(numeric.ChunkTuner(estimate=400, copies=1000), lambda n: 1.0) == [400] * 12


def test_a_size_is_judged_by_its_fastest_timing_not_its_first():
    """The first call at a new size pays for what later calls reuse (and one timing on a
    shared machine moves by 10-20%): a size whose first call was slow is kept when its
    second shows it the fastest."""
    tuner = numeric.ChunkTuner(estimate=100, copies=10**6, limit=10**6)
    first_at = {100}  # the estimate's size runs warm (the tensor's calls so far had it)
    seen = []
    for _ in range(10):
        size = tuner.next_size()
        seen.append(size)
        per_copy = 1.0 / min(size, 200) + (size > 200)  # best: 200
        slow = size not in first_at  # a first call at a new size costs three times more
        first_at.add(size)
        tuner.record(size, size * per_copy * (3.0 if slow else 1.0))
    # timed once, 200 would look dearer than 100 (3 / 200 > 1 / 100) and be dropped
    assert tuner.best == 200 and seen[-1] == 200


def test_one_tuner_per_tensor_carries_its_search_across_calls():
    """A tensor is judged in many ``evaluate`` calls, most too small to search alone:
    the tuner kept on the objective goes on where the last call stopped, and every call
    stays within its own memory budget."""

    class Objective:  # numeric.tuner_for keeps the tuners on the objective
        pass

    objective = Objective()
    seen = []
    for _ in range(40):  # calls of 300 copies each, 18 copies per call at first
        tuner = numeric.tuner_for(objective, "w", 18, 300, 10**6)
        left = 300
        while left:
            size = min(tuner.next_size(), left)
            seen.append(size)
            tuner.record(size, size * (1.0 / min(size, 150) + (size > 150)))  # best: 150
            left -= size
    assert numeric.tuner_for(objective, "w", 18, 300, 10**6) is tuner
    assert sorted(tuner._rates) == [18, 36, 72, 144, 288]  # each call went on searching
    assert tuner.best == tuner.next_size() == 144  # 288 cost more
    assert numeric.tuner_for(objective, "b", 18, 300, 10**6) is not tuner
    assert numeric.tuner_for(objective, "w", 18, 300, 100).next_size() == 100


class _Allocating:
    """An objective whose copies each allocate ``per_copy`` bytes and whose calls cost
    1 ms of CPU (the tuner measures CPU time), so that every doubling of a call pays;
    its static estimate ``bytes_per_copy`` says ``estimate``."""

    f0 = 0.0

    def __init__(self, per_copy: int, estimate: int):
        self.per_copy, self.estimate, self.sizes = per_copy, estimate, []

    def tensors(self):
        return {"w": np.zeros(5000)}

    def bytes_per_copy(self, tensor):
        return self.estimate

    def losses(self, tensor, index, delta):
        self.sizes.append(len(index))
        held = np.zeros(len(index) * self.per_copy // 8)  # calloc: counted, not touched
        end = time.thread_time() + 1e-3
        while time.thread_time() < end:
            pass
        return np.zeros(len(index)) + held[:0].sum()


@pytest.mark.parametrize("estimate_share", [1 / 100, 1.0, 100.0])
def test_the_tuner_grows_a_call_only_up_to_its_measured_bytes_limit(estimate_share):
    """However much larger calls would pay, a call's copies stay within
    numeric.TUNE_BYTES of the bytes a copy really takes (peak memory, issue 14),
    whatever the static estimate says: too low, right or far too high."""
    per_copy = numeric.TUNE_BYTES // 40
    objective = _Allocating(per_copy, int(per_copy * estimate_share))
    numeric.evaluate(objective, "w", np.arange(5000), np.ones((5000, 2)), 1 << 40)
    measured = objective._copy_bytes["w"]
    assert per_copy <= measured <= 1.1 * per_copy
    assert objective.sizes[0] == numeric.MEASURE_COPIES  # the measured call
    assert max(objective.sizes) > numeric.chunk_size(measured, 1 << 40)  # it did grow
    assert max(objective.sizes) * per_copy <= numeric.TUNE_BYTES


def test_copies_are_measured_once_per_tensor_and_within_the_memory_budget():
    """The measured call takes at most the copies the memory budget allows by the
    static estimate; later calls size themselves by the measurement, never past the
    budget."""
    per_copy = 1 << 20
    objective = _Allocating(per_copy, per_copy)
    budget = 8 * per_copy
    numeric.evaluate(objective, "w", np.arange(100), np.ones((100, 2)), budget)
    numeric.evaluate(objective, "w", np.arange(100), np.ones((100, 2)), budget)
    assert objective.sizes[0] == 8 and list(objective._copy_bytes) == ["w"]
    assert max(objective.sizes) * per_copy <= budget


def test_a_caller_s_own_tracemalloc_is_left_alone():
    """Under the caller's tracemalloc the measurement is skipped (the static estimate
    stands) and tracing goes on: gradcheck never stops or resets someone else's."""
    import tracemalloc

    objective = _Allocating(4096, 12345)
    tracemalloc.start()
    try:
        numeric.evaluate(objective, "w", np.arange(50), np.ones((50, 2)), 1 << 40)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    assert objective._copy_bytes["w"] == 12345


def test_small_tensors_are_not_measured():
    """A tensor of at most MEASURE_ABOVE elements keeps the static estimate: its
    copies take a few calls whatever their size, and tracing would cost start-up."""

    class Small(_Allocating):
        def tensors(self):
            return {"w": np.zeros(numeric.MEASURE_ABOVE)}

    objective = Small(4096, 12345)
    numeric.evaluate(objective, "w", np.arange(50), np.ones((50, 2)), 1 << 40)
    assert objective._copy_bytes["w"] == 12345
    assert numeric.MEASURE_COPIES not in objective.sizes[:1]


def test_the_check_runs_on_one_blas_thread_and_restores_the_count():
    from gradcheck_cli.engine import blas, run_check

    controls = blas._controls()
    if controls is None:
        pytest.skip("no OpenBLAS thread control in this process")
    get, put = controls
    before = get()
    seen = []

    class Spy(Layer):
        batch_independent = True

        def forward(self, x, params):
            seen.append(get())
            return x, None

        def backward(self, dy, cache, params):
            return dy, {}

    rng = np.random.default_rng(8)
    x, target = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    run_check(make_problem([("spy", Spy())], x, target, batched=True))
    assert seen and set(seen) == {1}
    assert get() == before
