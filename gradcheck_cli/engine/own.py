"""Which layers and losses are gradcheck's own code: the purity probes
(engine/purity.py), the copies probe (engine/interference.py) and the fast-path probe
(engine/fastpaths.py) look only at the others, whose code a user wrote."""

from __future__ import annotations

#: The methods through which the engine runs a layer or loss: each must be gradcheck's
#: own for the object to be (``own_code``).
RUN_METHODS = (
    "forward",
    "backward",
    "forward_perturbed",
    "forward_local",
    "perturbed_local",
    "output_shape",
)


def own_code(obj: object) -> bool:
    """Whether a layer or loss is gradcheck's own code, which its tests prove pure (every
    built-in probes clean: tests/test_purity.py): a class defined in gradcheck_cli whose
    every method the engine calls is defined there too (a plugin may replace a
    built-in's ``forward`` in place: hunt 18), set on no instance, but for the wrappers
    that call a plugin's functions (``functions`` pairs, the ``function`` loss). A
    plugin's subclass of a built-in, or a plugin registering a built-in's name, is the
    plugin's code."""
    from ..layers.functions import FunctionPair
    from ..losses.function import FunctionLoss

    if isinstance(obj, FunctionPair | FunctionLoss):
        return False
    if not type(obj).__module__.startswith("gradcheck_cli."):
        return False
    if any(name in getattr(obj, "__dict__", {}) for name in RUN_METHODS):
        return False
    for name in RUN_METHODS:
        method = getattr(type(obj), name, None)
        module = getattr(method, "__module__", None)
        if method is not None and not (module or "").startswith("gradcheck_cli."):
            return False
    return True
