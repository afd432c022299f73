"""GroupQueryAttention (--layer gqa): the algebra, against the real keras.layers.GroupQueryAttention.

The pure tests hold the algebra's own rules (defaults, refusals, the grouping,
the key/value cache). The keras tests build the real layer themselves, read
its equations and kernels and run it, and re-execute it with a NumPy
implementation written here from the layer's documented behaviour: a loop over
query heads, each reading key/value head ``head // num_repeats``, with no einsum
string and nothing from mha_cli's derivation or reference.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig, derive_gqa
from tests.keras_features import keras_supports

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["--layer", "gqa", *args])


# --- The algebra, alone ---------------------------------------------------------------------------


def test_the_issue_s_example_derives_the_grouping_and_the_cache() -> None:
    d = derive_gqa(GQAConfig(query_shape=(10, 64), num_query_heads=8, num_key_value_heads=2, head_dim=8))
    assert d.shapes["query_projected"].shape == (None, 10, 8, 8)
    assert d.shapes["key_projected"].shape == d.shapes["value_projected"].shape == (None, 10, 2, 8)
    assert d.shapes["key_repeated"].shape == d.shapes["value_repeated"].shape == (None, 10, 8, 8)
    assert d.shapes["attention_scores"].shape == (None, 8, 10, 10)
    assert d.shapes["output"].shape == (None, 10, 64)
    assert d.layer.num_repeats == 4
    assert d.layer.groups() == ((0, (0, 1, 2, 3)), (1, (4, 5, 6, 7)))
    # A key and a value per key/value head: 2 x 2 x 8 float32 numbers per token, 10 tokens.
    assert d.kv_cache_bytes_per_token() == 2 * 2 * 8 * 4 == 128
    assert d.kv_cache_bytes_per_sequence() == 1280
    # query (64*8*8 + 8*8), key and value (64*2*8 + 2*8 each), output (8*8*64 + 64).
    assert d.params == 4160 + 2 * 1040 + 4160


def test_defaults_fill_what_keras_requires() -> None:
    d = derive_gqa(GQAConfig(query_shape=(5, 16)))
    assert (d.layer.num_query_heads, d.layer.num_key_value_heads, d.layer.head_dim) == (4, 2, 4)
    assert d.layer.defaulted == {"head_dim", "num_query_heads", "num_key_value_heads"}
    assert derive_gqa(GQAConfig(query_shape=(5, 16), num_query_heads=1)).layer.num_key_value_heads == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            GQAConfig(query_shape=(10, 64), num_query_heads=8, num_key_value_heads=3),
            "--num-key-value-heads 3: must divide --num-query-heads 8 (Keras: 'must be divisible'); "
            "choose one of 1, 2, 4, 8",
        ),
        (
            GQAConfig(query_shape=(4, 10, 64)),
            "--shape (4, 10, 64): GroupQueryAttention takes rank-3 inputs (batch, sequence, features), so "
            "give 2 sizes, not 3; fold other axes into the sequence, or use --layer mha with --axes",
        ),
        (
            GQAConfig(query_shape=(6, 16), value_shape=(4, 16), key_shape=(5, 16)),
            "--key-shape (5, 16): key and value must have the same sequence length",
        ),
        (GQAConfig(query_shape=(6, 16), keras=2), "--keras 2: Keras 2 (tf_keras) has no GroupQueryAttention"),
        (GQAConfig(query_shape=(6, 16), head_dim=0), "--head-dim 0: must be a positive integer"),
        (GQAConfig(query_shape=(6, 16), mask_shape=(None, 2, 6, 6)), "--mask-shape"),
    ],
)
def test_what_the_real_layer_refuses_is_refused_by_name(config: GQAConfig, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        derive_gqa(config)
    assert str(raised.value).startswith(message)


def test_mha_and_mqa_are_the_two_ends_of_the_grouping() -> None:
    mha = derive_gqa(GQAConfig(query_shape=(8, 32), num_query_heads=4, num_key_value_heads=4))
    mqa = derive_gqa(GQAConfig(query_shape=(8, 32), num_query_heads=4, num_key_value_heads=1))
    assert "this is MultiHeadAttention" in mha.summary[1]
    assert "multi-query attention (MQA)" in mqa.summary[1]
    assert mha.kv_cache_bytes_per_token() == 4 * mqa.kv_cache_bytes_per_token()
    assert mha.shapes["attention_scores"] == mqa.shapes["attention_scores"]


# --- The CLI --------------------------------------------------------------------------------------


def test_no_run_answers_with_the_grouping_in_the_headline() -> None:
    result = invoke(
        "--shape",
        "10,64",
        "--num-query-heads",
        "8",
        "--num-key-value-heads",
        "2",
        "--head-dim",
        "8",
        "--no-run",
        "--brief",
        "--width",
        "100",
    )
    assert result.exit_code == 0, result.output
    assert (
        "layer = keras.layers.GroupQueryAttention(head_dim=8, num_query_heads=8, num_key_value_heads=2)"
        in (result.stdout)
    )
    assert "groups    query heads 0-3 -> 0, 4-7 -> 1 (key/value head)" in result.stdout
    assert "kv cache  128 B per token (4x less than MultiHeadAttention's 512 B)" in result.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--axes", "1"), "--axes: --layer gqa: GroupQueryAttention has no such argument"),
        (("--key-dim", "4"), "--key-dim: --layer gqa: GroupQueryAttention has no such argument"),
        (("--num-key-value-heads", "3"), "--num-key-value-heads 3: must divide --num-query-heads 4"),
        (("--keras", "2"), "--keras 2: Keras 2 (tf_keras) has no GroupQueryAttention"),
        (("--keras", "all"), "--keras all: --layer gqa: Keras 2 has no GroupQueryAttention; use --keras 3"),
        (("--graph",), "--layer gqa and --graph: --graph records MultiHeadAttention's call"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], line: str) -> None:
    result = invoke("--shape", "10,16", *args, "--no-run")
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and line in result.stderr, result.stderr


def test_gqa_options_are_refused_for_mha() -> None:
    result = runner.invoke(app, ["--shape", "10,16", "--num-query-heads", "4", "--no-run"])
    assert result.exit_code == 2
    assert "--num-query-heads: --layer mha: MultiHeadAttention has no such argument" in result.stderr


def test_the_json_document_says_gqa_and_holds_the_grouping() -> None:
    result = invoke(
        "--shape", "10,64", "--num-query-heads", "8", "--num-key-value-heads", "2", "--no-run", "--json"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["layer"] == "gqa" and list(document)[:2] == ["schema_version", "layer"]
    assert document["config"] == {
        "head_dim": 8,
        "num_query_heads": 8,
        "num_key_value_heads": 2,
        "dropout": 0.0,
        "use_bias": True,
        "use_gate": False,
        "sliding_window": None,
        "dtype": "float32",
    }
    assert document["grouping"] == {
        "num_repeats": 4,
        "groups": [
            {"key_value_head": 0, "query_heads": [0, 1, 2, 3]},
            {"key_value_head": 1, "query_heads": [4, 5, 6, 7]},
        ],
        "kv_cache_bytes_per_token": 128,
        "kv_cache_bytes_per_sequence": 1280,
    }
    assert document["attention_axes_given"] is None
    assert document["shapes"]["key_repeated"] == [None, 10, 8, 8]


def test_get_reads_the_repeated_key_and_the_cache() -> None:
    result = invoke(
        "--shape",
        "10,64",
        "--num-query-heads",
        "8",
        "--num-key-value-heads",
        "2",
        "--no-run",
        "--get",
        "shapes.key_repeated",
        "--get",
        "grouping.kv_cache_bytes_per_token",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "None,10,8,8\n128\n"


# --- Against the real layer -----------------------------------------------------------------------


def _independent_gqa(
    layer: Any, query: np.ndarray, value: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """GroupQueryAttention in float64, one query head at a time, from the layer's own weights."""
    w = {"/".join(v.path.split("/")[-2:]): np.asarray(v.numpy(), np.float64) for v in layer.weights}
    u, v_heads, h = layer.num_query_heads, layer.num_key_value_heads, layer.head_dim
    r = u // v_heads
    batch, t, s = query.shape[0], query.shape[1], value.shape[1]
    scores = np.zeros((batch, u, t, s))
    output = np.zeros((batch, t, query.shape[-1])) + w.get("attention_output/bias", 0.0)
    for head in range(u):
        group = head // r  # ops.repeat(..., axis=2): heads g*r .. g*r+r-1 read key/value head g
        q = query @ w["query/kernel"][:, head, :] + w.get("query/bias", np.zeros((u, h)))[head]
        k = value @ w["key/kernel"][:, group, :] + w.get("key/bias", np.zeros((v_heads, h)))[group]
        vv = value @ w["value/kernel"][:, group, :] + w.get("value/bias", np.zeros((v_heads, h)))[group]
        logits = (q / np.sqrt(h)) @ k.transpose(0, 2, 1)
        if mask is not None:  # (B, heads, T, S): True attends
            logits = np.where(mask[:, head], logits, -1e9)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        if mask is not None:
            weights = np.where(mask[:, head], weights, 0.0)
        scores[:, head] = weights
        output += (weights @ vv) @ w["attention_output/kernel"][head]
    return output, scores


