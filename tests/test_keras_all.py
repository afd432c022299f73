"""--keras all: Keras 3 beside Keras 2 on identical weights, checked against keras and tf_keras themselves.

The expected values come from the two real layers, built here, not from our output. Skipped with the
reason when tf-keras is not installed (pip install 'mha-explain[keras2]'); CI installs it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.core.migration import input_rank, migrate

runner = CliRunner()
needs_tf_keras = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf-keras is not installed: pip install 'mha-explain[keras2]'",
)
FORUM_IMAGE = MHAConfig((32, 64, 4), num_heads=2, key_dim=128, attention_axes=(1,))


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--keras", "all"], env={"COLUMNS": "80", "NO_COLOR": "1"})


def _both_layers(axes2: tuple[int, ...] | None, axes3: tuple[int, ...] | None, shape: tuple[int, ...]) -> Any:
    """tf_keras's and keras's layers on one input, the Keras 3 one given the Keras 2 one's weights."""
    import keras
    import tf_keras

    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    layer2 = tf_keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=axes2)
    layer3 = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=axes3)
    layer2(x, x)
    layer3(x, x)
    for variable2, variable3 in zip(layer2.weights, layer3.weights, strict=True):
        value = np.random.default_rng(len(variable2.name)).standard_normal(variable2.shape)
        variable2.assign(value.astype("float32"))
        variable3.assign(value.astype("float32"))
    return layer2, layer3, x


# --- The rewrite, without Keras ---------------------------------------------------


def test_the_rewrite_removes_keras2s_keys_and_moves_negative_axes_to_keras3s_count() -> None:
    saved = {
        "name": "mha",
        "num_heads": 2,
        "attention_axes": [-3],
        "query_shape": [2, 5, 6, 4],
        "key_shape": [2, 5, 6, 4],
        "value_shape": [2, 5, 6, 4],
        "softmax_robust_masking": False,
    }
    assert input_rank(saved) == 4
    assert input_rank({"query_shape": "(None, 5, 6, 4)"}) == 4
    migration = migrate(saved)
    assert migration.config == {"name": "mha", "num_heads": 2, "attention_axes": [2]}
    assert [change.key for change in migration.changes] == [
        "attention_axes",
        "query_shape",
        "key_shape",
        "value_shape",
        "softmax_robust_masking",
    ]
    # Non-negative axes mean the same in both; without a saved rank a negative one stays, and says so.
    assert migrate({"attention_axes": [1, 2]}).config == {"attention_axes": [1, 2]}
    unknown = migrate({"attention_axes": [-3]})
    assert unknown.config == {"attention_axes": [-3]}
    assert "does not say the input's rank" in unknown.changes[0].why
    heads = migrate({"attention_axes": [-2], "query_shape": [2, 5, 4]})
    assert heads.config["attention_axes"] == [-2] and "no Keras 3 attention_axes" in heads.changes[0].why


# --- Against keras and tf_keras ----------------------------------------------------


