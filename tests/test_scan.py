"""``mha-explain scan`` on real models built here (tests/scan_models.py), saved as .keras, .h5 and JSON.

What a scan reports is held against Keras itself: each call's scores and
output shapes against a fresh MultiHeadAttention built with the same
arguments and run on inputs of the call's shapes, and model.summary()'s
scores shape against the model's own symbolic output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from tests import scan_models

pytestmark = pytest.mark.keras
ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def scan(*args: str) -> Any:
    return runner.invoke(app, ["scan", *args], env={"COLUMNS": "120"})


def scan_json(*args: str) -> dict[str, Any]:
    result = scan(*args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test model, saved in every format it is scanned from."""
    folder = tmp_path_factory.mktemp("models")
    found = {}
    for name in ("encoder_decoder", "image", "shared", "subclassed", "no_attention", "with_lambda"):
        model = getattr(scan_models, name)()
        found[f"{name}.keras"] = folder / f"{name}.keras"
        model.save(found[f"{name}.keras"])
    for name in ("encoder_decoder", "with_lambda"):
        model = getattr(scan_models, name)()
        found[f"{name}.h5"] = folder / f"{name}.h5"
        model.save(found[f"{name}.h5"])
        found[f"{name}.json"] = folder / f"{name}.json"
        found[f"{name}.json"].write_text(model.to_json())
    return found


def keras_shapes(call: dict[str, Any]) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
    """Scores and output shapes from a fresh Keras layer with this call's arguments and input shapes."""
    import keras

    config, inputs = call["config"], call["inputs"]
    layer = keras.layers.MultiHeadAttention(
        num_heads=config["num_heads"],
        key_dim=config["key_dim"],
        value_dim=config["value_dim"],
        output_shape=config["output_shape"],
        attention_axes=config["attention_axes"],
    )
    rng = np.random.default_rng(0)
    query, value = (
        rng.standard_normal((2, *inputs[name][1:])).astype("float32") for name in ("query", "value")
    )
    output, scores = layer(query, value, return_attention_scores=True)
    return (None, *scores.shape[1:]), (None, *output.shape[1:])


def test_every_call_of_an_encoder_decoder_is_found_and_proved(saved: dict[str, Path]) -> None:
    document = scan_json(str(saved["encoder_decoder.keras"]))
    calls = {call["layer"]: call for call in document["calls"]}
    # The custom block's attention has no inbound node in the model's graph; it is found all the same.
    # In the order the model makes them (its graph's topological order).
    assert sorted(calls) == sorted(
        ["encoder_self", "encoder_block/attention", "decoder_causal", "decoder_cross"]
    )
    assert len(document["calls"]) == 4
    assert document["attention_layers"] == 4
    for call in calls.values():
        scores, output = keras_shapes(call)
        assert tuple(call["shapes"]["attention_scores"]) == scores, call["layer"]
        assert tuple(call["shapes"]["output"]) == output, call["layer"]
        assert {name: check["status"] for name, check in call["checks"].items()} | {
            "keras_symbolic": "-"
        } == {
            "derivation": "passed",
            "numpy_reference": "passed",
            "keras_symbolic": "-",
            "plain_call": "passed",
            "model_call": "passed",
        }, call["layer"]
    cross = calls["decoder_cross"]
    assert cross["inputs"]["query"] == [None, scan_models.TARGET, scan_models.WIDTH]
    assert cross["inputs"]["value"] == [None, scan_models.SOURCE, scan_models.WIDTH]
    assert "use_causal_mask" in calls["decoder_causal"]["mask_sources"]
    assert "query_mask" in calls["encoder_self"]["mask_sources"]  # from the mask_zero embedding
    assert "weights saved in encoder_decoder.keras" in document["model"]["weights_from"]


