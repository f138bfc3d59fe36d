"""The Layer protocol itself: registration, origins, and the declarations a layer class
makes about itself (input kind, parameter axes and shorthands, sizes a weight says, the
size guard, schema bounds, explain's derivation), which plugins use exactly as built-ins do.
"""

from __future__ import annotations

import numpy as np
import pytest
from layer_cases import first_of_each_type

import gradcheck_cli as gc
import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
import gradcheck_cli.losses  # noqa: F401
from gradcheck_cli import protocol
from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine.explain import Accumulation, LocalDerivative, Note, explain
from gradcheck_cli.errors import ConfigError
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.protocol import ElementWise, InputKind
from gradcheck_cli.schema import config_schema


@pytest.fixture
def registry():
    """Types a test registers are removed afterwards (other tests list the built-ins)."""
    saved = (dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS))
    yield
    for live, old in zip((protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)


def messages(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        problem_from_dict(doc)
    return [f"{i.path}: {i.message}" for i in info.value.issues]


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


# --- what a layer class declares about itself ------------------------------------------


def test_the_defaults_suit_a_plain_element_wise_layer():
    layer = gc.Layer()
    assert gc.Layer.input_kind is InputKind.ANY
    assert gc.Layer.param_axes == gc.Layer.param_defaults == gc.Layer.param_shorthands == {}
    assert gc.Layer.inferred_from == {}
    assert gc.Layer.field_bounds == {} and gc.Layer.derivation is None
    assert gc.Layer.sizes_from("weight", (3, 4)) == {}
    assert layer.from_written("weight", np.ones((2, 2)), (1, 1, 2, 2)) is None
    assert layer.param_sizes((4,), (4,)) == {}


def test_needs_flat_input_is_the_earlier_spelling_of_flat():
    class Old(gc.Layer):
        needs_flat_input = True

    class OldSub(Old):
        pass

    class Explicit(gc.Layer):
        needs_flat_input = True
        input_kind = InputKind.IMAGE

    assert Old.input_kind is OldSub.input_kind is InputKind.FLAT
    assert Explicit.input_kind is InputKind.IMAGE


def test_every_built_in_declares_an_explanation():
    for name in protocol.LAYERS:
        if protocol.ORIGINS[("layer", name)] == "built-in":
            layer = first_of_each_type()[name].construct()
            assert isinstance(layer.derivation, protocol.Derivation), name


def test_a_conv2d_subclass_inherits_every_declaration(registry):
    """The loader dispatches on declarations, not type names: a subclass registered under
    its own name gets conv2d's sizes from its weight, the 2-D kernel shorthand, the 2-D
    input as one channel, its axes in messages and the conv explanation."""
    gc.register_layer("protocol_test_conv")(type("MyConv", (Conv2d,), {}))
    doc = {
        "input": [[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 1.0, 1.0]],
        "layers": [{"type": "protocol_test_conv", "name": "c", "weight": [[1, -1], [2, 0.5]]}],
        "loss": {"type": "upstream", "grad": [[1, 2], [3, 4]]},
    }
    problem = problem_from_dict(doc)
    (spec,) = problem.layers
    assert spec.in_shape == (1, 3, 3) and spec.params["weight"].shape == (1, 1, 2, 2)
    assert isinstance(explain(problem).steps[0].details[0], Accumulation)
    doc["layers"][0]["weight"] = [[[1.0, 2.0]]]
    assert messages(doc) == [
        "layers[0].weight: a protocol_test_conv weight has the axes (out_channels, in_channels, "
        "kh, kw) (or (kh, kw) for one channel), got shape [1, 1, 2]; fix it or give "
        "out_channels and kernel_size"
    ]


class Gain(gc.Layer):
    """y = gain * x per feature of a flat input; declares everything a layer can."""

    param_names = ("gain",)
    input_kind = InputKind.FLAT
    param_axes = {"gain": "(features,)"}
    param_defaults = {"gain": "init, for every feature"}
    param_shorthands = {"gain": "(features, 1), a column"}
    inferred_from = {"gain": ("features",)}
    field_bounds = {"features": {"minimum": 1}, "init": {"exclusiveMinimum": 0}}
    derivation = ElementWise("f'(x) = gain", activation=False)
    batch_independent = True

    def __init__(self, features: int, init: float = 1.0):
        self.features, self.init = features, init

    @classmethod
    def sizes_from(cls, name, shape):
        return {"features": shape[0]} if len(shape) in (1, 2) else {}

    def from_written(self, name, value, needed):
        return value.reshape(needed) if value.shape == (*needed, 1) else None

    def param_sizes(self, in_shape, out_shape):
        return {"gain": ("features", self.features)}

    def init_params(self, in_shape, rng):
        return {"gain": np.full(in_shape, self.init)}

    def forward(self, x, params):
        return x * params["gain"], x

    def backward(self, dy, cache, params):
        return dy * params["gain"], {"gain": (dy * cache).sum(axis=0)}


def gain_doc(**item) -> dict:
    return {
        "input": [0.5, -1.0, 2.0],
        "layers": [{"type": "protocol_test_gain", "name": "g", **item}],
        "loss": {"type": "mse", "target": [0.0, 0.0, 0.0]},
    }


def test_a_plugin_declares_its_own_sizes_shorthands_and_explanation(registry):
    gc.register_layer("protocol_test_gain")(Gain)
    problem = problem_from_dict(gain_doc(gain=[[2.0], [3.0], [4.0]]))  # features from gain
    (spec,) = problem.layers
    np.testing.assert_array_equal(spec.params["gain"], [2.0, 3.0, 4.0])
    assert spec.user_shapes["gain"] == (3, 1)
    (detail,) = explain(problem).steps[0].details
    assert isinstance(detail, LocalDerivative) and detail.formula == "f'(x) = gain"
    np.testing.assert_array_equal(detail.derivative, [2.0, 3.0, 4.0])
    assert gc.check(gain_doc(gain=[2.0, 3.0, 4.0])).passed


def test_a_plugin_gets_the_loaders_messages_from_its_declarations(registry):
    gc.register_layer("protocol_test_gain")(Gain)
    assert messages(gain_doc(features=3, gain=[[1.0, 2.0, 3.0]])) == [
        "layers[0].gain: gain has shape [1, 3] but this layer needs [3] (features,) "
        "for its input of shape [3]"
    ]
    assert messages(gain_doc(gain=[[[1.0]]])) == [
        "layers[0].gain: a protocol_test_gain gain has the axes (features,) "
        "(or (features, 1), a column), got shape [1, 1, 1]; fix it or give features"
    ]
    doc = gain_doc(features=3)
    doc["input"] = [[0.5, -1.0, 2.0]]
    assert messages(doc) == [
        "layers[0]: protocol_test_gain needs a flat vector but gets shape [1, 3]; "
        "add `- {type: flatten}` before it"
    ]
    assert messages(gain_doc(features=200_000_000)) == [
        "layers[0].features: layer 'g' (protocol_test_gain) would have a gain of 200,000,000 "
        "elements; keep parameters under 10,000,000 (each element is checked by its own "
        "forward passes)"
    ]


def test_a_plugin_declaring_image_input_reads_a_2d_input_as_one_channel(registry):
    @gc.register_layer("protocol_test_image")
    class Image(gc.Layer):
        input_kind = InputKind.IMAGE
        batch_independent = True

        def forward(self, x, params):
            return x.copy(), None

        def backward(self, dy, cache, params):
            return dy, {}

    doc = {
        "input": [[1.0, 2.0], [3.0, 4.0]],
        "layers": [{"type": "protocol_test_image"}],
        "loss": {"type": "upstream", "grad": [[1.0, 1.0], [1.0, 1.0]]},
    }
    assert problem_from_dict(doc).layers[0].in_shape == (1, 2, 2)
    doc["layers"].insert(0, {"type": "flatten"})
    doc["loss"]["grad"] = [1.0, 1.0, 1.0, 1.0]
    assert messages(doc) == [
        "layers[1].type: protocol_test_image needs a (channels, height, width) input per "
        "example, got shape [4]"
    ]


def test_field_bounds_and_param_defaults_reach_the_schema_for_plugins_too(registry):
    gc.register_layer("protocol_test_gain")(Gain)
    own = config_schema()["$defs"]["layer.protocol_test_gain"]
    assert own["properties"]["features"]["anyOf"][0] == {"type": "integer", "minimum": 1}
    assert own["properties"]["init"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert own["required"] == ["type"]  # features: said by a given gain
    assert own["if"] == {"not": {"required": ["gain"]}}
    assert own["then"] == {"required": ["features"]}
    assert own["properties"]["gain"]["description"] == (
        "parameter gain; default: init, for every feature"
    )
    conv = config_schema()["$defs"]["layer.conv2d"]["properties"]["weight"]
    assert conv["description"] == "parameter weight; default: seeded random"


def test_a_plugin_note_is_shown_as_it_is(registry):
    @gc.register_layer("protocol_test_noted")
    class Noted(gc.Layer):
        derivation = protocol.Note("a copy: the delta passes through unchanged")
        batch_independent = True

        def forward(self, x, params):
            return x.copy(), None

        def backward(self, dy, cache, params):
            return dy, {}

    doc = {
        "input": [1.0, 2.0],
        "layers": [{"type": "protocol_test_noted"}],
        "loss": {"type": "upstream", "grad": [1.0, -1.0]},
    }
    (detail,) = explain(problem_from_dict(doc)).steps[0].details
    assert detail == Note("a copy: the delta passes through unchanged")


@pytest.mark.usefixtures("clean_registry")
@pytest.mark.parametrize("where", ["forward", "backward", "loss"])
def test_an_exception_in_a_plugin_class_names_the_user_s_file_and_line(where):
    """Contract section 4: an exception raised inside user code is reported with the
    file and line where it was raised, for a plugin class as for a function pair."""
    from gradcheck_cli.engine import run_check
    from gradcheck_cli.errors import PluginError

    @gc.register_layer("raiser")
    class Raiser(gc.Layer):
        def forward(self, x, params):
            if where == "forward":
                raise RuntimeError("boom in forward")
            return x * 2.0, None

        def backward(self, dy, cache, params):
            if where == "backward":
                raise RuntimeError("boom in backward")
            return dy * 2.0, {}

    @gc.register_loss("raising_loss")
    class RaisingLoss(gc.Loss):
        def forward(self, y, target):
            raise RuntimeError("boom in the loss")

        def backward(self, cache):
            raise AssertionError("never reached")

    loss = {"type": "raising_loss" if where == "loss" else "mse", "target": [[0.0]]}
    doc = {"input": [1.0], "layers": [{"type": "raiser"}], "loss": loss}
    method = "forward" if where == "loss" else where
    with pytest.raises(PluginError, match=rf"\(at .*test_protocol\.py:\d+, in {method}: raise "):
        run_check(problem_from_dict(doc))
