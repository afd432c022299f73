"""--keras 2: tf_keras's MultiHeadAttention, under Keras 2's own rules, checked against tf_keras itself.

Skipped with the reason when tf-keras is not installed (pip install 'mha-explain[keras2]'); CI installs it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError
from mha_cli.core.mha import derive

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--keras", "2"], env={"COLUMNS": "120", "NO_COLOR": "1"})


# --- The algebra: Keras 2's rules, no Keras -----------------------------------------


def test_keras2_counts_negative_axes_from_the_projected_rank() -> None:
    assert derive(MHAConfig((5, 6, 4), attention_axes=(-3,), keras=2)).layer.attention_axes == (2,)
    assert derive(MHAConfig((5, 6, 4), attention_axes=(-3,))).layer.attention_axes == (1,)
    assert derive(MHAConfig((10, 16), attention_axes=(-3,), keras=2)).layer.attention_axes == (1,)
    # -2 is the heads axis of Keras 2's projected query: explained (with a warning), not refused.
    assert derive(MHAConfig((3, 4, 8), attention_axes=(-2,), keras=2)).layer.attention_axes == (3,)
    with pytest.raises(ConfigError, match="axis -1 is the key_dim axis of the projected query"):
        derive(MHAConfig((3, 4, 8), attention_axes=(-1,), keras=2))
    summary = " ".join(derive(MHAConfig((5, 6, 4), attention_axes=(-3,), keras=2)).summary)
    assert "-3 is width (axis 2); Keras 3.12+ reads -3 as height (axis 1)" in summary


def test_keras2_has_one_execution_path_and_no_gate_or_window() -> None:
    assert derive(MHAConfig((10, 16), keras=2)).execution_path == "einsum"
    assert derive(MHAConfig((10, 16))).execution_path == "fused"
    for config in (
        MHAConfig((10, 16), use_gate=True, keras=2),
        MHAConfig((10, 16), sliding_window=2, keras=2),
    ):
        with pytest.raises(ConfigError, match="Keras 2 has no"):
            derive(config)


def test_without_tf_keras_it_is_exit_3_with_the_pip_command() -> None:
    probe = (
        "import sys\n"
        "sys.modules['tf_keras'] = None\n"
        "from mha_cli.cli.app import main\n"
        "sys.argv = ['mha-explain', '--shape', '10,16', '--keras', '2']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert "pip install 'mha-explain[keras2]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- Against tf_keras -------------------------------------------------------------

needs_tf_keras = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf-keras is not installed: pip install 'mha-explain[keras2]'",
)


def real_keras2(shape: tuple[int, ...], axes: tuple[int, ...] | None, **kwargs: int):  # type: ignore[no-untyped-def]
    """tf_keras's own layer: its forward scores shape, symbolic scores shape and equation."""
    import numpy as np
    import tf_keras

    layer = tf_keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=axes, **kwargs)
    x = np.ones((2, *shape), "float32")
    _, scores = layer(x, x, return_attention_scores=True)
    symbolic = tf_keras.Input(shape=shape)
    _, symbolic_scores = layer(symbolic, symbolic, return_attention_scores=True)
    return tuple(scores.shape), tuple(symbolic_scores.shape), layer._dot_product_equation


@pytest.mark.keras
@needs_tf_keras
@pytest.mark.parametrize(("shape", "axes"), [((10, 16), (1,)), ((32, 64, 4), (1,)), ((32, 64, 4), None)])
def test_the_forums_cases_under_keras2_with_its_own_symbolic_shapes(
    shape: tuple[int, ...], axes: tuple[int, ...] | None
) -> None:
    args = ["--shape", ",".join(map(str, shape)), "--num-heads", "2", "--key-dim", "2", "--json"]
    result = invoke(*args, "--axes", "none" if axes is None else ",".join(map(str, axes)))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["keras_version"].startswith("2.")
    real, symbolic, equation = real_keras2(shape, axes)
    assert doc["shapes"]["attention_scores"][1:] == list(real[1:])
    assert doc["equations"]["dot_product"] == equation
    # Keras 2's symbolic scores shape is right, where Keras 3's is not (keras-team/keras#19303).
    assert doc["checks"]["keras_symbolic"]["status"] == "passed"
    assert tuple(doc["checks"]["keras_symbolic"]["attention_scores"]) == symbolic
    assert all(check["status"] == "passed" for check in doc["checks"].values())
    assert doc["execution_path"]["observed"] == "einsum"


