"""Element-wise checking: which tensors and elements, their differences and verdicts.

Works on any objective (engine/objective.py): the whole network, or one layer alone.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from collections.abc import Callable

import numpy as np

from ..how_checked import HowChecked
from ..problem import Mode, Problem
from ..report import TensorCheck
from .compare import ElementVerdict, Tolerances
from .passes import OutOfTime
from .verdict import judge_elements

#: Called with the number of elements just finished.
Tick = Callable[[int], None]

#: Key of ``TensorCheck.extra`` holding the elements with a non-differentiable point in
#: evidence (engine/verdict.py; bool, the tensor's user shape).
JUMP_KEY = "failed_at_jump"


def is_input_name(tensor: str) -> bool:
    """A network input (``input``, ``input.x``) or a layer's input slot in isolation
    (``input[1]``): no layer owns it. Layers may not be called ``input``."""
    return tensor == "input" or tensor.startswith(("input.", "input["))


def select_tensors(problem: Problem) -> tuple[list[str], list[str]]:
    """(checked, skipped) tensor names under the ``only`` globs."""
    names = problem.tensor_names()
    only = problem.settings.only
    if not only:
        return names, []
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in only)]
    return chosen, [n for n in names if n not in chosen]


def select_elements(size: int, problem: Problem, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check in a tensor of ``size`` elements (sorted)."""
    s = problem.settings
    if s.mode in (Mode.SAMPLE, Mode.BUDGET) and s.sample is not None and s.sample < size:
        return np.sort(rng.choice(size, size=s.sample, replace=False))
    return np.arange(size)


def user_shape(problem: Problem, tensor: str) -> tuple[int, ...]:
    """The shape the user wrote a tensor in (a 2-D conv kernel stays (kh, kw))."""
    network = problem.network
    if network.is_input(tensor):
        return tuple(problem.input_user_shapes()[tensor])
    owner, param = network.split_param(tensor)
    node = network.node(owner)
    return tuple(node.user_shapes.get(param, node.params[param].shape))


def check_elements(
    objective, tensor: str, index: np.ndarray, tol: Tolerances, max_memory: int, tick=None
) -> ElementVerdict:
    """Element-wise verdict of the elements ``index`` of one tensor of any objective."""
    analytic = np.asarray(objective.analytic[tensor]).reshape(-1)[index]
    return judge_elements(objective, tensor, index, analytic, tol, max_memory, tick)


#: Elements of a tensor's first block; later blocks are sized to take about
#: BLOCK_SECONDS, growing at most GROWTH-fold. A Ctrl-C or the end of a time budget then
#: finds at most one block's work unrecorded, and a tensor of fast layers still takes
#: only a few calls.
FIRST_BLOCK, BLOCK_SECONDS, GROWTH = 8, 0.5, 8


def check_tensor(
    problem: Problem, objective, tensor: str, index: np.ndarray, tol: Tolerances, tick
) -> TensorCheck:
    """Check the chosen elements of one network tensor, shaped as the user wrote it.

    The elements are judged in blocks (each element's verdict is its own, so blocks
    change no value). When the time budget runs out (OutOfTime) the blocks finished so
    far are the tensor's check; on Ctrl-C they travel on the KeyboardInterrupt as
    ``partial_check`` (mode ``interrupted``), for the partial report (engine/check.py).
    """
    mode = HowChecked(problem.settings.mode.value)
    shape = user_shape(problem, tensor)
    verdicts: list[ElementVerdict] = []
    done, size = 0, FIRST_BLOCK
    try:
        while done < len(index):
            block = index[done : done + size]
            started = time.perf_counter()
            verdicts.append(
                check_elements(objective, tensor, block, tol, problem.settings.max_memory, tick)
            )
            done += len(block)
            spent = time.perf_counter() - started
            size = int(min(GROWTH * len(block), len(block) * BLOCK_SECONDS / max(spent, 1e-9)))
            size = max(size, len(block))
    except OutOfTime:
        pass  # the time budget: what was finished is the check
    except KeyboardInterrupt as stop:
        if done:
            stop.partial_check = tensor_check(  # type: ignore[attr-defined]
                tensor, objective.analytic[tensor], index[:done], _joined(verdicts), shape, mode
            )
            stop.partial_check.mode = HowChecked.INTERRUPTED  # type: ignore[attr-defined]
        raise
    return tensor_check(
        tensor, objective.analytic[tensor], index[:done], _joined(verdicts), shape, mode
    )


def _joined(verdicts: list[ElementVerdict]) -> ElementVerdict:
    """One verdict of consecutive blocks' verdicts, in their order."""
    if len(verdicts) == 1:
        return verdicts[0]
    fields = [f.name for f in dataclasses.fields(ElementVerdict)]
    if not verdicts:
        return ElementVerdict(*(np.zeros(0) for _ in fields[:5]))
    return ElementVerdict(
        **{name: np.concatenate([getattr(v, name) for v in verdicts]) for name in fields}
    )


def tensor_check(
    tensor: str,
    analytic: np.ndarray,
    index: np.ndarray,
    v: ElementVerdict,
    shape: tuple[int, ...],
    mode: HowChecked,
) -> TensorCheck:
    """A TensorCheck in ``shape`` from the verdict ``v`` on the flat elements ``index``."""
    size = analytic.size

    def scatter(values, fill, dtype=np.float64):
        out = np.full(size, fill, dtype=dtype)
        out[index] = values
        return out.reshape(shape)

    layer, _, param = ("", "", "") if is_input_name(tensor) else tensor.rpartition(".")
    return TensorCheck(
        name=tensor,
        layer=layer or None,
        param=param if layer else None,
        analytic=analytic.astype(np.float64).reshape(shape),
        numeric=scatter(v.numeric, np.nan),
        checked_mask=scatter(True, False, bool),
        failed_mask=scatter(v.failed, False, bool),
        kink_mask=scatter(v.kink, False, bool),
        abs_error=scatter(v.abs_error, np.nan),
        rel_error=scatter(v.rel_error, np.nan),
        mode=mode if len(index) < size else HowChecked.FULL,
        extra={JUMP_KEY: scatter(v.jump, False, bool)},
        inconclusive_mask=scatter(v.inconclusive, False, bool),
        error_bound=scatter(v.bound, np.nan),
    )


def unchecked(problem: Problem, objective, tensor: str, mode: HowChecked) -> TensorCheck:
    """A tensor judged without element-wise checks (a passed direction)."""
    shape = user_shape(problem, tensor)
    return TensorCheck.unchecked(tensor, objective.analytic[tensor].reshape(shape), mode)
