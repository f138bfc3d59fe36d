"""``gradcheck schema``: a draft 2020-12 JSON Schema that agrees with the config loader.

Every shipped config validates; broken ones are rejected; and the schema never rejects
a config the loader accepts (checked over the whole bad-config corpus as well).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from test_bad_configs import read_expect

from gradcheck_cli import Layer, protocol, register_layer
from gradcheck_cli.cli import cli
from gradcheck_cli.cli.init import starter_config
from gradcheck_cli.config import load_problem
from gradcheck_cli.config.build import TOP_KEYS
from gradcheck_cli.config.settings import CHECK_KEYS
from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.schema import config_schema

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))
#: The bad-config corpus, but the alias bomb: a JSON Schema validator walks its 10^9
#: expanded numbers (the loader sizes it without expanding: tests/test_bad_configs.py)
BAD_CORPUS = [
    p for p in sorted((REPO / "tests" / "bad_configs").glob("*.yaml")) if "alias_bomb" not in p.name
]

VALID = """\
input: [[0.5, 1.0], [0.25, -1.0]]
layers:
  - {type: conv2d, name: conv1, out_channels: 1, kernel_size: 2}
  - {type: flatten}
  - {type: dense, name: fc, out_features: 2}
loss: {type: mse, target: [0, 1]}
"""


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def doc(text: str = VALID, **changes) -> dict:
    d = yaml.safe_load(text)
    d.update(changes)
    return d


def layer(**fields) -> dict:
    """VALID with its first layer replaced."""
    d = doc()
    d["layers"][0] = fields
    return d


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = config_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_validates(validator, path):
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_shipped_configs_are_found():
    assert len(SHIPPED) >= 9  # the worked examples at least


def test_starter_config_validates(validator):
    assert validator.is_valid(yaml.safe_load(starter_config()))


#: The corpus cases that say ``schema=invalid``: the JSON Schema must reject them, as the
#: loader does (tests/test_bad_configs.py runs each through ``gradcheck run``: exit 2).
SCHEMA_INVALID = [p for p in BAD_CORPUS if read_expect(p).schema == "invalid"]


def test_the_corpus_holds_schema_cases():
    assert len(SCHEMA_INVALID) >= 30


@pytest.mark.parametrize("path", SCHEMA_INVALID, ids=lambda p: p.stem)
def test_broken_configs_are_rejected(validator, path):
    assert not validator.is_valid(yaml.safe_load(path.read_text(encoding="utf-8")))


ACCEPTED = {
    "scientific notation without a dot (PyYAML reads a string)": doc(
        check={"eps": "1e-6", "atol": "1e-7"}, expect={"loss": "2.5e-1"}
    ),
    "integer written 2e0": layer(type="conv2d", out_channels="1e0", kernel_size=2),
    "kernel_size a pair": layer(type="conv2d", out_channels=1, kernel_size=[2, 1]),
    "bias: false": layer(type="conv2d", out_channels=1, kernel_size=2, bias=False),
    "conv2d sizes from its weight": layer(type="conv2d", weight=[[1, 0], [0, 1]]),
    "plugins as one string": doc(plugins="my_layers.py"),
    "a batched input": doc(input={"value": [[[1, 2], [3, 4]]], "batched": True}),
    "an npz array": layer(type="conv2d", weight={"file": "w.npz", "key": "conv1"}),
    "check only as one glob": doc(check={"only": "conv1.*", "sample": 2, "seed": 3}),
    "max_memory as a size": doc(check={"max_memory": "512MiB"}),
}


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_valid_variants_are_accepted(validator, case):
    errors = [e.message for e in validator.iter_errors(ACCEPTED[case])]
    assert errors == []


def test_plugin_types_are_not_rejected(validator):
    """A plugin registers its types when the config loads: after the schema was built."""
    d = layer(type="swish_from_a_plugin", beta=1.5, anything=[1, 2])
    assert validator.is_valid(d)
    d["loss"] = {"type": "focal_from_a_plugin", "gamma": 2}
    assert validator.is_valid(d)


def _yaml_or_none(path: Path):
    """The document, or None where PyYAML itself cannot read it (a tab, an unclosed
    bracket, an empty ``!!int``): the schema never sees those."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:
        return None