@needs_tf_keras
def test_the_forums_image_same_outputs_and_every_difference_the_two_layers_show() -> None:
    import keras
    import tf_keras

    from mha_cli.operations.majors import both_kerases

    found = both_kerases(FORUM_IMAGE)
    assert found.same_weights is True and not found.failures
    assert found.output_max_abs_diff is not None and found.output_max_abs_diff <= found.tolerance
    assert found.scores_max_abs_diff is not None and found.scores_max_abs_diff <= found.tolerance
    # model.summary(): what each real layer's symbolic call gives, and which is the real shape.
    shape = (32, 64, 4)
    symbolic = {}
    for module in (keras, tf_keras):
        x = module.Input(shape=shape)
        layer = module.layers.MultiHeadAttention(num_heads=2, key_dim=128, attention_axes=(1,))
        symbolic[module.__name__] = tuple(layer(x, x, return_attention_scores=True)[1].shape)
    real = (None, 64, 2, 32, 32)
    assert symbolic["tf_keras"] == real != symbolic["keras"]
    (summary,) = [d for d in found.differences if d.topic == "keras_symbolic"]
    assert str(symbolic["keras"]) in summary.sentence
    assert f"Keras {keras.__version__} is wrong" in summary.sentence
    # The config keys: from each real layer's get_config().
    layers = {}
    for module in (keras, tf_keras):
        layers[module.__name__] = module.layers.MultiHeadAttention(num_heads=2, key_dim=2)
        layers[module.__name__](np.zeros((1, 3, 4), "float32"), np.zeros((1, 3, 4), "float32"))
    keys3, keys2 = (set(layers[name].get_config()) for name in ("keras", "tf_keras"))
    (config_keys,) = [d for d in found.differences if d.topic == "config_keys"]
    for key in keys3 ^ keys2:
        assert key in config_keys.sentence
    # Keras 3 really refuses Keras 2's config as saved, and loads the rewrite.
    with pytest.raises(Exception, match="Unrecognized keyword arguments"):
        keras.layers.MultiHeadAttention.from_config(layers["tf_keras"].get_config())
    keras.layers.MultiHeadAttention.from_config(migrate(layers["tf_keras"].get_config()).config)
    assert found.migration is not None and "query_shape" in (found.migration.as_saved_refused or "")
    assert found.migration_output_max_abs_diff is not None
    assert found.migration_output_max_abs_diff <= found.tolerance
    # The recorded call: value by position in Keras 3, as a keyword in Keras 2.
    (call,) = [d for d in found.differences if d.topic == "call"]
    assert "value is a keyword" in call.sentence


@needs_tf_keras
def test_a_negative_axis_keras2s_way_and_the_rewrite_that_keeps_it_in_keras3() -> None:
    from mha_cli.operations.majors import both_kerases

    # What the real layers do: tf_keras's (-3,) on (5, 6, 4) is keras's (2,), not keras's (-3,).
    layer2, layer3, x = _both_layers((-3,), (2,), (5, 6, 4))
    assert np.allclose(layer2(x, x).numpy(), np.asarray(layer3(x, x)), atol=1e-5)
    _, wrong, _ = _both_layers((-3,), (-3,), (5, 6, 4))
    assert not np.allclose(layer2(x, x).numpy(), np.asarray(wrong(x, x)), atol=1e-2)

    found = both_kerases(MHAConfig((5, 6, 4), num_heads=2, key_dim=3, attention_axes=(-3,)))
    topics = [d.topic for d in found.differences]
    assert {"attention_axes", "shape", "equation", "output"} <= set(topics)
    assert not found.failures
    assert found.keras3.result is not None and found.keras2.result is not None
    assert found.keras3.result.derivation.layer.attention_axes == (1,)
    assert found.keras2.result.derivation.layer.attention_axes == (2,)
    assert found.migration is not None and found.migration.migration.config["attention_axes"] == [2]
    assert found.migration_output_max_abs_diff is not None
    assert found.migration_output_max_abs_diff <= found.tolerance


@needs_tf_keras
def test_a_rewrite_that_kept_the_negative_axis_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import mha_cli.core.migration as migration
    from mha_cli.operations.majors import both_kerases

    monkeypatch.setattr(migration, "keras2_axes_in_keras3", lambda axes, rank: tuple(axes))
    found = both_kerases(MHAConfig((5, 6, 4), num_heads=2, key_dim=3, attention_axes=(-3,)))
    assert found.migration_output_max_abs_diff is not None
    assert found.migration_output_max_abs_diff > found.tolerance
    assert any("differs from Keras 2" in failure for failure in found.failures)