def _with_heads(mask: np.ndarray) -> np.ndarray:
    """As GroupedQueryAttention._masked_softmax: size-1 axes inserted at -3 until the scores' rank 4."""
    while mask.ndim < 4:
        mask = np.expand_dims(mask, -3)
    return mask


@st.composite
def gqa_configs(draw: st.DrawFn) -> dict[str, Any]:
    kv_heads = draw(st.integers(1, 4))
    return {
        "t": draw(st.integers(1, 6)),
        "s": draw(st.integers(1, 6)),
        "dq": draw(st.integers(1, 12)),
        "dv": draw(st.integers(1, 12)),
        "kv_heads": kv_heads,
        "query_heads": kv_heads * draw(st.integers(1, 3)),
        "head_dim": draw(st.integers(1, 5)),
        "use_bias": draw(st.booleans()),
        "mask": draw(st.sampled_from([None, "full", "query_key", "heads_1"])),
    }


@pytest.mark.keras
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gqa_configs())
def test_the_algebra_and_an_independent_numpy_agree_with_the_real_layer(drawn: dict[str, Any]) -> None:
    import keras

    from mha_cli.runtime.keras_adapter import known_wrong_results

    t, s, dq, dv = drawn["t"], drawn["s"], drawn["dq"], drawn["dv"]
    mask_shape = {"full": (2, t, s), "query_key": (t, s), "heads_1": (2, 1, t, s), None: None}[drawn["mask"]]
    config = GQAConfig(
        query_shape=(t, dq),
        value_shape=(s, dv),
        head_dim=drawn["head_dim"],
        num_query_heads=drawn["query_heads"],
        num_key_value_heads=drawn["kv_heads"],
        use_bias=drawn["use_bias"],
        mask_shape=mask_shape,
    )
    d = derive_gqa(config)
    # Keras adds a bias that squeezes to one axis of axis 1's size along axis 1 (keras-team/keras#20386):
    # wrong numbers the NumPy below would catch; test_keras_s_bias_bug_hits_gqa_too shows it flagged.
    assume(not known_wrong_results(d, "tensorflow"))
    layer = keras.layers.GroupQueryAttention(
        head_dim=drawn["head_dim"],
        num_query_heads=drawn["query_heads"],
        num_key_value_heads=drawn["kv_heads"],
        use_bias=drawn["use_bias"],
        bias_initializer="random_normal",
        dtype="float64",
    )
    rng = np.random.default_rng(0)
    query, value = rng.standard_normal((2, t, dq)), rng.standard_normal((2, s, dv))
    mask = None if mask_shape is None else rng.random(mask_shape) < 0.75
    output, scores = layer(query, value, attention_mask=mask, return_attention_scores=True)
    assert tuple(output.shape) == d.shapes["output"].with_batch(2)
    assert tuple(scores.shape) == d.shapes["attention_scores"].with_batch(2)
    held = {
        "query": layer._query_dense.equation,
        "key": layer._key_dense.equation,
        "value": layer._value_dense.equation,
        "dot_product": layer._dot_product_equation,
        "combine": layer._combine_equation,
        "output": layer._output_dense.equation,
    }
    assert held == d.equations
    kernels = {"/".join(v.path.split("/")[-2:]): tuple(v.shape) for v in layer.weights}
    ours = {f"{w.projection}/kernel": w.kernel for w in d.weights} | {
        f"{w.projection}/bias": w.bias for w in d.weights if w.bias is not None
    }
    assert kernels == ours and layer.count_params() == d.params
    heads_mask = None if mask is None else np.broadcast_to(_with_heads(mask), (2, drawn["query_heads"], t, s))
    expected_output, expected_scores = _independent_gqa(layer, query, value, heads_mask)
    # float64, but Keras casts 1/sqrt(head_dim) through float32 first (a relative 3e-8): explain's tolerance.
    np.testing.assert_allclose(np.asarray(output), expected_output, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scores), expected_scores, rtol=0, atol=1e-6)


