"""attention_axes that name the heads: what both Keras majors really compute, explained with a warning.

attention_axes index the projected query (batch, ..., heads, key_dim), so the index of the input's
feature axis is the heads there: Keras 3 resolves -1 to it, Keras 2 resolves -2 to it (it counts
negative axes from the projected rank), and both layers then attend over the heads instead of
within each (tensorflow/tensorflow#77057, keras-team/keras#21714). The key_dim index is what the real
layer refuses. Every expected shape and equation here comes from the real layer in the test.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.core.derived import ExecutionPath
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape
from mha_cli.core.mha import derive
from mha_cli.core.summary import meant_axes

runner = CliRunner()
needs_tf_keras = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf-keras is not installed: pip install 'mha-explain[keras2]'",
)


def explain_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def real_layer(keras_module: Any, shape: tuple[int, ...], axes: tuple[int, ...] | None) -> Any:
    layer = keras_module.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=axes)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    output, scores = layer(x, x, return_attention_scores=True)
    return layer, x, np.asarray(output), tuple(scores.shape)


# --- The algebra: which axes are the heads, and what was most likely meant ---------------------


@pytest.mark.parametrize(
    ("shape", "axes", "keras", "resolved", "meant"),
    [
        ((32, 64, 4), (-1,), 3, (3,), (2,)),  # the heads alone: the last axis before the features
        ((32, 64, 4), (1, 3), 3, (1, 3), (1, 2)),  # height and the heads: height and width
        ((32, 64, 4), (2, -1), 3, (2, 3), (2,)),  # width is attended already
        ((10, 4), (-1,), 3, (2,), (1,)),
        ((32, 64, 4), (-2,), 2, (3,), (2,)),  # Keras 2 counts -2 from the projected rank: the heads
        ((10, 4), (-2,), 2, (2,), (1,)),
    ],
)
def test_the_heads_axis_is_resolved_and_what_was_meant_is_named(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    keras: int,
    resolved: tuple[int, ...],
    meant: tuple[int, ...],
) -> None:
    derivation = derive(MHAConfig(shape, num_heads=2, key_dim=2, attention_axes=axes, keras=keras))
    assert derivation.layer.attention_axes == resolved
    assert derivation.heads_attended
    assert meant_axes(derivation) == meant
    summary = " ".join(derivation.summary)
    assert f"Most likely meant: attention_axes={format_shape(meant)}" in summary
    assert "attends over its 2 heads" in summary


@pytest.mark.parametrize(
    ("shape", "axes", "keras", "message"),
    [
        ((32, 64, 4), (4,), 3, "axis 4 is the key_dim axis of the projected query"),
        ((10, 4), (-4,), 3, "axis -4 is out of range for a rank-3 input"),
        ((10, 4), (-1,), 2, "axis -1 is the key_dim axis of the projected query"),
        ((32, 64, 4), (0,), 3, "axis 0 is the batch axis: Keras runs it, attending across the items"),
    ],
)
def test_only_what_the_real_layer_refuses_is_refused_and_the_batch_is_said_to_run(
    shape: tuple[int, ...], axes: tuple[int, ...], keras: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        derive(MHAConfig(shape, num_heads=2, key_dim=2, attention_axes=axes, keras=keras))


# --- Against Keras 3 -----------------------------------------------------------------------------


@pytest.mark.keras
@pytest.mark.parametrize(
    ("shape", "axes"), [((32, 64, 4), (-1,)), ((32, 64, 4), (1, 3)), ((10, 4), (-1,)), ((6, 5, 3), (3, 2))]
)
def test_keras3_attends_over_the_heads_as_the_explanation_says(
    shape: tuple[int, ...], axes: tuple[int, ...]
) -> None:
    import keras

    layer, _, _, scores = real_layer(keras, shape, axes)
    document = explain_json(
        "--shape",
        ",".join(map(str, shape)),
        "--axes",
        ",".join(map(str, axes)),
        "--num-heads",
        "2",
        "--key-dim",
        "2",
        "--batch",
        "2",
    )
    assert document["shapes"]["attention_scores"][1:] == list(scores[1:])
    assert document["equations"]["dot_product"] == layer._dot_product_equation
    assert document["equations"]["combine"] == layer._combine_equation
    checks = document["checks"]
    assert checks["derivation"]["status"] == checks["numpy_reference"]["status"] == "passed"
    assert any("attends over its 2 heads" in warning for warning in document["warnings"])


@pytest.mark.keras
def test_keras3s_plain_rank3_call_ignores_attention_axes_and_the_warning_says_so() -> None:
    """Keras's own finding, measured on the real layer alone: a rank-3 input's plain call takes the fused
    path, whose output is the attention_axes=None layer's on the same weights; the call that returns
    scores attends over the heads and differs. The explanation says both."""
    import keras

    heads, x, with_scores, _ = real_layer(keras, (10, 4), (-1,))
    plain = np.asarray(heads(x, x))
    default = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2)
    default(x, x)
    default.set_weights(heads.get_weights())
    assert np.allclose(plain, np.asarray(default(x, x)), atol=1e-6)
    assert not np.allclose(plain, with_scores, atol=1e-2)

    derivation = derive(MHAConfig((10, 4), num_heads=2, key_dim=2, attention_axes=(-1,)))
    assert derivation.execution_path is ExecutionPath.FUSED
    document = explain_json("--shape", "10,4", "--axes=-1", "--num-heads", "2", "--key-dim", "2")
    (warning,) = [w for w in document["warnings"] if "attends over its 2 heads" in w]
    assert "a plain call, as a model makes it, takes the fused ops.dot_product_attention path" in warning
    assert "ignores attention_axes" in warning
    # The plain call computing something else is the check's own warning, with the size of the difference.
    assert document["checks"]["plain_call"]["status"] == "warning"


@pytest.mark.keras
def test_the_key_dim_axis_is_refused_because_the_real_layer_refuses_it_and_the_batch_runs() -> None:
    import keras

    image = np.ones((2, 32, 64, 4), "float32")
    with pytest.raises(ValueError, match="Output subscripts contain a label"):
        keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(4,))(image, image)
    result = runner.invoke(app, ["--shape", "32,64,4", "--axes", "4"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "mha-explain: error: --axes 4: axis 4 is the key_dim axis of the projected query (batch, ..., heads, "
        "key_dim); the real layer fails on it (its einsum would repeat a letter); attention axes are 1..2 "
        "(or -3..-2)"
    ]
    # A rank-3 input's plain call runs all the same, on the fused path that ignores attention_axes; the
    # call that computes the scores fails. The line says both.
    x = np.ones((2, 10, 4), "float32")
    sentence = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(3,))
    assert tuple(sentence(x, x).shape) == (2, 10, 4)
    with pytest.raises(ValueError, match="Output subscripts contain a label"):
        sentence(x, x, return_attention_scores=True)
    rank3 = runner.invoke(app, ["--shape", "10,4", "--axes", "3"])
    assert rank3.exit_code == 2
    assert "fails on it whenever it computes its scores" in rank3.stderr
    assert "only a plain call without dropout runs, on the fused path" in rank3.stderr
    # The batch axis runs in the real layer; the refusal says so instead of claiming Keras refuses it.
    _, scores = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(0,))(
        x, x, return_attention_scores=True
    )
    assert tuple(scores.shape) == (10, 2, 2, 2)
    batch = runner.invoke(app, ["--shape", "10,4", "--axes", "0"])
    assert batch.exit_code == 2 and "Keras runs it" in batch.stderr


@pytest.mark.keras
def test_what_people_read_carries_the_warning() -> None:
    brief = runner.invoke(app, ["--shape", "32,64,4", "--axes=-1", "--brief"], env={"COLUMNS": "200"})
    assert brief.exit_code == 0, brief.output
    assert "attention_axes=(-1,) attends over the 2 heads (axis 3 of the projected query)" in brief.stdout
    assert "most likely meant: (2,) (width)" in brief.stdout
    picture = runner.invoke(app, ["--shape", "32,64,4", "--axes=-1", "--at", "1,2"])
    assert picture.exit_code == 2
    (line,) = picture.stderr.strip().splitlines()
    assert line.startswith("mha-explain: error: --at") and "mha-explain vectors" in line


# --- Against Keras 2 -----------------------------------------------------------------------------


@pytest.mark.keras
@needs_tf_keras
@pytest.mark.parametrize(("shape", "axes"), [((32, 64, 4), (-2,)), ((3, 4, 8), (-2,)), ((10, 4), (-2,))])
def test_tf_keras_attends_over_the_heads_as_the_explanation_says(
    shape: tuple[int, ...], axes: tuple[int, ...]
) -> None:
    import tf_keras

    layer, _, _, scores = real_layer(tf_keras, shape, axes)
    document = explain_json(
        "--shape",
        ",".join(map(str, shape)),
        f"--axes={axes[0]}",
        "--num-heads",
        "2",
        "--key-dim",
        "2",
        "--batch",
        "2",
        "--keras",
        "2",
    )
    assert document["keras_version"].startswith("2.")
    assert document["shapes"]["attention_scores"][1:] == list(scores[1:])
    assert document["equations"]["dot_product"] == layer._dot_product_equation
    assert all(check["status"] in ("passed", "warning") for check in document["checks"].values())
    assert document["checks"]["numpy_reference"]["status"] == "passed"
    assert any("attends over its 2 heads" in warning for warning in document["warnings"])


@pytest.mark.keras
@needs_tf_keras
def test_the_issues_tf_keras_equation_is_the_one_explained() -> None:
    document = explain_json("--shape", "3,4,8", "--axes=-2", "--keras", "2")
    assert document["equations"]["dot_product"] == "abcfe,abcde->abcdf"


# --- scan: a model holding such a layer ------------------------------------------------------------


@pytest.mark.keras
@needs_tf_keras
def test_scan_of_a_keras2_model_attending_over_heads_warns_and_passes(tmp_path: Any) -> None:
    """tensorflow/tensorflow#77057's configuration in a saved tf_keras model: explained with the
    warning, every check run, exit 0; no 'failed a check', no option nobody typed."""
    import tf_keras

    x = tf_keras.Input((6, 5, 8), name="image")
    attention = tf_keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(-2,), name="heads")
    model = tf_keras.Model(x, attention(x, x))
    path = tmp_path / "heads.h5"
    model.save(path)
    result = runner.invoke(app, ["scan", str(path), "--keras", "2", "--json"])
    assert result.exit_code == 0, result.output
    (call,) = json.loads(result.stdout)["calls"]
    assert call["error"] is None
    assert call["config"]["attention_axes"] == [3]
    assert call["checks"]["model_call"]["status"] == "passed"
    assert {check["status"] for check in call["checks"].values()} <= {"passed", "warning"}
    assert any("attends over its 2 heads" in warning for warning in call["warnings"])
    table = runner.invoke(app, ["scan", str(path), "--keras", "2"], env={"COLUMNS": "100"})
    assert table.exit_code == 0, table.output
    assert "WARN" in table.stdout and "--axes" not in table.stdout and "failed a check" not in table.stdout


@pytest.mark.keras
def test_scan_of_a_keras3_model_checks_the_output_its_plain_call_really_gives(tmp_path: Any) -> None:
    """The model calls the layer without scores (the fused path, attending as None would): model_call
    holds the model's output against that plain call, and passes."""
    import keras

    x = keras.Input((10, 4), name="tokens")
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=-1, name="heads")
    path = tmp_path / "heads.keras"
    keras.Model(x, attention(x, x)).save(path)
    result = runner.invoke(app, ["scan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (call,) = json.loads(result.stdout)["calls"]
    assert call["error"] is None and call["checks"]["model_call"]["status"] == "passed"
    assert any("ignores attention_axes" in warning for warning in call["warnings"])