def test_a_scores_shape_model_summary_gets_wrong_is_flagged(saved: dict[str, Path]) -> None:
    import keras

    model = keras.saving.load_model(saved["encoder_decoder.keras"])
    summary_scores = tuple(model.outputs[1].shape)  # what model.summary() prints for decoder_cross
    calls = {call["layer"]: call for call in scan_json(str(saved["encoder_decoder.keras"]))["calls"]}
    real = tuple(calls["decoder_cross"]["shapes"]["attention_scores"])
    assert summary_scores != real  # keras-team/keras#19303: (None, 2, 6, 6) for cross-attention
    assert calls["decoder_cross"]["summary_scores_wrong"] is True
    assert tuple(calls["decoder_cross"]["checks"]["keras_symbolic"]["attention_scores"]) == summary_scores
    assert [c["layer"] for c in calls.values() if c["summary_scores_wrong"]] == ["decoder_cross"]
    table = scan(str(saved["encoder_decoder.keras"])).stdout
    assert f"WARN decoder_cross: model.summary() shows its scores as {summary_scores}".replace(
        "'", ""
    ) in " ".join(table.split())


@pytest.mark.parametrize("kind", ["h5", "json"])
def test_h5_and_json_files_give_the_same_calls(saved: dict[str, Path], kind: str) -> None:
    from_keras = scan_json(str(saved["encoder_decoder.keras"]))
    other = scan_json(str(saved[f"encoder_decoder.{kind}"]))
    for ours, theirs in zip(from_keras["calls"], other["calls"], strict=True):
        assert (ours["layer"], ours["shapes"], ours["equations"]) == (
            theirs["layer"],
            theirs["shapes"],
            theirs["equations"],
        )
        assert all(check["status"] != "failed" for check in theirs["checks"].values())
    if kind == "json":
        assert "drawn from --seed 0" in other["model"]["weights_from"]


def test_image_axes_and_a_shared_layer(saved: dict[str, Path]) -> None:
    image = scan_json(str(saved["image.keras"]))
    by_layer = {call["layer"]: call for call in image["calls"]}
    assert by_layer["columns"]["config"]["attention_axes"] == [1]
    assert by_layer["whole"]["config"]["attention_axes"] == [1, 2]
    for call in image["calls"]:
        assert tuple(call["shapes"]["attention_scores"]) == keras_shapes(call)[0]
    shared = scan_json(str(saved["shared.keras"]))
    # One layer, two calls, numbered in the order the model makes them.
    assert [(c["layer"], c["call_index"]) for c in shared["calls"]] == [("shared", 0), ("shared", 1)]
    assert sorted(c["inputs"]["value"] for c in shared["calls"]) == [[None, 4, 8], [None, 7, 8]]
    assert shared["attention_layers"] == 1


def test_wrong_symbolic_scores_the_model_never_asks_for_are_no_warning(saved: dict[str, Path]) -> None:
    """Cross-attention and several attended axes: Keras's symbolic scores shape is wrong, but calls
    that do not return their scores never show it (issue 28: WARN with no reason)."""
    import keras

    shared = scan_json(str(saved["shared.keras"]))
    # attention(short, long): scores (2, 4, 7), which Keras's symbolic call gets wrong.
    (cross,) = (call for call in shared["calls"] if call["inputs"]["value"] == [None, 7, 8])
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    _, symbolic = layer.compute_output_spec(
        keras.KerasTensor((None, 4, 8)), keras.KerasTensor((None, 7, 8)), return_attention_scores=True
    )
    assert tuple(symbolic.shape) != tuple(cross["shapes"]["attention_scores"])  # the bug is there
    assert cross["scores_requested"] is False
    assert cross["checks"]["keras_symbolic"]["status"] == "passed"
    assert cross["warnings"] == []
    table = scan(str(saved["shared.keras"])).stdout
    assert "WARN" not in table
    # A call that returns its scores keeps the warning (the encoder-decoder's decoder_cross).
    calls = {c["layer"]: c for c in scan_json(str(saved["encoder_decoder.keras"]))["calls"]}
    assert calls["decoder_cross"]["checks"]["keras_symbolic"]["status"] == "warning"


def test_a_subclass_that_changes_call_is_reported_honestly(saved: dict[str, Path]) -> None:
    result = scan(str(saved["subclassed.keras"]), "--json")
    assert result.exit_code == 0, result.output
    (call,) = json.loads(result.stdout)["calls"]
    assert call["class"] == "ScaledAttention" and call["overrides"] == ["call"]
    assert call["checks"]["model_call"]["status"] == "warning"
    assert call["checks"]["numpy_reference"]["status"] == "passed"  # MultiHeadAttention's own computation


