"""Blame: which node's own backward a failing tensor's error comes from.

Uses the isolated verdicts of every node (engine/isolation.py). A tensor whose own
nodes computed their share of its gradient right can only be wrong because a delta
arriving from the loss is: the culprit is the nearest node, on the way from the loss
down to the tensor, whose own backward sends a wrong delta along that way (or the
loss, whose dy is wrong). In a plain stack that is the nearest layer above whose dx is
wrong; at a fork every reader of the value is a way down.
"""

from __future__ import annotations

from ..problem import Problem
from ..report import LayerVerdict, Report

#: The loss's name in ``report.layers`` and in blame.
LOSS = "loss"


def own_layers_ok(problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str) -> bool:
    """True when every node that computes a share of ``tensor``'s gradient computed it
    right in isolation (a network input has no such node)."""
    network = problem.network
    if network.is_input(tensor):
        return True
    owner, param = network.split_param(tensor)
    return all(
        verdicts[n.name].tensors_ok.get(f"{n.name}.{param}", True) is True
        or f"{n.name}.{param}" in verdicts[n.name].float32_only  # right in float64
        for n in network.users(owner)
    )


def wrong_readers(problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str) -> list[str]:
    """The nodes (and the loss) whose own backward passes a wrong delta on the way from
    the loss down to ``tensor``, nearest first (in the order of the network)."""
    found = _readers(problem, verdicts, tensor, lambda v, slot: v.tensors_ok.get(slot) is False)
    order = [n.name for n in problem.network] + [LOSS]
    return sorted(found, key=order.index)


def _readers(problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str, which) -> set[str]:
    """The nodes (and the loss) on the way from the loss down to ``tensor`` whose isolated
    verdict on the delta they pass that way satisfies ``which(verdict, slot)``."""
    network = problem.network
    found: set[str] = set()
    seen: set[str] = set()
    frontier = list(network.value_of(tensor))
    while frontier:
        value = frontier.pop(0)
        if value in seen:
            continue
        seen.add(value)
        if value == network.output and which(verdicts[LOSS], "input"):
            found.add(LOSS)
        for node, slot in network.readers(value):
            if which(verdicts[node.name], node.slot_name(slot)):
                found.add(node.name)
            frontier.append(node.name)
    return found


def unverified_readers(
    problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str
) -> list[str]:
    """The nodes (and the loss) on the way from the loss down to ``tensor`` whose own
    backward's delta was inconclusive in isolation: neither right nor wrong (a float32
    tensor the float64 rerun passed counts as right)."""
    return sorted(_readers(problem, verdicts, tensor, _unverified))


def partly_checked(problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str) -> list[str]:
    """The nodes (and the loss) between ``tensor`` and the loss, its own nodes included,
    whose isolated check did not take every element one by one (a sample, or directions
    alone): right on what they took, no proof for the rest."""
    network = problem.network
    names = [n.name for n in network.below(tensor)] + [LOSS]
    if not network.is_input(tensor):
        names += [n.name for n in network.users(network.split_param(tensor)[0])]
    return sorted({n for n in names if n in verdicts and not verdicts[n].every_element})


def _unverified(verdict: LayerVerdict, slot: str) -> bool:
    return verdict.tensors_ok.get(slot, True) is None and slot not in verdict.float32_only


def blame(report: Report, problem: Problem) -> None:
    """Point each failing tensor whose own layer is right at the nearest node whose own
    backward sends a wrong delta towards it (``consequence_of``).

    A tensor whose isolated check passed can only be wrong because a delta arriving
    from below the loss is: blame the first node, in network order from the tensor on,
    whose dx for the path (or the loss, whose dy) is wrong.
    """
    verdicts = {v.name: v for v in report.layers}
    if not verdicts:
        return
    for c in report.checks:
        if c.passed or not own_layers_ok(problem, verdicts, c.name):
            continue
        wrong = wrong_readers(problem, verdicts, c.name)
        if wrong:
            c.consequence_of = wrong[0]


def culprits(problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str) -> set[str]:
    """The nodes (and the loss) whose own backward, wrong in isolation, reaches
    ``tensor``'s gradient: its own nodes' share of it, and the deltas on its way up."""
    network = problem.network
    found = set(wrong_readers(problem, verdicts, tensor))
    if not network.is_input(tensor):
        owner, param = network.split_param(tensor)
        found.update(
            n.name
            for n in network.users(owner)
            if verdicts[n.name].tensors_ok.get(f"{n.name}.{param}", True) is False
        )
    return found


def mark_unselected(report: Report, problem: Problem) -> None:
    """Mark each layer whose isolated disagreement reaches none of the checked tensors
    (``--only`` left out what it computes wrong): the report shows it, the verdict does
    not count it (report.py ``LayerVerdict.unselected``)."""
    verdicts = {v.name: v for v in report.layers}
    if not any(v.disagrees for v in report.layers):
        return
    reached: set[str] = set()
    for c in report.checks:
        reached |= culprits(problem, verdicts, c.name)
    for v in report.layers:
        v.unselected = v.disagrees and v.name not in reached


def unresolved_notes(report: Report) -> list[str]:
    """What the report says of a layer whose own backward disagrees in isolation while
    no gradient of the network disagrees: the verdict is the layer's (report.py
    ``Report.failed``), and this says why the network-level check let it through; or,
    for one outside an ``--only`` selection, that it is not counted."""
    notes = []
    for v in report.layers:
        if not v.disagrees:
            continue
        what = v.diagnosis or ", ".join(v.failed_tensors)
        who = "the loss" if v.name == LOSS else f"layer {v.name}"
        if v.unselected:
            notes.append(
                f"{who}: its own backward disagrees in isolation ({what}), but what is "
                "wrong reaches no checked tensor's gradient (the --only selection): not "
                "counted in the verdict"
            )
            continue
        if any(c.failed or c.taylor_passed is False for c in report.checks):
            continue  # a network gradient disagrees: nothing to explain
        unresolved = [c.name for c in report.checks if c.inconclusive]
        if unresolved:  # not "agrees": some of it could not be resolved at all
            note = (
                f"{who}: its own backward disagrees in isolation ({what}); no gradient of "
                "the network disagrees, but the network-level differences could not "
                f"resolve some elements of {', '.join(unresolved)} (inconclusive)"
            )
            notes.append(note)
            continue
        note = (
            f"{who}: its own backward "
            f"disagrees in isolation ({what}), though every gradient of the network agrees "
            "within its error estimate: what is wrong is below what differences of the "
            "whole loss resolve (not below what the layer alone resolves), or cancels on "
            "the way to the loss (one value fed to two inputs whose gradients are swapped)"
        )
        if report.float32:
            note += (
                "; in float32 the analytic side's rounding may be all of it, so the run is "
                "inconclusive (exit 3): re-run with dtype: float64 to settle it"
            )
        notes.append(note)
    return notes


def path_ok(problem: Problem, verdicts: dict[str, LayerVerdict], tensor: str) -> tuple[bool, int]:
    """(every backward between ``tensor`` and the loss passes in isolation, the kinks
    those isolated checks met, the tensor's own layers included)."""
    network = problem.network
    below = network.below(tensor)
    ok = own_layers_ok(problem, verdicts, tensor) and not wrong_readers(problem, verdicts, tensor)
    names = [n.name for n in below] + [LOSS]
    ok = ok and all(n in verdicts for n in names)
    return ok, sum(verdicts[n].kinks for n in names if n in verdicts)
