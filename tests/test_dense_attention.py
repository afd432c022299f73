"""keras.layers.Attention and AdditiveAttention (--layer dot|additive), against the real layers.

The pure tests hold the algebra's rules. The keras tests build the real layers themselves, set their
weights, call them on inputs and masks made here, and re-execute them with a NumPy written here from
the layers' documented formulas, one (query, key) pair at a time: no mha_cli derivation, reference or
runtime in the oracle. The tool is then run on the same configuration and must agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.dense import DenseConfig, call_line, constructor, derive_dense
from mha_cli.core.errors import ConfigError

runner = CliRunner()


# --- The algebra, alone ---------------------------------------------------------------------------


def test_dot_attention_of_a_sentence_has_no_weights_and_keeps_the_value_s_features() -> None:
    d = derive_dense(DenseConfig("dot", (8, 16)))
    assert d.shapes["attention_scores"].shape == (None, 8, 8)
    assert d.shapes["output"].shape == (None, 8, 16)
    assert d.weights == () and d.params == 0
    assert (d.use_scale, d.score_mode, d.key_given) == (False, "dot", False)
    assert d.intermediate is None
    assert constructor(d) == "keras.layers.Attention()"
    assert call_line(d) == "output, scores = layer([query, value], return_attention_scores=True)"
    # 2 Tq Tv dim for the scores, 5 Tq Tv for the softmax, 2 Tq Tv dv for the combine.
    assert d.flops_per_item == 2 * 64 * 16 + 5 * 64 + 2 * 64 * 16


def test_cross_attention_scores_are_query_by_key_positions_and_the_output_has_the_value_s_width() -> None:
    d = derive_dense(DenseConfig("additive", (5, 4), value_shape=(7, 6), key_shape=(7, 4)))
    assert d.shapes["attention_scores"].shape == (None, 5, 7)
    assert d.shapes["output"].shape == (None, 5, 6)
    # AdditiveAttention scales by default: one weight per query feature, Glorot-initialised.
    assert [(w.name, w.shape, w.initializer) for w in d.weights] == [("scale", (4,), "glorot_uniform")]
    # The sum of query and key is broadcast to (B, Tq, Tv, features) before the sum over features.
    assert d.intermediate is not None and d.intermediate.shape == (None, 5, 7, 4)
    assert call_line(d) == "output, scores = layer([query, value, key], return_attention_scores=True)"


def test_concat_scores_build_a_scale_and_a_concat_score_weight() -> None:
    d = derive_dense(DenseConfig("dot", (3, 2), use_scale=True, score_mode="concat"))
    assert [(w.name, w.shape) for w in d.weights] == [("scale", ()), ("concat_score_weight", ())]
    assert d.params == 2
    assert "scale x (q + k)" in d.steps[0].formula  # inside tanh, unlike AdditiveAttention's scale
    additive = derive_dense(DenseConfig("additive", (3, 2)))
    assert "scale x tanh(q + k)" in additive.steps[0].formula


def test_masks_are_a_list_of_padding_masks_and_the_causal_rule() -> None:
    d = derive_dense(DenseConfig("dot", (5, 4), (6, 4), query_mask=True, value_mask=True, causal=True))
    assert [(m.name, m.shape) for m in d.masks] == [
        ("query_mask", (None, 5)),
        ("value_mask", (None, 6)),
        ("causal", (1, 5, 6)),
    ]
    assert [step.name for step in d.steps] == ["scores", "mask", "softmax", "combine", "query_mask"]
    assert "mask=[query_mask, value_mask], use_causal_mask=True" in call_line(d)
    assert (
        "scores - 65504"
        in derive_dense(DenseConfig("dot", (5, 4), value_mask=True, dtype="float16")).steps[1].formula
    )


@pytest.mark.parametrize(
    ("config", "option", "words"),
    [
        (DenseConfig("dot", (5, 4, 3)), "--shape", "give two sizes"),
        (DenseConfig("dot", (5, 4), (6, 4), (7, 4)), "--key-shape", "the value's 6 positions"),
        (DenseConfig("dot", (5, 4), (6, 3)), "--value-shape", "give 6,4 (or --key-shape 6,4)"),
        (DenseConfig("dot", (5, 4), (6, 3), (6, 3)), "--key-shape", "needs the query's 4 features"),
        (DenseConfig("additive", (5, 4), (6, 4), (6, 3)), "--key-shape", "equal features"),
        (
            DenseConfig("additive", (5, 4), score_mode="dot"),
            "--score-mode",
            "AdditiveAttention has no score_mode",
        ),
        (DenseConfig("dot", (5, 4), score_mode="general"), "--score-mode", "choose one of dot, concat"),
        (DenseConfig("dot", (5, 4), dropout=1.0), "--dropout", "[0, 1)"),
        (DenseConfig("dot", (5, 0)), "--shape", "positive"),
    ],
)
def test_what_the_layer_cannot_take_is_refused_naming_the_option(
    config: DenseConfig, option: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        derive_dense(config)
    assert raised.value.option == option
    assert words in raised.value.problem


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--num-heads", "2"], "--num-heads: --layer dot: Attention has no such argument"),
        (["--no-bias"], "--no-bias: --layer dot: Attention has no such argument"),
        (["--axes", "1"], "--axes: --layer dot: Attention has no such argument"),
        (["--mask-shape", "5,5"], "give --query-mask, --value-mask"),
        (["--num-key-value-heads", "1"], "--num-key-value-heads: --layer dot"),
        (["--keras", "2"], "--keras 2: --layer dot runs Keras 3's Attention"),
        (["--graph"], "--layer dot and --graph: --graph is MultiHeadAttention's"),
        (["--backend", "all"], "--layer dot and --backend all"),
    ],
)
def test_the_cli_refuses_what_attention_lacks_in_one_line(args: list[str], line: str) -> None:
    result = runner.invoke(app, ["--shape", "5,4", "--layer", "dot", *args])
    assert result.exit_code == 2, result.output
    assert line in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("option", ["--use-scale", "--no-use-scale", "--query-mask", "--value-mask"])
def test_multi_head_attention_refuses_attention_s_options(option: str) -> None:
    result = runner.invoke(app, ["--shape", "5,4", option, "--no-run"])
    assert result.exit_code == 2
    assert f"{option}: --layer mha: MultiHeadAttention has no such argument" in result.output


@pytest.mark.parametrize("command", [["vectors", "--out", "vectors-out"], ["map", "--to", "torch"]])
def test_vectors_and_map_say_they_do_not_cover_attention(command: list[str], tmp_path: Any) -> None:
    result = runner.invoke(app, [*command, "--shape", "5,4", "--layer", "additive"])
    assert result.exit_code == 2
    assert result.output.startswith("mha-explain: error: --layer additive: ")
    assert not (tmp_path / "vectors-out").exists()


@pytest.mark.parametrize("command", [[], ["compare"]])
def test_no_run_answers_without_importing_keras_or_numpy(command: list[str]) -> None:
    args = [*command, "--shape", "5,4", "--layer", "additive", "--no-run"]
    args += [] if command else ["--get", "shapes.attention_scores"]
    code = (
        "import sys\n"
        "from mha_cli.__main__ import main\n"
        f"sys.argv = ['mha-explain', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if command:
        assert "AdditiveAttention" in done.stdout and "not run: --no-run" in done.stdout
        return
    assert done.stdout == "None,5,5\n"


# --- The real layers --------------------------------------------------------------------------------


def _oracle(
    kind: str,
    score_mode: str,
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    weights: dict[str, np.ndarray],
    query_mask: np.ndarray | None,
    value_mask: np.ndarray | None,
    causal: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The layers' documented computation, one (item, query i, key j) score at a time."""
    batch, tq, tv = query.shape[0], query.shape[1], key.shape[1]
    scores = np.zeros((batch, tq, tv))
    for b in range(batch):
        for i in range(tq):
            for j in range(tv):
                q, k = query[b, i], key[b, j]
                if kind == "dot" and score_mode == "dot":
                    score = float(np.dot(q, k)) * float(weights.get("scale", 1.0))
                elif kind == "dot":  # concat: scale inside tanh, concat_score_weight outside the sum
                    score = float(weights["concat_score_weight"]) * float(
                        np.sum(np.tanh(weights.get("scale", 1.0) * (q + k)))
                    )
                else:  # additive: a per-feature scale outside tanh
                    score = float(np.sum(weights.get("scale", 1.0) * np.tanh(q + k)))
                blocked = (value_mask is not None and not value_mask[b, j]) or (causal and j > i)
                scores[b, i, j] = score - 1e9 if blocked else score
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    scores /= scores.sum(axis=-1, keepdims=True)
    output = np.einsum("bij,bjd->bid", scores, value)
    if query_mask is not None:
        output = output * query_mask[:, :, None]
    return output, scores


