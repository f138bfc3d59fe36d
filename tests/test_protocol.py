"""The Layer protocol itself: registration and where each registered type came from."""

from __future__ import annotations

import pytest

import gradcheck_cli as gc
from gradcheck_cli import protocol


@pytest.fixture
def registry():
    """Types a test registers are removed afterwards (other tests list the built-ins)."""
    saved = (dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS))
    yield
    for live, old in zip((protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)


# --- registration ---------------------------------------------------------------------


def test_register_loss_registers_a_loss_only(registry):
    @gc.register_loss("protocol_test_loss")
    class Half(gc.Loss):
        def forward(self, y, target):
            return 0.5 * (y**2).reshape(len(y), -1).sum(axis=1), y

        def backward(self, cache):
            return cache

    assert protocol.LOSSES["protocol_test_loss"] is Half
    assert "protocol_test_loss" not in protocol.LAYERS
    assert protocol.ORIGINS[("loss", "protocol_test_loss")] == "built-in"
    assert Half.type_name == "protocol_test_loss"
    with pytest.raises(TypeError, match=r"needs a Loss subclass; use @register_layer for a layer"):
        gc.register_loss("protocol_test_bad")(gc.Layer)
    with pytest.raises(TypeError, match="needs a Loss subclass$"):
        gc.register_loss("protocol_test_bad")(object)
    with pytest.raises(TypeError, match="non-empty type name"):
        gc.register_loss("")


def test_register_layer_refuses_a_loss(registry):
    with pytest.raises(TypeError, match=r"needs a Layer subclass; use @register_loss for a loss"):
        gc.register_layer("protocol_test_bad")(gc.Loss)
    assert "protocol_test_bad" not in protocol.LAYERS
    assert "protocol_test_bad" not in protocol.LOSSES


def test_registering_from_records_the_origin_and_restores_it(registry):
    class Same(gc.Layer):
        def forward(self, x, params):
            return x, None

    with protocol.registering_from("my_layers.py"):
        gc.register_layer("protocol_test_inside")(Same)
        with protocol.registering_from("nested.py"):
            gc.register_layer("protocol_test_nested")(Same)
        gc.register_layer("protocol_test_after_nested")(Same)
    with pytest.raises(RuntimeError), protocol.registering_from("broken.py"):
        raise RuntimeError("a plugin that fails halfway")
    gc.register_layer("protocol_test_outside")(Same)
    origins = {k[1]: v for k, v in protocol.ORIGINS.items() if k[1].startswith("protocol_test")}
    assert origins == {
        "protocol_test_inside": "my_layers.py",
        "protocol_test_nested": "nested.py",
        "protocol_test_after_nested": "my_layers.py",
        "protocol_test_outside": "built-in",
    }