@pytest.mark.keras
@pytest.mark.parametrize("index", range(4))
def test_explain_verifies_every_example_with_four_checks(index: int) -> None:
    from mha_cli.core.gqa import GQA
    from mha_cli.operations.explain import Status, explain

    result = explain(GQA.examples()[index], "tensorflow")
    statuses = {check.name: check.status for check in result.checks}
    assert statuses["derivation"] is Status.PASSED and statuses["numpy_reference"] is Status.PASSED
    assert statuses["plain_call"] is Status.PASSED
    # Keras's symbolic call refuses query and value widths that differ (example 1), and before 3.15
    # returns no scores at all (keras-team/keras#22642); else it agrees.
    widths_differ = index == 1
    agrees = not widths_differ and keras_supports("sliding_window", "GroupQueryAttention")
    assert statuses["keras_symbolic"] is (Status.PASSED if agrees else Status.WARNING)


@pytest.mark.keras
def test_keras_s_bias_bug_hits_gqa_too() -> None:
    """A (2, 1) key bias (2 key/value heads, head_dim 1) on a sequence of 2: TensorFlow's ops.add adds
    it along the sequence (keras-team/keras#20386, #21299); the NumPy check fails and says why."""
    from mha_cli.operations.explain import NumpyCheck, Status, explain
    from mha_cli.runtime.keras_adapter import known_wrong_results

    config = GQAConfig(
        query_shape=(1, 1), value_shape=(2, 1), head_dim=1, num_query_heads=2, num_key_value_heads=2
    )
    assert known_wrong_results(derive_gqa(config), "tensorflow") == (
        "the key bias (2, 1) is added along axis 1 (size 2) instead of its own axes",
        "the value bias (2, 1) is added along axis 1 (size 2) instead of its own axes",
    )
    check = explain(config, "tensorflow").check("numpy_reference")
    assert isinstance(check, NumpyCheck) and check.status is Status.FAILED
    assert "change head_dim from 1, or use --no-bias, or another backend" in check.detail
    assert (
        explain(replace(config, use_bias=False), "tensorflow").check("numpy_reference").status
        is Status.PASSED
    )