@st.composite
def dense_configs(draw: Any) -> DenseConfig:
    kind = draw(st.sampled_from(["dot", "additive"]))
    tq, tv = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    dq, dv = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    score_mode = None if kind == "additive" else draw(st.sampled_from([None, "dot", "concat"]))
    given_key = draw(st.booleans())
    # The value is the key unless one is given; a dot score needs the query's width in the key.
    dk = dq if (score_mode in (None, "dot") and kind == "dot") or draw(st.booleans()) else 1
    return DenseConfig(
        kind=kind,
        query_shape=(tq, dq),
        value_shape=(tv, dv if given_key else dk),
        key_shape=(tv, dk) if given_key else None,
        use_scale=draw(st.sampled_from([None, True, False])),
        score_mode=score_mode,
        dtype="float64",
        query_mask=draw(st.booleans()),
        value_mask=draw(st.booleans()),
        causal=draw(st.booleans()),
        seed=draw(st.integers(0, 3)),
    )


@pytest.mark.keras
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_configs())
def test_the_algebra_and_an_independent_numpy_agree_with_the_real_layers(config: DenseConfig) -> None:
    import keras

    from mha_cli.operations.dense import explain_dense
    from mha_cli.operations.explain import Status

    d = derive_dense(config)
    cls = {"dot": keras.layers.Attention, "additive": keras.layers.AdditiveAttention}[config.kind]
    kwargs: dict[str, Any] = {"dtype": "float64"}
    if config.use_scale is not None:
        kwargs["use_scale"] = config.use_scale
    if config.score_mode is not None:
        kwargs["score_mode"] = config.score_mode
    layer = cls(**kwargs)
    rng = np.random.default_rng(7)
    tq, dq = config.query_shape
    value_shape = config.value_shape or config.query_shape
    query, value = rng.standard_normal((2, tq, dq)), rng.standard_normal((2, *value_shape))
    key = rng.standard_normal((2, *config.key_shape)) if config.key_shape else value
    inputs = [query, value, key] if config.key_shape else [query, value]
    layer.build([x.shape for x in inputs])
    weights = {}
    for variable in layer.weights:
        name = variable.path.rsplit("/", 1)[-1]
        weights[name] = rng.uniform(0.5, 1.5, tuple(variable.shape))
        variable.assign(weights[name])
    assert {name: w.shape for name, w in weights.items()} == {w.name: w.shape for w in d.weights}
    assert layer.count_params() == d.params
    query_mask = rng.random((2, tq)) < 0.7 if config.query_mask else None
    value_mask = rng.random((2, value_shape[0])) < 0.7 if config.value_mask else None
    if value_mask is not None:
        value_mask[:, 0] = True  # a row with no key left spreads evenly: its own test below
    mask = None if query_mask is None and value_mask is None else [query_mask, value_mask]
    output, scores = layer(inputs, mask=mask, use_causal_mask=config.causal, return_attention_scores=True)
    assert tuple(output.shape) == d.shapes["output"].with_batch(2)
    assert tuple(scores.shape) == d.shapes["attention_scores"].with_batch(2)
    expected_output, expected_scores = _oracle(
        config.kind, d.score_mode, query, key, value, weights, query_mask, value_mask, config.causal
    )
    np.testing.assert_allclose(np.asarray(scores), expected_scores, atol=1e-9)
    np.testing.assert_allclose(np.asarray(output), expected_output, atol=1e-9)

    result = explain_dense(config, "tensorflow")
    assert [check.status for check in result.checks] == [Status.PASSED] * 4, result.checks