def test_a_subclass_whose_change_only_shows_with_trained_weights_is_not_passed() -> None:
    """Fresh weights make the logits ~1e-4, so attending to the keys in another order changes the
    output by less than the tolerance; with the query and key kernels sharpened it shows (issue 28)."""
    import keras

    model = scan_models.flipped_keys()
    layer = model.get_layer("flipped")
    x = np.random.default_rng(0).standard_normal((2, 7, 8)).astype("float32")
    own = keras.ops.convert_to_numpy(model(x))
    base = keras.ops.convert_to_numpy(keras.layers.MultiHeadAttention.call(layer, x, x))
    assert np.abs(own - base).max() < 1e-4  # what the check saw before: inside the tolerance
    document = scan_json("--build", "tests.scan_models:flipped_keys")
    (call,) = document["calls"]
    assert call["overrides"] == ["call"]
    check = call["checks"]["model_call"]
    assert check["status"] == "warning", check
    assert "only because these weights make the attention logits small" in check["detail"]
    assert "not the subclass's own" in check["detail"]


def test_a_model_whose_layers_appear_on_its_first_call_is_run_to_find_them() -> None:
    """Before its first call the model lists no layer (issue 28: "No MultiHeadAttention layer", exit 0)."""
    model = scan_models.late_built()
    assert list(model._flatten_layers(include_self=False)) == [] and not model.built
    missing = scan("--build", "tests.scan_models:late_built")
    assert missing.exit_code == 2 and "declares no inputs" in missing.stderr
    document = scan_json("--build", "tests.scan_models:late_built", "--input", "x=5,3")
    (call,) = document["calls"]
    assert call["layer"].endswith("attention") and call["inputs"]["query"] == [None, 5, 8]
    assert all(check["status"] == "passed" for check in call["checks"].values())


def test_a_model_without_attention_says_so(saved: dict[str, Path]) -> None:
    result = scan(str(saved["no_attention.keras"]))
    assert result.exit_code == 0, result.output
    assert "No MultiHeadAttention or GroupQueryAttention layer in this model" in result.stdout


@pytest.mark.parametrize("kind", ["keras", "h5", "json"])
def test_a_lambda_with_code_is_refused_unless_trusted(saved: dict[str, Path], kind: str) -> None:
    path = saved[f"with_lambda.{kind}"]
    refused = scan(str(path))
    assert refused.exit_code == 2 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert "the Lambda layer 'doubler' holds Python code" in line and "--trust-model" in line
    trusted = scan(str(path), "--trust-model")
    assert trusted.exit_code == 0, trusted.output


def test_build_and_input_sizes() -> None:
    missing = scan("--build", "tests.scan_models:variable_length")
    assert missing.exit_code == 2
    assert (
        "input 'tokens' (None, None) has no size on axis 1; give it, e.g. --input tokens=128"
        in missing.stderr
    )
    document = scan_json("--build", "tests.scan_models:variable_length", "--input", "tokens=7")
    (call,) = document["calls"]
    assert call["inputs"]["query"] == [None, 7, scan_models.WIDTH]
    assert document["model"]["inputs"] == [{"name": "tokens", "shape": [None, 7], "dtype": "int32"}]
    wrong = scan("--build", "tests.scan_models:variable_length", "--input", "ids=7")
    assert wrong.exit_code == 2 and "has no input of that name; its inputs are tokens" in wrong.stderr


def test_the_memory_guard_answers_from_the_symbolic_pass(saved: dict[str, Path]) -> None:
    document = scan_json(str(saved["encoder_decoder.keras"]), "--max-memory", "1KiB")
    assert document["executed"] is False and "above --max-memory" in document["not_executed_reason"]
    full = scan_json(str(saved["encoder_decoder.keras"]))
    assert [c["shapes"] for c in document["calls"]] == [c["shapes"] for c in full["calls"]]
    assert all(c["checks"]["numpy_reference"]["status"] == "skipped" for c in document["calls"])