@needs_tf_keras
def test_fully_masked_rows_zero_in_keras3_flat_in_keras2_and_counted() -> None:
    from mha_cli.operations.majors import both_kerases

    config = MHAConfig((6, 8), value_shape=(1, 8), num_heads=2, key_dim=4, mask_shape=(None, 6, 1))
    found = both_kerases(config)
    assert not found.failures
    r3, r2 = found.keras3.result, found.keras2.result
    assert r3 is not None and r2 is not None and r3.run is not None and r2.run is not None
    mask = r3.run.arrays["attention_mask"] > 0.5  # (batch, 6, 1): one key, so False is a row with none
    blocked = int(np.count_nonzero(~mask)) * 2  # every head
    assert blocked > 0  # seed 0 draws some
    scores3, scores2 = r3.run.arrays["attention_scores"], r2.run.arrays["attention_scores"]
    rows = ~mask[:, None, :, 0]  # (batch, 1, 6): broadcast over heads
    assert np.all(np.where(rows, scores3[..., 0], 0.0) == 0.0)  # Keras 3: zero weights
    assert np.allclose(np.where(rows, scores2[..., 0], 1.0), 1.0)  # Keras 2: 1/keys = 1
    (output,) = [d for d in found.differences if d.topic == "output"]
    assert f"in the {blocked} (item, head, query) rows" in output.sentence
    # As a model calls it (no scores), Keras 3's fused path agrees with Keras 2 (measured).
    assert found.model_call_max_abs_diff is not None and found.model_call_max_abs_diff <= found.tolerance


@needs_tf_keras
def test_an_output_difference_no_rule_accounts_for_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import mha_cli.runtime.reference as reference

    monkeypatch.setattr(reference, "fully_masked_rows", lambda derivation, arrays: 0)
    result = invoke("--shape", "6,8", "--value-shape", "1,8", "--mask-shape", "None,6,1")
    assert result.exit_code == 1, result.output
    assert "no known rule of the two versions accounts for it (UNEXPLAINED)" in " ".join(
        result.stdout.split()
    )


@needs_tf_keras
def test_the_command_tables_fit_80_columns_and_json_names_each_keras() -> None:
    result = invoke("--shape", "32,64,4", "--num-heads", "2", "--key-dim", "128", "--axes", "1")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[1].startswith("outputs equal")
    document = json.loads(invoke("--shape", "10,16", "--json").stdout)
    assert document["kerases"]["3"]["document"]["keras"] == 3
    assert document["kerases"]["2"]["document"]["keras"] == 2
    assert document["kerases"]["2"]["keras_version"].startswith("2.")
    assert "query_shape" in document["kerases"]["2"]["get_config"]
    assert document["same_weights"] is True and document["failures"] == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--no-run",), "--keras all and --no-run"),
        (("--get", "shapes.output"), "--keras all and --get"),
        (("--backend", "jax"), "Keras 2 runs only on TensorFlow"),
    ],
)
def test_what_keras_all_cannot_do_is_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    result = invoke("--shape", "10,16", *args)
    assert result.exit_code == 2 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keras_all_is_explains_alone() -> None:
    result = runner.invoke(
        app, ["compare", "--shape", "10,16", "--axes", "1", "--axes", "none", "--keras", "all"]
    )
    assert result.exit_code == 2 and "choose 3 (the keras package) or 2 (tf_keras)" in result.stderr
    result = runner.invoke(app, ["--shape", "10,16", "--keras", "1"])
    assert result.exit_code == 2 and "or all (both, side by side)" in result.stderr