@pytest.mark.keras
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_query_row_with_no_key_left_is_not_zeroed_as_the_summary_says(dtype: str) -> None:
    """Keras subtracts 1e9 from every blocked score: a row with every key blocked keeps its unmasked
    softmax in float64, and comes out flat in float32, whose rounding swallows the scores."""
    import keras

    from mha_cli.runtime.dense_reference import reexecute_dense

    layer = keras.layers.Attention(dtype=dtype)
    rng = np.random.default_rng(0)
    query, value = rng.standard_normal((1, 3, 2)), rng.standard_normal((1, 4, 2))
    value_mask = np.array([[False, False, False, False]])
    inputs = [keras.ops.convert_to_tensor(x, dtype=dtype) for x in (query, value)]
    output, scores = layer(inputs, mask=[None, value_mask], return_attention_scores=True)
    logits = query @ value[0].T
    unmasked = np.exp(logits - logits.max(-1, keepdims=True))
    unmasked /= unmasked.sum(-1, keepdims=True)
    expected = unmasked if dtype == "float64" else np.full((1, 3, 4), 0.25)
    np.testing.assert_allclose(np.asarray(scores), expected, atol=1e-6)
    d = derive_dense(DenseConfig("dot", (3, 2), (4, 2), value_mask=True, dtype=dtype))
    assert any(
        "as if unmasked where the dtype keeps the scores (float64), and flat, 1/4 each" in line
        for line in d.summary
    )
    fed = [np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64) for x in inputs]  # as rounded
    arrays = {"query": fed[0], "value": fed[1], "key": fed[1], "value_mask": value_mask}
    ours = reexecute_dense(d, arrays)
    np.testing.assert_allclose(ours["attention_scores"], np.asarray(scores), atol=1e-6)
    np.testing.assert_allclose(ours["output"], np.asarray(output), atol=1e-5)