def test_layer_shows_the_details_of_one_layer(saved: dict[str, Path]) -> None:
    shown = scan(str(saved["encoder_decoder.keras"]), "--layer", "decoder_cross")
    assert shown.exit_code == 0
    assert "== decoder_cross (MultiHeadAttention)" in shown.stdout and "Einsum equations" in shown.stdout
    # The builder wrote neither attention_axes nor value_dim, yet the saved config holds both (Keras fills
    # them in): the Layer table says where its values came from instead of calling them "given".
    assert scan_models.encoder_decoder().get_layer("decoder_cross").get_config()["attention_axes"] == (1,)
    rows = {
        line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith(" ") and line.split()
    }
    assert "the layer's config (Keras fills it in on build; None reads the same)" in rows["attention_axes"]
    assert "the layer's config (Keras fills in key_dim for None)" in rows["value_dim"]
    assert rows["num_heads"].split()[-3:] == ["the", "layer's", "config"]
    assert "given" not in rows["attention_axes"] + rows["num_heads"]
    missing = scan(str(saved["encoder_decoder.keras"]), "--layer", "nope")
    assert missing.exit_code == 2 and "no attention layer there; the paths are " in missing.stderr
    assert "encoder_block/attention" in missing.stderr


def test_a_class_that_cannot_be_rebuilt_from_its_config_is_blamed_not_the_file(tmp_path: Path) -> None:
    """The file is a good .keras zip; the class's get_config() is what broke the load. The line says
    which class and what its __init__ missed, whole, instead of 'not a model Keras can load' cut short."""
    import keras

    x = keras.Input((6, 8))
    path = tmp_path / "forgetful.keras"
    keras.Model(x, scan_models.ForgetfulBlock(8)(x)).save(path)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'width'"):
        keras.saving.load_model(path)  # Keras itself cannot load it
    result = scan(str(path), "--custom-objects", "tests.scan_models")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"mha-explain: error: MODEL {path}: the file is a model, but Keras could not rebuild the class "
        "'ForgetfulBlock' from its saved config (ForgetfulBlock.__init__() missing 1 required positional "
        "argument: 'width'); its get_config() must return every argument its __init__ takes, or build the "
        "model with --build module:function"
    ]


def test_a_layer_after_the_attention_that_refuses_the_sizes_is_named_not_the_attention(
    tmp_path: Path,
) -> None:
    """A Reshape that cannot take the --input sizes fails the model's forward pass: the line names the
    inputs and the Reshape, not "the real layer rejects this configuration" (the attention ran), and a
    case file names its inputs key."""
    import keras

    x = keras.Input((None, 8), name="tokens")
    path = tmp_path / "reshape.keras"
    keras.Model(x, keras.layers.Reshape((48,))(keras.layers.MultiHeadAttention(2, 4)(x, x))).save(path)
    assert scan(str(path), "--input", "tokens=6,8").exit_code == 0  # 6 x 8 = 48: it runs
    result = scan(str(path), "--input", "tokens=5,8")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "mha-explain: error: --input tokens=5,8: the model's forward pass on tokens (None, 5, 8) fails in "
        "Reshape.call(): The total size of the tensor must be unchanged. Received: input_shape=(5, 8), "
        "target_shape=(48,); give the inputs sizes the model takes"
    ]
    cases = tmp_path / "reshape.mha.toml"
    cases.write_text('[model]\npath = "reshape.keras"\ninputs = ["tokens=5,8"]\n')
    checked = CliRunner().invoke(app, ["check", str(cases), "--json"])
    assert checked.exit_code == 2
    (case,) = json.loads(checked.stdout)["cases"]
    assert case["error"].startswith(
        "model: inputs: the model's forward pass on tokens (None, 5, 8) fails in "
    )


def test_a_path_longer_than_the_screen_is_never_broken(tmp_path: Path) -> None:
    """People copy a call's path into --layer: at 60 columns a 74-character path stays on one line
    (the terminal may wrap it, a file or pipe holds it whole), in the list and in the details."""
    import keras

    name = "decoder_cross_attention_with_a_very_long_name_that_goes_past_sixty_columns"
    x = keras.Input((6, 8))
    path = tmp_path / "long.keras"
    keras.Model(x, keras.layers.MultiHeadAttention(2, 4, name=name)(x, x)).save(path)
    result = scan(str(path), "--width", "60", "--layer", name)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"{name}  PASS" in lines
    assert f"== {name} (MultiHeadAttention)" in lines