@pytest.mark.keras
@needs_tf_keras
def test_a_negative_axis_attends_where_tf_keras_attends() -> None:
    result = invoke("--shape", "5,6,4", "--axes", "-3", "--num-heads", "2", "--key-dim", "2", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    real, _, equation = real_keras2((5, 6, 4), (-3,))
    assert doc["equations"]["dot_product"] == equation == "abfde,abcde->abdcf"
    assert doc["shapes"]["attention_scores"][1:] == list(real[1:])
    assert [axis["role"] for axis in doc["axes"]] == ["batch", "free", "attended", "feature"]


@pytest.mark.keras
@needs_tf_keras
def test_seed_002s_model_gives_its_inbound_nodes_through_graph() -> None:
    """The maintainer's question (../shared/seeds/002): value stored as a keyword in Keras 2's JSON."""
    result = invoke(
        "--shape", "8,16", "--value-shape", "4,16", "--num-heads", "2", "--key-dim", "2", "--graph", "--json"
    )
    assert result.exit_code == 0, result.output
    convention = json.loads(result.stdout)["call_convention"]
    # The JSON the question printed, exactly.
    assert convention["multi_head_attention"]["inbound_nodes"] == [
        [["input_1", 0, 0, {"value": ["input_2", 0, 0]}]]
    ]
    for name in ("attention", "additive_attention"):
        assert convention[name]["inbound_nodes"] == [[["input_1", 0, 0, {}], ["input_2", 0, 0, {}]]]
    assert convention["multi_head_attention"]["args"] == ["input_1"]
    assert convention["multi_head_attention"]["kwargs"] == {"value": "input_2"}
    text = invoke("--shape", "8,16", "--value-shape", "4,16", "--graph").stdout
    assert '"multi_head_attention" inbound_nodes: [[["input_1", 0, 0, {"value": ["input_2", 0, 0]}]]]' in text


@pytest.mark.keras
@needs_tf_keras
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_the_numpy_check_follows_keras2s_softmax_on_fully_masked_rows(dtype: str) -> None:
    """Keras 2 adds -1e9 and keeps the weights; re-executed with Keras 3's softmax, the check would fail."""
    import numpy as np

    from mha_cli.runtime.keras_adapter import run_layer
    from mha_cli.runtime.reference import reexecute

    config = MHAConfig((8, 16), value_shape=(2, 16), mask_shape=(None, 8, 2), dtype=dtype, seed=3, keras=2)
    run = run_layer(derive(config), "tensorflow")
    fully_masked = ~(run.arrays["attention_mask"] > 0.5).any(axis=-1)
    assert fully_masked.any()  # the seed gives a query position with no key left
    tolerance = {"float32": 1e-4, "float64": 1e-9, "float16": 1e-2}[dtype]
    ours = reexecute(derive(config), run.arrays)
    as_keras3 = reexecute(derive(replace(config, keras=3)), run.arrays)
    assert np.abs(ours["output"] - run.arrays["output"]).max() < tolerance
    assert np.abs(as_keras3["output"] - run.arrays["output"]).max() > 0.1
    result = invoke(
        "--shape",
        "8,16",
        "--value-shape",
        "2,16",
        "--mask-shape",
        "None,8,2",
        "--dtype",
        dtype,
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output


@pytest.mark.keras
@needs_tf_keras
def test_keras2_runs_on_tensorflow_only_and_case_files_may_say_so(tmp_path: Path) -> None:
    refused = invoke("--shape", "10,16", "--backend", "jax")
    assert refused.exit_code == 2
    assert "Keras 2 (tf_keras) runs on TensorFlow only" in refused.stderr
    cases = tmp_path / "k2.mha.toml"
    cases.write_text('[[case]]\nname = "k2"\nshape = [5, 6, 4]\naxes = -3\nkeras = 2\n')
    checked = runner.invoke(app, ["check", str(cases), "--json"], env={"COLUMNS": "120"})
    assert checked.exit_code == 0, checked.output  # unrecorded: verified, nothing to compare
    (case,) = json.loads(checked.stdout)["cases"]
    assert case["status"] == "unrecorded" and case["executed"] is True


@needs_tf_keras
@pytest.mark.keras
def test_code_for_keras2_is_a_tf_keras_script_that_prints_keras2s_shapes(tmp_path: Path) -> None:
    """--keras 2 --code imports tf_keras; run in a fresh process, it prints the shapes its comments give,
    which for attention_axes=(-3,) are not Keras 3's (width, not height, is attended)."""
    args = ["--shape", "32,64,4", "--axes", "-3", "--code"]
    scripts = {2: invoke(*args).stdout, 3: runner.invoke(app, args).stdout}
    assert "import tf_keras as keras" in scripts[2] and "import tf_keras" not in scripts[3]
    printed = {}
    for major, script in scripts.items():
        path = tmp_path / f"keras{major}.py"
        path.write_text(script, encoding="utf-8")
        ran = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
        printed[major] = [
            line for line in ran.stdout.splitlines() if line.startswith(("output", "attention"))
        ]
        expected = [line.split("#")[1].strip() for line in script.splitlines() if line.startswith("print(")]
        assert [line.split(" ", 1)[1] for line in printed[major]] == expected, major
    assert printed[2] != printed[3]  # the same line of code, two different layers