@pytest.mark.keras
def test_the_check_fails_when_the_re_execution_is_not_what_keras_computes(monkeypatch: Any) -> None:
    """numpy_reference can fail: a re-execution that divides by sqrt(features), as MultiHeadAttention does."""
    from mha_cli.runtime import dense_reference

    original = dense_reference.reexecute_dense

    def scaled_like_mha(d: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return original(d, {**arrays, "query": arrays["query"] / np.sqrt(arrays["query"].shape[-1])})

    monkeypatch.setattr(dense_reference, "reexecute_dense", scaled_like_mha)
    result = runner.invoke(app, ["--shape", "6,16", "--layer", "dot"])
    assert result.exit_code == 1
    assert "FAIL numpy_reference" in result.stdout
    assert "check failed: numpy_reference" in result.output


@pytest.mark.keras
def test_json_and_get_give_the_real_shapes_and_the_checks() -> None:
    args = ["--shape", "5,4", "--value-shape", "7,6", "--key-shape", "7,4", "--layer", "additive"]
    result = runner.invoke(app, [*args, "--query-mask", "--value-mask", "--causal", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["schema_version"], document["layer"], document["keras_class"]) == (
        1,
        "additive",
        "AdditiveAttention",
    )
    assert document["shapes"]["attention_scores"] == [None, 5, 7]
    assert document["shapes"]["output"] == [None, 5, 6]
    assert document["weights"] == {"scale": {"shape": [4], "initializer": "glorot_uniform", "params": 4}}
    assert [m["name"] for m in document["masks"]] == ["query_mask", "value_mask", "causal"]
    assert {name: check["status"] for name, check in document["checks"].items()} == {
        "derivation": "passed",
        "numpy_reference": "passed",
        "keras_symbolic": "passed",
        "plain_call": "passed",
    }
    got = runner.invoke(
        app, [*args, "--get", "shapes.attention_scores", "--get", "checks.numpy_reference.status"]
    )
    assert got.stdout == "None,5,7\npassed\n"


@pytest.mark.keras
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_other_backends_run_the_same_layers(backend: str) -> None:
    pytest.importorskip(backend, reason=f"needs the {backend} extra: pip install '.[{backend}]'")
    for kind, extra in (("dot", ["--score-mode", "concat", "--use-scale"]), ("additive", [])):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mha_cli",
                *("--shape", "5,4", "--value-shape", "6,4", "--layer", kind, *extra),
                *("--value-mask", "--query-mask", "--causal", "--backend", backend, "--json"),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["backend"] == backend
        assert {check["status"] for check in document["checks"].values()} == {"passed"}, document["checks"]


@pytest.mark.keras
def test_compare_puts_the_three_layers_side_by_side_on_one_input() -> None:
    args = [
        "compare",
        "--shape",
        "8,16",
        "--layer",
        "dot",
        "--score-mode",
        "concat",
        "--value-mask",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["compare"], document["asked"]) == ("layers", "dot")
    layers = document["layers"]
    assert list(layers) == ["mha", "dot", "additive"]
    # The real shapes: MultiHeadAttention's scores have a heads axis, the others' do not.
    assert layers["mha"]["shapes"]["attention_scores"] == [None, 2, 8, 8]
    assert layers["dot"]["shapes"]["attention_scores"] == layers["additive"]["shapes"]["attention_scores"]
    assert layers["dot"]["shapes"]["attention_scores"] == [None, 8, 8]
    # The user's options went to the layer they named; the other took its defaults.
    assert layers["dot"]["layer"] == "keras.layers.Attention(score_mode='concat')"
    assert layers["additive"]["layer"] == "keras.layers.AdditiveAttention()"
    assert (
        layers["dot"]["params"] == 1
        and layers["additive"]["params"] == 16
        and layers["mha"]["params"] == 1088
    )
    # A value_mask reaches MultiHeadAttention as the attention_mask it takes instead.
    assert "attention_mask=mask" in layers["mha"]["call"]
    assert "mask=[None, value_mask]" in layers["dot"]["call"]
    for layer in layers.values():
        assert layer["executed"] and layer["checks"]["numpy_reference"] == "passed"


def test_compare_says_which_layer_refuses_the_input() -> None:
    """A value of width 1: a dot score needs the query's width in the key; an additive one broadcasts."""
    args = ["compare", "--shape", "5,4", "--value-shape", "6,1", "--layer", "additive", "--no-run", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["layers"]
    assert "the key needs the query's 4 features" in layers["dot"]["refused"]
    assert layers["additive"]["shapes"]["output"] == [None, 5, 1]
    assert layers["mha"]["shapes"]["output"] == [None, 5, 4]
    mine = runner.invoke(app, ["compare", "--shape", "5,4", "--value-shape", "6,3", "--layer", "dot"])
    assert mine.exit_code == 2 and "--value-shape 6,3: dot scores are query @ key^T" in mine.output


@pytest.mark.keras
def test_the_attention_doc_transcript_is_real_output() -> None:
    import re
    from pathlib import Path

    from tests.test_golden import masked

    doc = (Path(__file__).resolve().parent.parent / "docs" / "attention.md").read_text(encoding="utf-8")
    found = re.search(r"```text\n\$ mha-explain (.*?)\n(.*?)```", doc, re.S)
    assert found is not None
    command, transcript = found.groups()
    result = runner.invoke(app, [*command.split(), "--width", "100"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert masked(result.stdout) == masked(transcript)