def _file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.keras", None, "no such file"),
        ("text.keras", b"not a zip at all", "not a model Keras can load"),
        ("text.h5", b"not hdf5", "not a model Keras can load"),
        ("list.json", b"[1, 2, 3]", "not a model Keras can load"),
        ("broken.json", b'{"class_name": "Functional", "config": {', "not a model Keras can load"),
        (
            "unknown.json",
            b'{"class_name": "NoSuchLayer", "config": {"name": "x"}}',
            "the model uses the custom class 'NoSuchLayer', which is not registered",
        ),
        ("model.txt", b"", "not a model file by its name"),
    ],
)
def test_a_bad_model_file_is_one_line_and_exit_2(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name if content is None else _file(tmp_path, name, content)
    result = scan(str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"mha-explain: error: MODEL {path}: ") and message in line, line


def test_a_truncated_keras_file_is_one_line(saved: dict[str, Path], tmp_path: Path) -> None:
    data = saved["encoder_decoder.keras"].read_bytes()
    path = _file(tmp_path, "cut.keras", data[: len(data) // 2])
    result = scan(str(path))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
    assert "not a model Keras can load" in result.stderr


def _keras_hub_or_skip() -> None:
    try:
        import keras_hub  # noqa: F401
    except Exception as error:  # not installed, or not for this Keras (CI's oldest-Keras run)
        pytest.skip(f"KerasHub is not usable here ({type(error).__name__}: {error}); pip install '.[hub]'")


@pytest.mark.parametrize(
    ("builder", "inputs", "class_name"),
    [
        ("bert_backbone", ["token_ids=12", "segment_ids=12", "padding_mask=12"], None),
        ("gpt2_backbone", ["token_ids=12", "padding_mask=12"], "CachedMultiHeadAttention"),
    ],
)
def test_kerashub_backbones_built_from_their_constructors(
    builder: str, inputs: list[str], class_name: str | None
) -> None:
    _keras_hub_or_skip()
    import keras

    model = getattr(scan_models, builder)()
    attention = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    arguments = [arg for item in inputs for arg in ("--input", item)]
    document = scan_json("--build", f"tests.scan_models:{builder}", *arguments)
    # Every attention layer of the backbone, each called once, each verified on its own weights.
    assert [call["layer"] for call in document["calls"]] == [layer.path for layer in attention]
    for call, layer in zip(document["calls"], attention, strict=True):
        assert call["class"] == type(layer).__name__
        assert all(check["status"] in ("passed", "warning") for check in call["checks"].values())
        assert call["checks"]["model_call"]["status"] == "passed"
        assert tuple(call["shapes"]["attention_scores"]) == keras_shapes(call)[0]
    if class_name is not None:
        assert {call["class"] for call in document["calls"]} == {class_name}
        assert all(call["overrides"] == ["call"] for call in document["calls"])


def test_a_projection_a_subclass_builds_without_bias_is_read_from_its_weights() -> None:
    """KerasHub Whisper's attention has no key bias: params, weights and every check from the real
    layer (issue 28: it was 288 params, a key bias that does not exist, and INTERNAL ERROR)."""
    _keras_hub_or_skip()
    model = scan_models.whisper_backbone()
    attention = {
        layer.path: layer for layer in model._flatten_layers() if "attention" in type(layer).__name__.lower()
    }
    inputs = ["encoder_features=12,8", "decoder_token_ids=6", "decoder_padding_mask=6"]
    document = scan_json(
        "--build", "tests.scan_models:whisper_backbone", *(a for i in inputs for a in ("--input", i))
    )
    assert len(document["calls"]) == 3
    for call in document["calls"]:
        layer = attention[call["layer"]]
        assert call["params"] == sum(int(np.prod(w.shape)) for w in layer.weights), call["layer"]
        assert call["weights"]["key"]["bias"] is None and call["weights"]["query"]["bias"] is not None
        assert {name: check["status"] for name, check in call["checks"].items()} == {
            "derivation": "passed",
            "numpy_reference": "passed",
            "keras_symbolic": "passed",
            "plain_call": "passed",
            "model_call": "passed",
        }, call["layer"]