@pytest.mark.keras
def test_keras_s_compute_output_shape_refuses_widths_its_call_runs() -> None:
    """The issue asked which is true: the call runs query width 16 with value width 12; only
    compute_output_shape (and so keras.Input) refuses it."""
    import keras

    layer = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    output = layer(np.ones((2, 6, 16), "float32"), np.ones((2, 4, 12), "float32"))
    assert tuple(output.shape) == (2, 6, 16)
    with pytest.raises(ValueError, match="last dimension of `query_shape` and `value_shape` must be equal"):
        layer.compute_output_shape((2, 6, 16), (2, 4, 12))
    result = invoke("--shape", "6,16", "--value-shape", "4,12", "--head-dim", "4", "--json")
    assert result.exit_code == 0, result.output
    symbolic = json.loads(result.stdout)["checks"]["keras_symbolic"]
    assert symbolic["status"] == "warning" and "must be equal" in symbolic["refusal"]


@pytest.mark.keras
def test_a_mask_without_room_for_the_heads_fails_in_the_real_layer_as_derived() -> None:
    import keras

    layer = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    x = np.ones((2, 6, 16), "float32")
    with pytest.raises(Exception, match=r"Incompatible shapes|broadcastable"):  # an op error on TensorFlow
        layer(x, x, attention_mask=np.ones((2, 2, 6, 6), bool))
    with pytest.raises(ConfigError, match="--mask-shape"):
        derive_gqa(GQAConfig(query_shape=(6, 16), mask_shape=(2, 2, 6, 6)))


@pytest.mark.keras
def test_causal_and_sliding_window_reach_the_scores_as_derived() -> None:
    from mha_cli.operations.explain import Status, explain

    if not keras_supports("sliding_window", "GroupQueryAttention"):
        pytest.skip("sliding_window needs Keras 3.15")

    config = GQAConfig(query_shape=(7, 16), causal=True, sliding_window=3, mask_shape=(None, 7, 7))
    result = explain(config, "tensorflow")
    assert result.failed == () and result.check("numpy_reference").status is Status.PASSED
    assert result.run is not None
    scores = result.run.arrays["attention_scores"]
    rows, cols = np.indices((7, 7))
    outside = (cols > rows) | (rows - cols >= 3)  # after the diagonal, or 3 or more positions back
    assert np.all(scores[:, :, outside] == 0.0)


