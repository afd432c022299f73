"""Test vectors: re-read from disk and recomputed by an independent NumPy implementation.

The implementation below shares nothing with mha_cli: no einsum equations (ours or Keras's), no
derivation. It reads the layer's arguments from the manifest, projects with tensordot, moves the
attended axes together with transpose/reshape, and applies a softmax written out here. Every
intermediate in the file must equal it within the dtype's tolerance, and a Keras layer rebuilt from
the manifest alone (from_config, weights by variable path) must reproduce the stored output.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

runner = CliRunner()
needs_tf_keras = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf-keras is not installed: pip install 'mha-explain[keras2]'",
)


def write(out: Path, *args: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    result = runner.invoke(app, ["vectors", *args, "--out", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    with np.load(out / "vectors.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    return arrays, json.loads((out / "manifest.json").read_text())


def weight(arrays: dict[str, np.ndarray], short: str) -> np.ndarray | None:
    found = [name for name in arrays if name.endswith(f"/{short}")]
    assert len(found) <= 1, found
    return arrays[found[0]].astype(np.float64) if found else None


def project(x: np.ndarray, arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    kernel = weight(arrays, f"{name}/kernel")
    assert kernel is not None
    y = np.tensordot(x, kernel, axes=([-1], [0]))
    bias = weight(arrays, f"{name}/bias")
    return y if bias is None else y + bias


def independent(arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """MultiHeadAttention from its definition: projections, scaled dot product, masked softmax, output."""
    config = manifest["layer"]["config"]
    heads, key_dim = config["num_heads"], config["key_dim"]
    query = arrays["query"].astype(np.float64)
    value = arrays["value"].astype(np.float64)
    key = arrays["key"].astype(np.float64)
    rank = query.ndim
    attended = sorted(manifest["layer"]["resolved_attention_axes"])
    free = [axis for axis in range(1, rank - 1) if axis not in attended]
    q, k, v = project(query, arrays, "query"), project(key, arrays, "key"), project(value, arrays, "value")
    found = {"query_projected": q, "key_projected": k, "value_projected": v}
    # Projected: (batch, inner axes..., heads, dim); gathered: (batch, free..., heads, attended..., dim).
    order = [0, *free, rank - 1, *attended, rank]

    def grouped(t: np.ndarray) -> np.ndarray:
        moved = t.transpose(order)
        lead = moved.shape[: 2 + len(free)]
        return moved.reshape(*lead, -1, moved.shape[-1])

    gq, gk, gv = grouped(q), grouped(k), grouped(v)
    logits = gq @ np.swapaxes(gk, -1, -2) / math.sqrt(key_dim)
    lead = gq.shape[:-2]
    q_sizes = [query.shape[axis] for axis in attended]
    k_sizes = [key.shape[axis] for axis in attended]
    found["attention_logits"] = logits.reshape(*lead, *q_sizes, *k_sizes)
    allowed = np.ones(found["attention_logits"].shape, bool)
    if "softmax_mask" in arrays:
        mask = arrays["softmax_mask"]
        while mask.ndim < allowed.ndim:  # the heads axis sits before the attended query axes
            mask = np.expand_dims(mask, -2 * len(attended) - 1)
        allowed = np.broadcast_to(mask, allowed.shape)
    allowed_rows = allowed.reshape(logits.shape)
    assert allowed_rows.any(axis=-1).all(), "a fully masked row: pick another seed for this test"
    shifted = np.where(allowed_rows, logits, -np.inf)
    exponent = np.exp(shifted - shifted.max(axis=-1, keepdims=True))
    weights = exponent / exponent.sum(axis=-1, keepdims=True)
    found["attention_scores"] = weights.reshape(found["attention_logits"].shape)
    combined = (weights @ gv).reshape(*lead, *q_sizes, gv.shape[-1])
    # Back to (batch, inner axes..., heads, value_dim).
    found["attention_output"] = combined.transpose(np.argsort(order))
    into_output = found["attention_output"]
    if config.get("use_gate"):
        found["gate"] = 1.0 / (1.0 + np.exp(-project(query, arrays, "gate")))
        into_output = found["output_projection_input"] = into_output * found["gate"]
    kernel = weight(arrays, "attention_output/kernel")
    assert kernel is not None
    output = np.tensordot(into_output, kernel, axes=([-2, -1], [0, 1]))
    bias = weight(arrays, "attention_output/bias")
    found["output"] = output if bias is None else output + bias
    assert heads == q.shape[-2]
    return found


CASES = {
    "sentence, mask": ["--shape", "6,8", "--num-heads", "2", "--key-dim", "3", "--mask-shape", "None,6,6"],
    "cross, every width differs": [
        "--shape", "5,8", "--value-shape", "7,6", "--key-shape", "7,4", "--num-heads", "3",
        "--key-dim", "2", "--value-dim", "5", "--output-shape", "9",
    ],
    "image, two axes": ["--shape", "4,5,6", "--axes", "1,2", "--num-heads", "2", "--key-dim", "4"],
    "image rows, output tuple": [
        "--shape", "3,5,6", "--axes", "2", "--num-heads", "2", "--key-dim", "3", "--output-shape", "2,4",
    ],
    "causal, no bias, float64": [
        "--shape", "7,4", "--num-heads", "1", "--key-dim", "4", "--causal", "--no-bias", "--dtype", "float64",
    ],
    "float16": ["--shape", "6,8", "--num-heads", "2", "--key-dim", "4", "--dtype", "float16"],
}  # fmt: skip


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_an_independent_numpy_implementation_recomputes_every_stored_tensor(
    tmp_path: Path, args: list[str]
) -> None:
    arrays, manifest = write(tmp_path, *args)
    tolerance = manifest["tolerance"]
    assert manifest["dtype"] == next((args[i + 1] for i, a in enumerate(args) if a == "--dtype"), "float32")
    recomputed = independent(arrays, manifest)
    for name in ("query_projected", "key_projected", "value_projected", "attention_logits"):
        assert np.abs(recomputed[name] - arrays[name]).max() <= tolerance, name
    for name in ("attention_scores", "attention_output", "output"):
        assert recomputed[name].shape == arrays[name].shape, name
        assert np.abs(recomputed[name] - arrays[name].astype(np.float64)).max() <= tolerance, name
    # The stored scores are the softmax of the stored logits: "before" and "after" are that pair.
    assert arrays["attention_scores"].shape == arrays["attention_logits"].shape


def test_the_manifest_lists_exactly_what_the_file_holds_and_rebuilds_the_layer(tmp_path: Path) -> None:
    import keras

    arrays, manifest = write(tmp_path, *CASES["cross, every width differs"], "--mask-shape", "None,5,7")
    listed = {entry["name"]: entry for entry in manifest["arrays"]}
    assert list(listed) == list(arrays)  # same names, same order
    for name, entry in listed.items():
        assert tuple(entry["shape"]) == arrays[name].shape and entry["dtype"] == str(arrays[name].dtype)
        assert entry["meaning"] and entry["role"] in {"input", "mask", "weight", "intermediate", "output"}
    assert arrays["attention_mask"].dtype == bool and arrays["softmax_mask"].dtype == bool
    assert manifest["keras_version"] == keras.__version__ and manifest["backend"] == "tensorflow"
    assert manifest["call"]["text"].startswith("layer(query, value, key=key, attention_mask=mask")
    (node,) = manifest["call"]["inbound_nodes"]
    assert node["kwargs"]["key"]["config"]["keras_history"][0] == "key"
    # A Keras layer built from the manifest alone, given the weights by their variable paths,
    # reproduces the stored output and scores.
    layer = keras.layers.MultiHeadAttention.from_config(manifest["layer"]["config"])
    shapes = manifest["layer"]["build_shapes"]
    layer.build(shapes["query"], shapes["value"], shapes["key"])
    assert {variable.path for variable in layer.weights} == {
        e["name"] for e in manifest["arrays"] if e["role"] == "weight"
    }
    for variable in layer.weights:
        variable.assign(arrays[variable.path])
    output, scores = layer(
        arrays["query"],
        arrays["value"],
        key=arrays["key"],
        attention_mask=arrays["attention_mask"],
        return_attention_scores=True,
    )
    assert np.abs(keras.ops.convert_to_numpy(output) - arrays["output"]).max() <= manifest["tolerance"]
    assert np.abs(keras.ops.convert_to_numpy(scores) - arrays["attention_scores"]).max() <= 1e-6
    assert manifest["equations"] == {
        "query": layer._query_dense.equation,
        "key": layer._key_dense.equation,
        "value": layer._value_dense.equation,
        "output": layer._output_dense.equation,
        "dot_product": layer._dot_product_equation,
        "combine": layer._combine_equation,
    }


def test_a_gated_layer_stores_its_gate_and_what_the_output_projection_received(tmp_path: Path) -> None:
    import inspect

    import keras

    if "use_gate" not in inspect.signature(keras.layers.MultiHeadAttention.__init__).parameters:
        pytest.skip(f"Keras {keras.__version__} has no use_gate (3.14+)")
    arrays, manifest = write(tmp_path, "--shape", "6,8", "--num-heads", "2", "--key-dim", "3", "--gate")
    recomputed = independent(arrays, manifest)
    for name in ("gate", "output_projection_input", "output"):
        assert np.abs(recomputed[name] - arrays[name]).max() <= manifest["tolerance"], name


def test_bfloat16_is_stored_as_float32_and_says_so(tmp_path: Path) -> None:
    arrays, manifest = write(
        tmp_path, "--shape", "6,8", "--num-heads", "2", "--key-dim", "4", "--dtype", "bfloat16"
    )
    assert manifest["dtype"] == "bfloat16" and manifest["stored_dtype"] == "float32"
    assert arrays["output"].dtype == np.float32
    # Widened exactly: every stored value is a bfloat16 (its low 16 bits are zero).
    assert not (arrays["query"].view(np.uint32) & 0xFFFF).any()
    recomputed = independent(arrays, manifest)
    assert np.abs(recomputed["output"] - arrays["output"]).max() <= manifest["tolerance"]


@needs_tf_keras
def test_keras2_vectors_have_tf_keras_variable_names_and_recompute(tmp_path: Path) -> None:
    import tf_keras

    arrays, manifest = write(
        tmp_path, "--shape", "4,5,6", "--axes", "-3", "--num-heads", "2", "--key-dim", "3", "--keras", "2"
    )
    assert manifest["keras"] == 2 and manifest["keras_version"] == tf_keras.__version__
    assert "multi_head_attention/query/kernel" in arrays and manifest["call"]["inbound_nodes"]
    # Keras 2 counts a negative axis on the projected rank: -3 on a rank-4 input is axis 2 (width).
    assert manifest["layer"]["resolved_attention_axes"] == [2]
    recomputed = independent(arrays, manifest)
    assert np.abs(recomputed["output"] - arrays["output"]).max() <= manifest["tolerance"]


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = runner.invoke(app, ["vectors", "--shape", "6,8", "--num-heads", "2", "--out", str(a_file)])
    assert result.exit_code == 2
    assert "is a file; name a directory" in result.output
    big = runner.invoke(
        app,
        [
            "vectors",
            "--shape",
            "512,64",
            "--num-heads",
            "8",
            "--max-memory",
            "1MiB",
            "--out",
            str(tmp_path / "v"),
        ],
    )
    assert big.exit_code == 2, big.output
    assert "test vectors need a real forward pass" in big.output
    assert not (tmp_path / "v").exists()  # a run that writes nothing leaves no directory behind


def read_sets(directory: Path) -> list[tuple[str, dict[str, np.ndarray], dict[str, Any]]]:
    index = json.loads((directory / "index.json").read_text())
    found = []
    for entry in index["sets"]:
        with np.load(directory / entry["directory"] / "vectors.npz") as stored:
            arrays = {name: stored[name] for name in stored.files}
        manifest = json.loads((directory / entry["directory"] / "manifest.json").read_text())
        assert manifest["source"]["id"] == entry["id"]
        found.append((entry["directory"], arrays, manifest))
    return found


def test_scan_vectors_hold_the_models_own_weights_by_path_and_every_call(tmp_path: Path) -> None:
    import keras

    from tests import scan_models

    models = {"encoder_decoder": scan_models.encoder_decoder(), "shared": scan_models.shared()}
    for name, model in models.items():
        path = tmp_path / f"{name}.keras"
        model.save(path)
        out = tmp_path / f"{name}-vectors"
        result = runner.invoke(app, ["scan", str(path), "--vectors", str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["calls"]  # stdout stays the scan's JSON document
        loaded = keras.saving.load_model(path)
        variables = {variable.path: keras.ops.convert_to_numpy(variable) for variable in loaded.weights}
        sets = read_sets(out)
        assert len(sets) == len(json.loads(result.stdout)["calls"])
        for directory, arrays, manifest in sets:
            weights = [entry["name"] for entry in manifest["arrays"] if entry["role"] == "weight"]
            assert weights and all(np.array_equal(arrays[w], variables[w]) for w in weights), directory
            recomputed = independent(arrays, manifest)
            assert np.abs(recomputed["output"] - arrays["output"]).max() <= manifest["tolerance"], directory
            # A functional model records each call of its own layers; a custom layer's inner call has none.
            nested = directory == "encoder_block/attention"
            assert (manifest["call"]["inbound_nodes"] is None) is nested, directory
    # A shared layer's second call is its own set, beside the first.
    assert [directory for directory, _, _ in read_sets(tmp_path / "shared-vectors")] == [
        "shared",
        "shared/call-1",
    ]
    causal = dict((d, m) for d, _, m in read_sets(tmp_path / "encoder_decoder-vectors"))["decoder_causal"]
    assert causal["call"]["use_causal_mask"] is True
    # The model gave it no attention_mask, so neither do its vectors: the layer makes the causal
    # mask itself, and the softmax_mask it applied is there for a port to compare against.
    names = {entry["name"]: entry for entry in causal["arrays"]}
    assert "attention_mask" not in names and "attention_mask=" not in causal["call"]["text"]
    assert "use_causal_mask" in names["softmax_mask"]["meaning"]


def test_check_vectors_writes_one_set_per_case_named_by_file_and_case(tmp_path: Path) -> None:
    cases = Path(__file__).parent.parent / "examples" / "attention_axes.mha.toml"
    result = runner.invoke(app, ["check", str(cases), "--vectors", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    sets = read_sets(tmp_path)
    assert sorted(d for d, _, _ in sets) == [
        "attention_axes/image-all-axes",
        "attention_axes/image-height-only",
        "attention_axes/sentence-axes-1",
        "attention_axes/sentence-axes-none",
    ]
    for directory, arrays, manifest in sets:
        assert manifest["source"]["case"] == directory.split("/")[1]
        recomputed = independent(arrays, manifest)
        assert np.abs(recomputed["output"] - arrays["output"]).max() <= manifest["tolerance"], directory


def test_the_docs_numpy_loader_runs_on_real_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/vectors.md's Python example, run as written on the vectors its console example writes."""
    import re

    page = (Path(__file__).parent.parent / "docs" / "vectors.md").read_text(encoding="utf-8")
    (command,) = re.findall(r"\$ mha-explain (vectors [^\n]*)", page)
    (block,) = re.findall(r"```python\n(.*?)```", page, re.S)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command.split())
    assert result.exit_code == 0, result.output
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/vectors.md", "exec"), namespace)  # its asserts compare with the file
    assert np.abs(namespace["output"] - namespace["arrays"]["output"]).max() <= 1e-4