@needs_tf_keras
def test_a_case_pinned_under_keras2_and_checked_under_keras3_says_the_major_changed(tmp_path: Path) -> None:
    import keras
    import tf_keras

    cases = tmp_path / "migrating.mha.toml"
    cases.write_text('[[case]]\nname = "image"\nshape = [5, 6, 4]\naxes = -3\nkeras = 2\n')
    recorded = runner.invoke(app, ["record", str(cases)])
    assert recorded.exit_code == 0, recorded.output
    assert f'keras_version = "{tf_keras.__version__}"' in cases.read_text()
    same = json.loads(runner.invoke(app, ["check", str(cases), "--json"]).stdout)
    assert same["files"][0]["version_note"] is None
    # The user drops keras = 2: the same -3 now means height, and the report says why the pins broke.
    cases.write_text(cases.read_text().replace("keras = 2\n", ""))
    moved = runner.invoke(app, ["check", str(cases), "--json"])
    assert moved.exit_code == 1, moved.output  # the scores shape moved with the axis
    note = json.loads(moved.stdout)["files"][0]["version_note"]
    assert note.startswith(
        f"expectations recorded with Keras {tf_keras.__version__} on tensorflow; "
        f"this run: Keras {keras.__version__} on tensorflow"
    )
    assert "Keras major 2 then, 3 now" in note and "--keras all" in note


# --- scan: Keras 2 model files --------------------------------------------------------


def _keras2_model(folder: Path) -> tuple[Any, Path, Path]:
    """tests.scan_models.keras2_model with random weights (not Keras's zero biases, so every weight
    shows in the outputs), saved as .h5 and as model.to_json()."""
    from tests.scan_models import keras2_model

    model = keras2_model()
    rng = np.random.default_rng(3)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))
    h5, as_json = folder / "model.h5", folder / "model.json"
    model.save(h5)
    as_json.write_text(model.to_json())
    return model, h5, as_json


@needs_tf_keras
def test_scan_reads_a_keras2_h5_and_json_with_tf_keras_and_keras2s_rules(tmp_path: Path) -> None:
    model, h5, as_json = _keras2_model(tmp_path)
    for path in (h5, as_json):
        result = runner.invoke(app, ["scan", str(path), "--keras", "2", "--json"])
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["keras_version"].startswith("2.")
        calls = {call["layer"]: call for call in document["calls"]}
        assert set(calls) == {"self_attn", "cross", "width"}
        # The image layer's scores shape, as tf_keras's own layer gives it.
        x = np.zeros((1, 5, 6, 4), "float32")
        _, scores = model.get_layer("width")(x, x, return_attention_scores=True)
        assert calls["width"]["shapes"]["attention_scores"][1:] == list(scores.shape[1:])
        assert calls["width"]["config"]["attention_axes"] == [2]  # -3: width in Keras 2
        for call in calls.values():
            assert call["error"] is None and call["checks"]["model_call"]["status"] == "passed"
            assert {check["status"] for check in call["checks"].values()} <= {"passed", "warning"}
    # Keras 3 cannot load it as it is: one line that says which Keras saved it and what to run.
    refused = runner.invoke(app, ["scan", str(h5)])
    assert refused.exit_code == 2
    assert "saved by Keras 2" in refused.stderr and "--keras 2" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@needs_tf_keras
def test_scan_keras_all_rewrites_each_layer_for_keras3_and_the_rewrite_holds(tmp_path: Path) -> None:
    import keras

    model, h5, _ = _keras2_model(tmp_path)
    result = runner.invoke(app, ["scan", str(h5), "--keras", "all", "--json"])
    assert result.exit_code == 0, result.output
    migrations = {found["layer"]: found for found in json.loads(result.stdout)["migrations"]}
    assert set(migrations) == {"self_attn", "cross", "width"}
    for found in migrations.values():
        assert "Unrecognized keyword arguments" in found["as_saved_refused"]
        assert found["problem"] is None and found["output_max_abs_diff"] <= found["tolerance"]
    assert migrations["width"]["config"]["attention_axes"] == [2]
    # Independently: the rewritten config, built by Keras 3 here with the Keras 2 layer's weights.
    original = model.get_layer("width")
    rewritten = keras.layers.MultiHeadAttention.from_config(migrations["width"]["config"])
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 4)).astype("float32")
    rewritten(x, x)
    for variable, value in zip(rewritten.weights, original.get_weights(), strict=True):
        variable.assign(value)
    assert np.allclose(np.asarray(rewritten(x, x)), original(x, x).numpy(), atol=1e-5)
    text = runner.invoke(app, ["scan", str(h5), "--keras", "all"], env={"COLUMNS": "80"}).stdout
    assert "attention_axes [-3] -> [2]" in " ".join(text.split())
    assert all(len(line) <= 80 for line in text.splitlines())