@pytest.mark.keras
def test_the_code_script_runs_and_prints_the_derived_shapes(tmp_path: Any) -> None:
    import subprocess
    import sys

    result = invoke("--shape", "10,64", "--num-query-heads", "8", "--num-key-value-heads", "2", "--code")
    assert result.exit_code == 0, result.output
    script = tmp_path / "gqa.py"
    script.write_text(result.stdout, encoding="utf-8")
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert ran.stdout == "output (2, 10, 64)\nattention_scores (2, 8, 10, 10)\n"


# --- compare: MHA, GQA and MQA on the same input ---------------------------------------------------


def test_compare_puts_mha_gqa_and_mqa_side_by_side_by_default() -> None:
    result = runner.invoke(
        app, ["compare", "--layer", "gqa", "--shape", "10,64", "--num-query-heads", "8", "--no-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(row["num_key_value_heads"], row["variant"]) for row in rows] == [
        (8, "MHA"),
        (2, "GQA"),
        (1, "MQA"),
    ]
    # Per token: a key and a value of head_dim 8 in float32 per key/value head.
    assert [row["kv_cache_bytes_per_token"] for row in rows] == [512, 128, 64]
    # Each key/value head less saves its key and value projections: 2 x (64*8 + 8) parameters.
    assert [rows[0]["params"] - row["params"] for row in rows] == [0, 6 * 1040, 7 * 1040]
    assert {tuple(row["shapes"]["attention_scores"]) for row in rows} == {(None, 8, 10, 10)}


def test_compare_kv_heads_all_lists_every_divisor_and_refuses_others() -> None:
    args = ["compare", "--layer", "gqa", "--shape", "10,64", "--num-query-heads", "12", "--no-run", "--json"]
    result = runner.invoke(app, [*args, "--kv-heads", "all"])
    assert [row["num_key_value_heads"] for row in json.loads(result.stdout)["rows"]] == [12, 6, 4, 3, 2, 1]
    result = runner.invoke(app, [*args, "--kv-heads", "5"])
    assert result.exit_code == 2
    assert result.stderr == (
        "mha-explain: error: --kv-heads 5: give a divisor of --num-query-heads 12 "
        "(12, 6, 4, 3, 2, 1) or all\n"
    )
    result = runner.invoke(
        app, ["compare", "--shape", "10,64", "--kv-heads", "2", "--axes", "1", "--axes", "none"]
    )
    assert result.exit_code == 2 and "give --layer gqa" in result.stderr


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_heads_table_never_cuts_a_number(width: int) -> None:
    """Llama-sized: 32 query heads over 4096 features. Too narrow for the table, a row a line."""
    args = [
        "compare",
        "--layer",
        "gqa",
        "--shape",
        "4096,4096",
        "--num-query-heads",
        "32",
        "--kv-heads",
        "all",
    ]
    result = runner.invoke(app, [*args, "--no-run", "--width", str(width)])
    assert result.exit_code == 0, result.output
    document = json.loads(runner.invoke(app, [*args, "--no-run", "--json"]).stdout)
    lines = result.stdout.splitlines()
    text = " ".join(result.stdout.split())
    for row in document["rows"]:
        for number in (f"{row['params']:,}", f"{row['flops_per_item']:,}"):  # whole, never cut
            assert re.search(rf"(?<!\d)(?<!\d,){re.escape(number)}(?!\d|,\d)", text), number
    assert max(len(line) for line in lines) <= width


@pytest.mark.keras
def test_compare_runs_every_row_through_the_real_layer() -> None:
    result = runner.invoke(
        app, ["compare", "--layer", "gqa", "--shape", "6,16", "--num-query-heads", "4", "--width", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "Every row verified on the real layer (3 forward passes)." in result.stdout
    for line in ("4    MHA   1", "2    GQA   2", "1    MQA   4"):
        assert line in result.stdout


# --- Case files, record, check and --jsonl --------------------------------------------------------


def _mha_explain(*args: str, cwd: Any) -> Any:
    """A fresh process, as CI runs it."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mha_cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.keras
def test_record_then_a_changed_key_value_head_count_turns_check_red_in_fresh_processes(tmp_path: Any) -> None:
    cases = tmp_path / "gqa.mha.toml"
    cases.write_text(
        '[defaults]\nlayer = "gqa"\nnum_query_heads = 8\n\n'
        '[[case]]\nname = "llama-like"\nshape = [10, 64]\nnum_key_value_heads = 2\n',
        encoding="utf-8",
    )
    recorded = _mha_explain("record", str(cases), cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    text = cases.read_text(encoding="utf-8")
    assert "key_projected = [10, 2, 8]\nvalue_projected = [10, 2, 8]\nkey_repeated = [10, 8, 8]" in text
    assert _mha_explain("check", str(cases), cwd=tmp_path).returncode == 0
    cases.write_text(text.replace("num_key_value_heads = 2", "num_key_value_heads = 4"), encoding="utf-8")
    checked = _mha_explain("check", str(cases), "--width", "300", cwd=tmp_path)
    assert checked.returncode == 1
    assert "key_projected: expected (10, 2, 8), the real layer gives (10, 4, 8)" in checked.stdout
    assert "params: expected 10400, the real layer gives 12480" in checked.stdout


def test_a_case_file_refuses_the_other_kind_s_keys_at_their_line(tmp_path: Any) -> None:
    cases = tmp_path / "bad.mha.toml"
    cases.write_text(
        '[[case]]\nname = "x"\nlayer = "gqa"\nshape = [10, 16]\nnum_heads = 4\n', encoding="utf-8"
    )
    result = runner.invoke(app, ["check", str(cases)])
    assert result.exit_code == 2
    assert f"{cases}:5: case 'x': num_heads: layer = \"gqa\" has no such argument" in result.stderr
    cases.write_text('[[case]]\nname = "x"\nlayer = "gru"\nshape = [10, 16]\n', encoding="utf-8")
    result = runner.invoke(app, ["check", str(cases)])
    assert (
        result.exit_code == 2 and "layer: 'gru': unknown layer kind; choose one of mha, gqa" in result.stderr
    )


def test_jsonl_lines_may_say_layer_gqa() -> None:
    lines = (
        '{"layer": "gqa", "shape": [10, 64], "num_query_heads": 8}\n'
        '{"shape": [10, 64], "num_heads": 8}\n'
        '{"layer": "gqa", "shape": [10, 64], "num_heads": 8}\n'
    )
    result = runner.invoke(app, ["--jsonl", "-", "--no-run", "--get", "shapes.key_projected"], input=lines)
    assert result.exit_code == 2
    assert result.stdout == "None,10,2,8\nNone,10,8,8\n\n"
    assert 'stdin:3: num_heads: layer = "gqa" has no such argument' in result.stderr


# --- What a review found ----------------------------------------------------------------------------


def test_kv_heads_and_num_key_value_heads_together_are_refused() -> None:
    args = ["compare", "--layer", "gqa", "--shape", "10,64", "--num-query-heads", "8", "--no-run"]
    result = runner.invoke(app, [*args, "--kv-heads", "2", "--num-key-value-heads", "4"])
    assert result.exit_code == 2
    assert "--num-key-value-heads 4: compare takes the counts from --kv-heads; add it there" in result.stderr


def test_backend_all_refuses_what_it_would_ignore() -> None:
    result = runner.invoke(app, ["--shape", "10,16", "--backend", "all", "--no-run"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "mha-explain: error: --backend all and --no-run: --backend all runs every"
    )


@pytest.mark.keras
def test_a_gqa_line_with_graph_is_one_line_error_and_the_rest_is_answered() -> None:
    lines = '{"layer": "gqa", "shape": [10, 64]}\n{"shape": [10, 64]}\n'
    result = runner.invoke(app, ["--jsonl", "-", "--graph", "--get", "shapes.output"], input=lines)
    assert result.exit_code == 2
    assert result.stdout == "\nNone,10,64\n"
    assert "--jsonl stdin:1: graph: it records how a functional model saves MultiHeadAttention's call" in (
        result.stderr
    )


@pytest.mark.keras
def test_check_vectors_writes_gqa_and_mha_cases_alike(tmp_path: Any) -> None:
    cases = tmp_path / "mixed.mha.toml"
    cases.write_text(
        '[[case]]\nname = "gqa"\nlayer = "gqa"\nshape = [6, 16]\n\n[[case]]\nname = "mha"\nshape = [6, 16]\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["check", str(cases), "--vectors", str(tmp_path / "vectors")])
    assert result.exit_code == 0, result.output
    for name, class_name in (("gqa", "GroupedQueryAttention"), ("mha", "MultiHeadAttention")):
        manifest = json.loads((tmp_path / "vectors" / "mixed" / name / "manifest.json").read_text("utf-8"))
        assert manifest["layer"]["class_name"] == class_name


# --- Test vectors ---------------------------------------------------------------------------------


@pytest.mark.keras
def test_vectors_hold_every_tensor_and_an_independent_numpy_reproduces_them(tmp_path: Any) -> None:
    """Every array of vectors.npz, recomputed here per query head from the stored inputs and weights
    (nothing from mha_cli's derivation or reference), including the repeated key and value."""
    out = tmp_path / "v"
    args = ["vectors", "--layer", "gqa", "--shape", "6,16", "--value-shape", "5,12", "--num-query-heads", "6"]
    result = runner.invoke(
        app, [*args, "--num-key-value-heads", "2", "--mask-shape", "None,6,5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["layer"]["class_name"] == "GroupedQueryAttention"
    assert manifest["layer"]["config"]["num_key_value_heads"] == 2
    assert manifest["call"]["inbound_nodes"] is None  # --graph is MultiHeadAttention's
    stored = np.load(out / "vectors.npz")
    w = {
        name.split("/", 1)[1]: stored[name].astype(np.float64)
        for name in stored
        if name.startswith("grouped_")
    }
    query, value = stored["query"].astype(np.float64), stored["value"].astype(np.float64)
    mask = stored["attention_mask"][:, None]  # (B, 1, T, S): Keras inserts the heads axis at -3
    u, v_heads, h = 6, 2, 16 // 6
    key_projected = np.einsum("bsd,dgh->bsgh", value, w["key/kernel"]) + w["key/bias"]
    np.testing.assert_allclose(stored["key_projected"], key_projected, atol=1e-4)
    np.testing.assert_allclose(
        stored["key_repeated"], np.repeat(stored["key_projected"], u // v_heads, axis=2)
    )
    np.testing.assert_allclose(stored["value_repeated"], np.repeat(stored["value_projected"], 3, axis=2))
    output = np.zeros((2, 6, 16)) + w["attention_output/bias"]
    for head in range(u):
        group = head // (u // v_heads)
        q = query @ w["query/kernel"][:, head] + w["query/bias"][head]
        k = value @ w["key/kernel"][:, group] + w["key/bias"][group]
        vv = value @ w["value/kernel"][:, group] + w["value/bias"][group]
        logits = np.where(mask[:, 0], (q / np.sqrt(h)) @ k.transpose(0, 2, 1), -1e9)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights = np.where(mask[:, 0], weights / weights.sum(-1, keepdims=True), 0.0)
        np.testing.assert_allclose(stored["attention_scores"][:, head], weights, atol=1e-4)
        output += (weights @ vv) @ w["attention_output/kernel"][head]
    np.testing.assert_allclose(stored["output"], output, atol=1e-4)


# --- In a model: scan, record and check -----------------------------------------------------------


@pytest.mark.keras
def test_scan_finds_and_proves_a_models_gqa_calls_from_a_keras_file(tmp_path: Any) -> None:
    """A Llama-style block saved as .keras: both GroupQueryAttention calls found, their shapes
    those of a fresh keras.layers.GroupQueryAttention, and the vectors scan writes reproduced per
    query head from the loaded model's own weights (nothing from mha_cli's reference)."""
    import keras

    from tests import scan_models

    path = tmp_path / "decoder.keras"
    scan_models.gqa_decoder().save(path)
    result = runner.invoke(app, ["scan", str(path), "--json", "--vectors", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    calls = {call["layer"]: call for call in document["calls"]}
    assert list(calls) == ["self_gqa", "cross_mqa"] and document["attention_layers"] == 2
    model = keras.saving.load_model(path)
    rng = np.random.default_rng(0)
    for name, call in calls.items():
        assert (call["kind"], call["class"]) == ("gqa", "GroupedQueryAttention"), name
        assert {check: found["status"] for check, found in call["checks"].items()} == {
            "derivation": "passed",
            "numpy_reference": "passed",
            "keras_symbolic": "passed",
            "plain_call": "passed",
            "model_call": "passed",
        }, name
        layer = model.get_layer(name)
        fresh = keras.layers.GroupQueryAttention(
            head_dim=layer.head_dim,
            num_query_heads=layer.num_query_heads,
            num_key_value_heads=layer.num_key_value_heads,
            use_bias=layer.use_bias,
        )
        query, value = (rng.standard_normal((2, *call["inputs"][n][1:])) for n in ("query", "value"))
        output, scores = fresh(query, value, return_attention_scores=True)
        assert call["shapes"]["attention_scores"] == [None, *scores.shape[1:]], name
        assert call["shapes"]["output"] == [None, *output.shape[1:]], name
        assert call["config"]["num_key_value_heads"] == layer.num_key_value_heads
    # The causal call is explained as the model made it: use_causal_mask, no attention_mask.
    causal = calls["self_gqa"]
    assert causal["mask_sources"] == ["use_causal_mask"] and causal["mask"]["causal"] is True
    assert calls["cross_mqa"]["shapes"]["key_projected"] == [None, scan_models.SOURCE, 1, 4]
    assert calls["cross_mqa"]["shapes"]["key_repeated"] == [None, scan_models.SOURCE, 4, 4]
    for name, causal_mask in (("self_gqa", True), ("cross_mqa", False)):
        stored = np.load(tmp_path / "v" / name / "vectors.npz")
        query, value = stored["query"].astype(np.float64), stored["value"].astype(np.float64)
        t, s = query.shape[1], value.shape[1]
        layer = model.get_layer(name)
        heads = (2, layer.num_query_heads, t, s)
        mask = np.broadcast_to(np.tril(np.ones((t, s), bool)), heads) if causal_mask else None
        output, scores = _independent_gqa(layer, query, value, mask)
        np.testing.assert_allclose(stored["output"], output, atol=1e-4)
        np.testing.assert_allclose(stored["attention_scores"], scores, atol=1e-5)


@pytest.mark.keras
def test_scan_table_names_the_query_and_key_value_heads() -> None:
    result = runner.invoke(app, ["scan", "--build", "tests.scan_models:gqa_decoder"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    rows = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert any(r.startswith("self_gqa 8 (2 kv) x 4, (1,) (6,16) -> (8,6,6) ->") for r in rows), rows
    assert any(r.startswith("cross_mqa 4 (1 kv) x 4, (1,) (6,16) -> (4,6,10) ->") for r in rows), rows


@pytest.mark.keras
def test_a_models_num_key_value_heads_change_turns_check_red_in_fresh_processes(tmp_path: Any) -> None:
    code = (
        "import keras\n\n\ndef build():\n"
        '    x = keras.Input(shape=(6, 16), name="x")\n'
        "    attention = keras.layers.GroupQueryAttention(\n"
        '        head_dim=4, num_query_heads=8, num_key_value_heads={kv}, name="attention"\n'
        "    )\n"
        '    return keras.Model(x, attention(x, x, use_causal_mask=True), name="tiny_llama")\n'
    )
    (tmp_path / "tiny_llama.py").write_text(code.format(kv=2), encoding="utf-8")
    cases = tmp_path / "llama.mha.toml"
    cases.write_text('[model]\nbuild = "tiny_llama:build"\n', encoding="utf-8")
    recorded = _mha_explain("record", cases.name, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    pinned = cases.read_text(encoding="utf-8")
    assert (
        '[calls.attention]\nclass = "GroupedQueryAttention"\nnum_query_heads = 8\nnum_key_value_heads = 2\n'
        "head_dim = 4\n" in pinned
    )
    assert "params = 1344\n" in pinned  # 16*32+32 + 2*(16*8+8) + 32*16+16
    assert _mha_explain("check", cases.name, cwd=tmp_path).returncode == 0
    (tmp_path / "tiny_llama.py").write_text(code.format(kv=4), encoding="utf-8")  # someone edits the model
    checked = _mha_explain("check", cases.name, "--width", "300", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    # At the pinned num_key_value_heads: [model] 1-2, a blank line, [calls.attention] 4, class 5, 6, 7.
    assert "llama.mha.toml:7: call 'attention': num_key_value_heads: expected 2, the model gives 4" in (
        checked.stderr
    )
    assert "params: expected 1344, the model gives 1616" in checked.stdout
    assert cases.read_text(encoding="utf-8") == pinned  # check never writes


@pytest.mark.keras
def test_a_builder_keras_refuses_is_one_line_naming_it() -> None:
    result = runner.invoke(app, ["scan", "--build", "tests.scan_models:gqa_narrow_memory"])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()  # Keras's message spans lines and lists the call's arguments
    assert line.startswith(
        "mha-explain: error: --build tests.scan_models:gqa_narrow_memory: the function raised"
    )
    assert "The last dimension of `query_shape` and `value_shape` must be equal" in line
    assert "Arguments received" not in line