#: The corpus cases PyYAML reads (a document, not an error of YAML itself).
READABLE = [p for p in BAD_CORPUS if _yaml_or_none(p) is not None]


@pytest.mark.parametrize("path", READABLE, ids=lambda p: p.name)
def test_never_stricter_than_the_loader(validator, path):
    """Over the bad-config corpus: what the schema rejects, the loader rejects (exit 2)."""
    if validator.is_valid(_yaml_or_none(path)):
        return
    with pytest.raises(GradcheckError) as err:
        load_problem(path)
    assert err.value.exit_code == 2


def test_top_level_and_check_keys_match_the_loader():
    schema = config_schema()
    assert set(schema["properties"]) == set(TOP_KEYS)
    assert set(schema["properties"]["check"]["properties"]) == set(CHECK_KEYS)


def test_every_registered_type_has_its_fields():
    defs = config_schema()["$defs"]
    for kind, registry in (("layer", protocol.LAYERS), ("loss", protocol.LOSSES)):
        for name, cls in registry.items():
            props = defs[f"{kind}.{name}"]["properties"]
            params = inspect.signature(cls.__init__).parameters
            fields = [p for p in list(params)[1:] if p not in ("args", "kwargs")]
            if getattr(cls, "wants_batch_size", False):
                fields.remove("batch_size")
            arrays = cls.param_names if kind == "layer" else (cls.target_name,)
            assert set(fields) | {a for a in arrays if a} <= set(props), name


def test_layer_type_autocompletes_from_the_registry():
    type_schema = config_schema()["$defs"]["layer"]["properties"]["type"]
    assert set(type_schema["anyOf"][0]["enum"]) == set(protocol.LAYERS)


def test_a_registered_plugin_layer_gets_its_own_schema():
    @register_layer("schema_test_scaled")
    class Scaled(Layer):
        """Multiply by a factor."""

        param_names = ("gain",)

        def __init__(self, factor: float = 2.0, mode: str = "mul", taps: int = 3):
            self.factor = factor

    try:
        schema = config_schema()
        own = schema["$defs"]["layer.schema_test_scaled"]
        assert own["properties"]["factor"]["default"] == 2.0
        assert own["description"] == "Multiply by a factor."
        v = jsonschema.Draft202012Validator(schema)
        assert v.is_valid(layer(type="schema_test_scaled", factor=3, gain=[1.0]))
        assert not v.is_valid(layer(type="schema_test_scaled", factor="big"))
        assert not v.is_valid(layer(type="schema_test_scaled", taps=[1]))
        assert not v.is_valid(layer(type="schema_test_scaled", unknown=1))
    finally:
        protocol.LAYERS.pop("schema_test_scaled", None)
        protocol.ORIGINS.pop(("layer", "schema_test_scaled"), None)


# --- the command -------------------------------------------------------------------


def test_schema_command_prints_the_schema():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == config_schema()


def test_schema_command_writes_a_file(tmp_path):
    out = tmp_path / "gradcheck.schema.json"
    out.write_text("old")
    result = CliRunner().invoke(cli, ["schema", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == config_schema()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left behind


def test_schema_command_refuses_a_missing_folder(tmp_path):
    result = CliRunner().invoke(cli, ["schema", "-o", str(tmp_path / "nope" / "s.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_schema_command_includes_plugin_types(tmp_path, monkeypatch):
    (tmp_path / "extra.py").write_text(
        "import gradcheck_cli as gc\n\n"
        "@gc.register_layer('schema_cli_plugin')\n"
        "class P(gc.Layer):\n"
        "    def __init__(self, alpha: float = 0.5):\n"
        "        self.alpha = alpha\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, ["schema", "--plugin", "extra.py"])
        assert result.exit_code == 0, result.output
        assert "layer.schema_cli_plugin" in json.loads(result.output)["$defs"]
    finally:
        protocol.LAYERS.pop("schema_cli_plugin", None)
        protocol.ORIGINS.pop(("layer", "schema_cli_plugin"), None)


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["schema", "--help"])
    assert result.exit_code == 0
    assert "gradcheck schema --output gradcheck.schema.json" in result.output
    assert "yaml-language-server" in result.output