@needs_tf_keras
def test_an_unregistered_keras2_class_is_named_by_its_class_in_every_format(tmp_path: Path) -> None:
    """tf_keras's .keras and JSON loaders leave an unknown class as its name and call it ('str' object
    is not callable); the line names the class, as the .h5 loader's own error does."""
    import tf_keras

    class LocalBlock(tf_keras.layers.Layer):  # defined here, registered nowhere
        def call(self, x: Any) -> Any:
            return x * 2.0

    x = tf_keras.Input((6, 8))
    model = tf_keras.Model(x, tf_keras.layers.MultiHeadAttention(2, 4)(LocalBlock()(x), x))
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(model.to_json())
    with pytest.raises(TypeError, match="'str' object is not callable"):
        tf_keras.models.model_from_json((tmp_path / "m.json").read_text())  # tf_keras's own words
    for name in ("m.h5", "m.keras", "m.json"):
        result = runner.invoke(app, ["scan", str(tmp_path / name), "--keras", "2"])
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert "the model uses the custom class 'LocalBlock', which is not registered" in line, line


@needs_tf_keras
def test_a_keras2_lambda_runs_no_code_unless_trusted(tmp_path: Path) -> None:
    import tf_keras

    marker = tmp_path / "ran"
    x = tf_keras.Input((4, 8))
    touched = tf_keras.layers.Lambda(lambda t, m=str(marker): (open(m, "w").close(), t)[1])(x)
    attended = tf_keras.layers.MultiHeadAttention(num_heads=1, key_dim=2)(touched, touched)
    path = tmp_path / "lambda.json"
    path.write_text(tf_keras.Model(x, attended).to_json())
    marker.unlink()  # building the model called it
    refused = runner.invoke(app, ["scan", str(path), "--keras", "2"])
    assert refused.exit_code == 2 and "--trust-model" in refused.stderr
    assert not marker.exists()
    trusted = runner.invoke(app, ["scan", str(path), "--keras", "2", "--trust-model"])
    assert trusted.exit_code == 0, trusted.output
    assert marker.exists()  # the same file runs its code when trusted: the refusal is what kept it out


@needs_tf_keras
def test_a_keras2_model_is_pinned_and_checked_from_a_case_file(tmp_path: Path) -> None:
    _keras2_model(tmp_path)
    cases = tmp_path / "model.mha.toml"
    cases.write_text('[model]\npath = "model.h5"\nkeras = 2\n')
    recorded = runner.invoke(app, ["record", str(cases)])
    assert recorded.exit_code == 0, recorded.output
    pinned = cases.read_text()
    assert "[calls.width]" in pinned and 'keras_version = "2.' in pinned
    checked = runner.invoke(app, ["check", str(cases), "--json"])
    assert checked.exit_code == 0, checked.output
    assert {case["status"] for case in json.loads(checked.stdout)["cases"]} == {"passed"}
    cases.write_text(pinned.replace("keras = 2\n", "keras = 4\n"))
    refused = runner.invoke(app, ["check", str(cases)])
    assert refused.exit_code == 2 and "model.keras: 3 (the keras package) or 2" in refused.stderr


@needs_tf_keras
def test_a_keras3_file_under_keras2_says_which_keras_saved_it(tmp_path: Path) -> None:
    import keras

    x = keras.Input((6, 8))
    path = tmp_path / "keras3.keras"
    keras.Model(x, keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)).save(path)
    refused = runner.invoke(app, ["scan", str(path), "--keras", "2"])
    assert refused.exit_code == 2
    assert f"saved by Keras {keras.__version__}, which tf_keras (Keras 2) does not load" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
