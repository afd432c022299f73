"""The pure side of scan: naming a model, and the --input grammar (no Keras)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mha_cli.core.errors import ConfigError
from mha_cli.core.models import InputSpec, model_spec, parse_input, resolve_inputs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tokens=128", InputSpec("tokens", (128,))),
        ("tokens=128:int32", InputSpec("tokens", (128,), "int32")),
        ("image=32,32,3", InputSpec("image", (32, 32, 3))),
        ("image=(32, ?, 3)", InputSpec("image", (32, None, 3))),
        ("x=(7,)", InputSpec("x", (7,))),
    ],
)
def test_input_grammar(text: str, expected: InputSpec) -> None:
    assert parse_input("--input", text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens", "--input tokens: write NAME=SHAPE[:DTYPE], e.g. tokens=128:int32"),
        ("tokens=x", "--input tokens=x: 'x' is not a size"),
        ("tokens=0", "--input tokens=0: size 0 must be in 1.."),
        ("tokens=8:int8", "--input tokens=8:int8: dtype 'int8' is not one of float32"),
    ],
)
def test_input_grammar_refuses_with_the_value_as_typed(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_input("--input", text)
    assert str(raised.value).startswith(message)


def test_inputs_resolve_unknown_sizes_from_overrides() -> None:
    declared = (InputSpec("tokens", (None,), "int32"), InputSpec("image", (8, 8, 3), "float32"))
    resolved = resolve_inputs(declared, (InputSpec("tokens", (12,)),), "m.keras")
    assert resolved == (InputSpec("tokens", (12,), "int32"), InputSpec("image", (8, 8, 3), "float32"))
    with pytest.raises(ConfigError, match=r"input 'tokens' \(None, None\) has no size on axis 1; give it"):
        resolve_inputs(declared, (), "m.keras")
    with pytest.raises(ConfigError, match="has no input of that name; its inputs are tokens, image"):
        resolve_inputs(declared, (InputSpec("ids", (3,)),), "m.keras")
    with pytest.raises(ConfigError, match="the input has 3 axes besides the batch"):
        resolve_inputs(declared, (InputSpec("tokens", (12,)), InputSpec("image", (8, 8))), "m.keras")
    with pytest.raises(ConfigError, match="declares no inputs"):
        resolve_inputs((), (), "--build m:f")


@pytest.mark.parametrize(
    ("path", "build", "message"),
    [
        (None, None, "name a model file"),
        (Path("m.keras"), "m:f", "name a model file"),
        (None, "just_a_module", "--build just_a_module: write module:function"),
        (Path("weights.pt"), None, "MODEL weights.pt: not a model file by its name"),
    ],
)
def test_a_model_is_named_once(path: Path | None, build: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        model_spec(path, build)
    assert message in str(raised.value)


def test_model_kinds() -> None:
    assert [model_spec(Path(f"m.{s}"), None).kind for s in ("keras", "h5", "hdf5", "json")] == [
        "keras",
        "h5",
        "h5",
        "json",
    ]
    assert model_spec(None, "models:build").kind == "build"
