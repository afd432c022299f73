"""scan lists the attention it does not explain (issue 25): KerasHub's LLM attention layers, Keras's
Attention and AdditiveAttention, a user's own classes, each with its path, class and traced shapes,
marked "not explained"; "no attention" only where none runs.

The oracles are the models themselves: the constructors' sizes, the layers' own sublayers read
here, and the layer classes found by walking the model.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from tests import scan_models
from tests.scan_models import HUB_HEAD_DIM, HUB_HEADS, HUB_HIDDEN, HUB_KV_HEADS, SOURCE, TARGET
from tests.test_gqa import _mha_explain

pytestmark = pytest.mark.keras

TOKENS = ("--input", "token_ids=8", "--input", "padding_mask=8")


def scan(*args: str) -> Any:
    return CliRunner().invoke(app, ["scan", *args])


def scan_json(*args: str) -> dict[str, Any]:
    result = scan(*args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _statuses(stdout: str) -> list[str]:
    """The status column of scan's table of calls it does not explain, in either layout."""
    words = ("NOT REPRODUCED", "NOT VERIFIED", "VERIFIED", "NOT EXPLAINED")
    return [
        next(w for w in words if line.rstrip().endswith(w))
        for line in stdout.splitlines()
        if line.rstrip().endswith(words)
    ]


def _hub_or_skip() -> None:
    pytest.importorskip("keras_hub", reason="KerasHub is the hub extra: pip install 'mha-explain[hub]'")


@pytest.mark.parametrize(
    ("builder", "attention_class", "softmax", "kv_heads", "heads_first"),
    [
        ("llama_backbone", "LlamaAttention", (None, HUB_HEADS, 8, 8), HUB_KV_HEADS, False),
        ("mistral_backbone", "CachedMistralAttention", (None, HUB_HEADS, 8, 8), HUB_KV_HEADS, False),
        # Gemma groups the query heads under their key/value head: (batch, kv heads, group, T, S).
        ("gemma_backbone", "CachedGemmaAttention", (None, 1, HUB_HEADS, 8, 8), 1, True),
    ],
)
def test_kerashub_decoder_attention_is_listed_not_explained(
    builder: str, attention_class: str, softmax: tuple[int | None, ...], kv_heads: int, heads_first: bool
) -> None:
    _hub_or_skip()
    model = getattr(scan_models, builder)()
    walked = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if type(layer).__name__ == attention_class
    ]
    assert len(walked) == 2  # the model's own count, by walking it
    document = scan_json("--build", f"tests.scan_models:{builder}", *TOKENS)
    assert document["calls"] == [] and document["other_attention_not_looked_for"] is None
    others = document["other_attention"]
    assert [other["layer"] for other in others] == [layer.path for layer in walked]
    for other, layer in zip(others, walked, strict=True):
        assert other["class"] == attention_class and other["explained"] is False
        assert other["output"] == [None, 8, HUB_HIDDEN]
        assert [None, 8, HUB_HIDDEN] in other["inputs"].values()
        assert other["evidence"] == "softmax over " + str(softmax)
        # Its projections as the layer holds them: every Dense/EinsumDense it owns, kernels as built.
        own = {
            sub.name: (sub.equation, list(sub.kernel.shape))
            for sub in layer._flatten_layers(include_self=False, recursive=False)
            if type(sub).__name__ == "EinsumDense"
        }
        assert {p["layer"]: (p["equation"], p["kernel"]) for p in other["projections"]} == own
        # Heads as the constructor was given them, read from the kernels; params as the layer counts them.
        head_dim = HUB_HEAD_DIM if builder == "gemma_backbone" else HUB_HIDDEN // HUB_HEADS
        assert other["heads"] == {
            "query_heads": HUB_HEADS,
            "key_value_heads": kv_heads,
            "head_dim": head_dim,
            "heads_first": heads_first,
            "agreement": other["heads"]["agreement"],
        }
        assert other["heads_not_read"] is None
        assert other["kv_cache_bytes_per_token"] == 2 * kv_heads * head_dim * 4  # float32
        assert other["params"] == layer.count_params() and other["dtype"] == "float32"
    result = scan("--build", f"tests.scan_models:{builder}", *TOKENS)
    assert result.exit_code == 0, result.output
    assert "No MultiHeadAttention or GroupQueryAttention layer in this model" in result.stdout
    assert "other layers compute attention" in result.stdout
    assert _statuses(result.stdout) == ["VERIFIED", "VERIFIED"]  # with --input sizes, a real pass ran


def test_gemma_heads_first_query_kernel_is_shown_as_built() -> None:
    _hub_or_skip()
    document = scan_json("--build", "tests.scan_models:gemma_backbone", *TOKENS)
    projections = {p["layer"]: p for p in document["other_attention"][0]["projections"]}
    # Heads first: (heads, hidden, head_dim), where Llama's is (hidden, heads, head_dim).
    assert projections["query"]["kernel"] == [HUB_HEADS, HUB_HIDDEN, HUB_HEAD_DIM]
    assert projections["query"]["equation"] == "btd,ndh->btnh"
    llama = scan_json("--build", "tests.scan_models:llama_backbone", *TOKENS)
    key = {p["layer"]: p for p in llama["other_attention"][0]["projections"]}["key"]
    assert key["kernel"] == [HUB_HIDDEN, HUB_KV_HEADS, HUB_HIDDEN // HUB_HEADS]


def test_without_sizes_the_trace_keeps_them_unknown() -> None:
    _hub_or_skip()
    document = scan_json("--build", "tests.scan_models:llama_backbone")
    assert [other["evidence"] for other in document["other_attention"]] == [
        f"softmax over (None, {HUB_HEADS}, None, None)"
    ] * 2


def test_keras_attention_and_additive_attention_beside_mha() -> None:
    document = scan_json("--build", "tests.scan_models:plain_attentions")
    assert [call["layer"] for call in document["calls"]] == ["mha"]  # explained, as before
    others = {other["layer"]: other for other in document["other_attention"]}
    assert set(others) == {"dot", "additive"}
    for name, cls in (("dot", "Attention"), ("additive", "AdditiveAttention")):
        assert others[name]["class"] == cls
        # Called on a list [query, value]: named as Keras's docstring names the list's items.
        assert others[name]["inputs"] == {"query": [None, TARGET, 8], "value": [None, SOURCE, 8]}
        assert others[name]["output"] == [None, TARGET, 8]
        assert others[name]["evidence"] == f"softmax over (None, {TARGET}, {SOURCE})"
        assert others[name]["projections"] == [] and others[name]["heads"] is None
        assert others[name]["heads_not_read"].startswith("none: it has no projections of its own")
    result = scan("--build", "tests.scan_models:plain_attentions", "--layer", "additive")
    assert result.exit_code == 0, result.output
    assert "== additive (AdditiveAttention), not explained" in result.stdout
    assert (
        "heads none: it has no projections of its own, so it attends over its inputs as given"
        in result.stdout
    )


def test_a_users_own_attention_is_found_by_what_runs_not_by_its_name() -> None:
    document = scan_json("--build", "tests.scan_models:own_attentions")
    others = {other["layer"]: other for other in document["other_attention"]}
    # OwnAttention (ops.softmax over its scores) and FusedAttention (ops.dot_product_attention) are
    # attention; FakeAttention (a Dense's softmax activation, a softmax over a rank-2 tensor) and the
    # model's own Softmax layer over its classes are not.
    assert set(others) == {"own", "fused"}
    assert others["own"]["evidence"] == "softmax over (None, 5, 5)"
    assert others["fused"]["evidence"] == "ops.dot_product_attention, query (None, 5, 2, 4)"
    assert [p["layer"] for p in others["own"]["projections"]] == ["q", "k", "v"]
    # Dense projections add no heads axis: nothing to read heads from.
    assert others["own"]["heads"] is None
    assert (
        others["own"]["heads_not_read"]
        == "not read: its projections are not one each named query, key and value"
    )
    assert others["fused"]["projections"] == [
        {"layer": "qkv", "class": "EinsumDense", "equation": "btd,dnh->btnh", "kernel": [8, 2, 4]}
    ]


def test_a_model_without_any_attention_says_it_looked() -> None:
    result = scan("--build", "tests.scan_models:no_attention")
    assert result.exit_code == 0, result.output
    assert "and no other layer computes attention: nothing to explain." in " ".join(result.stdout.split())


def test_layer_names_the_paths_of_both_kinds() -> None:
    result = scan("--build", "tests.scan_models:plain_attentions", "--layer", "nowhere")
    assert result.exit_code == 2
    assert "the paths are mha, additive, dot" in result.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_backend_finds_the_same_calls(backend: str) -> None:
    """JAX traces with symbolic sizes, torch twice on sizes 83 and 89: the same calls, the same
    shapes (None where unknown). Llama attends through ops.dot_product_attention there and
    through its Softmax layer on TensorFlow, which is what each line says."""
    _hub_or_skip()
    from mha_cli.operations.backends import installed
    from tests.test_backends import run_cli

    if not installed(backend):
        pytest.skip(f"{backend} is not installed (CI installs it)")
    for builder, arguments in (("plain_attentions", ()), ("llama_backbone", ())):
        on_tensorflow = scan_json("--build", f"tests.scan_models:{builder}", *arguments)["other_attention"]
        done = run_cli(
            "scan", "--build", f"tests.scan_models:{builder}", *arguments, "--backend", backend, "--json"
        )
        assert done.returncode == 0, done.stderr
        others = json.loads(done.stdout)["other_attention"]
        assert [(o["layer"], o["class"], o["inputs"], o["output"]) for o in others] == [
            (o["layer"], o["class"], o["inputs"], o["output"]) for o in on_tensorflow
        ]
        if builder == "llama_backbone":
            assert {o["evidence"] for o in on_tensorflow} == {f"softmax over (None, {HUB_HEADS}, None, None)"}
            assert {o["evidence"] for o in others} == {
                f"ops.dot_product_attention, query (None, None, {HUB_HEADS}, {HUB_HIDDEN // HUB_HEADS})"
            }
        else:
            assert [o["evidence"] for o in others] == [o["evidence"] for o in on_tensorflow]


# --- Pinning: a [model] case file pins these calls by what scan reads of them -----------------------

_TINY_LLAMA = (
    "import keras_hub\n\n\ndef build():\n"
    "    return keras_hub.models.LlamaBackbone(\n"
    "        vocabulary_size=50, num_layers=1, num_query_heads=4, num_key_value_heads={kv},\n"
    "        hidden_dim=16, intermediate_dim=32,\n"
    "    )\n"
)


def test_a_llama_backbones_num_key_value_heads_change_turns_check_red_in_fresh_processes(
    tmp_path: Any,
) -> None:
    _hub_or_skip()
    import keras_hub

    (tmp_path / "tiny_llama.py").write_text(_TINY_LLAMA.format(kv=2), encoding="utf-8")
    cases = tmp_path / "llama.mha.toml"
    cases.write_text(
        '[model]\nbuild = "tiny_llama:build"\ninputs = ["token_ids=8", "padding_mask=8"]\n', encoding="utf-8"
    )
    recorded = _mha_explain("record", cases.name, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    pinned = cases.read_text(encoding="utf-8")
    # The layer's own count of its weights, from the same constructor in this process.
    layer = (
        keras_hub.models.LlamaBackbone(
            vocabulary_size=50,
            num_layers=1,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        )
        .get_layer("transformer_layer_0")
        ._self_attention_layer
    )
    assert (
        '[calls."transformer_layer_0/self_attention"]\nclass = "LlamaAttention"\nexplained = false\n'
        "num_query_heads = 4\nnum_key_value_heads = 2\nhead_dim = 4\nquery = [8, 16]\noutput = [8, 16]\n"
        f"params = {layer.count_params()}\n" in pinned
    )
    assert _mha_explain("check", cases.name, cwd=tmp_path).returncode == 0
    (tmp_path / "tiny_llama.py").write_text(_TINY_LLAMA.format(kv=4), encoding="utf-8")  # someone edits it
    checked = _mha_explain("check", cases.name, "--width", "300", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    # [model] 1-3, a blank line, the call's table at 5: class 6, explained 7, query heads 8, kv heads 9.
    assert (
        "llama.mha.toml:9: call 'transformer_layer_0/self_attention': num_key_value_heads: expected 2, "
        "the model gives 4" in checked.stderr
    )
    # No biases: query and output 16 x 4 x 4 each, key and value 16 x kv heads x 4 each.
    assert "params: expected 768, the model gives 1024" in checked.stdout


def test_check_fails_on_an_unpinned_attention_call_it_does_not_explain(tmp_path: Any) -> None:
    cases = tmp_path / "plain.mha.toml"
    cases.write_text('[model]\nbuild = "tests.scan_models:plain_attentions"\n', encoding="utf-8")
    recorded = CliRunner().invoke(app, ["record", str(cases)])
    assert recorded.exit_code == 0, recorded.output
    pinned = cases.read_text(encoding="utf-8")
    assert (
        '[calls.dot]\nclass = "Attention"\nexplained = false\nquery = [6, 8]\noutput = [6, 8]\nparams = 0\n'
        in (pinned)
    )
    assert CliRunner().invoke(app, ["check", str(cases)]).exit_code == 0
    # Someone's edit drops the pin of the AdditiveAttention call: check finds the call unpinned.
    start = pinned.index("[calls.additive]")
    cases.write_text(pinned[:start] + pinned[pinned.index("\n\n", start) + 2 :], encoding="utf-8")
    checked = CliRunner().invoke(app, ["check", str(cases), "--width", "300"])
    assert checked.exit_code == 1
    assert (
        "an attention call the file does not pin (AdditiveAttention, not explained); run record to pin it"
        in (checked.stdout)
    )


# --- The real pass: grouped-query attention re-executed in NumPy (issue 25) -------------------------


@pytest.mark.parametrize(
    ("builder", "kv_heads", "mask"),
    [
        ("llama_backbone", HUB_KV_HEADS, "causal"),
        # The constructor's sliding_window=4, seen in the mask the softmax took.
        ("mistral_backbone", HUB_KV_HEADS, "causal, a window of 4 positions"),
        # Heads-first kernels and a grouped softmax (batch, kv heads, group, T, S); its query arrives
        # scaled, so its logits are 1 x query . key.
        ("gemma_backbone", 1, "causal"),
    ],
)
def test_kerashub_attention_is_verified_by_a_numpy_re_execution(
    builder: str, kv_heads: int, mask: str
) -> None:
    _hub_or_skip()
    document = scan_json("--build", f"tests.scan_models:{builder}", *TOKENS)
    for other in document["other_attention"]:
        assert other["verified"] is True, other["verification"]
        check = other["verification"]
        assert check["real_pass"] is True and check["tolerance"] == 1e-4
        assert check["detail"].startswith(
            f"grouped-query attention ({HUB_HEADS} query heads reading {kv_heads} "
        )
        steps = {step["what"]: step for step in check["steps"]}
        assert "the layer's output, through its attention_output projection" in steps
        assert all(step["relative"] < 1e-5 for step in check["steps"])
        # Rotary embeddings: the query and key differ from their projections, their norms kept.
        assert check["rotary"].startswith("query and key rotated between projection and attention")
        assert check["mask"].endswith(mask) and "(2, 1" in check["mask"]
        head_dim = HUB_HEAD_DIM if builder == "gemma_backbone" else HUB_HIDDEN // HUB_HEADS
        assert check["scale"] == pytest.approx(1.0 if builder == "gemma_backbone" else head_dim**-0.5)
        # What its attention received, after RoPE: batch 2, 8 tokens, heads, head_dim; Llama and
        # Mistral repeat their key/value heads before it (the repeat step above), Gemma groups the query.
        received = kv_heads if builder == "gemma_backbone" else HUB_HEADS
        assert check["received"] == {
            "query": [2, 8, HUB_HEADS, head_dim],
            "key": [2, 8, received, head_dim],
            "value": [2, 8, received, head_dim],
        }
    result = scan("--build", f"tests.scan_models:{builder}", *TOKENS)
    assert _statuses(result.stdout) == ["VERIFIED", "VERIFIED"]
    assert "traced, then run once on random inputs (batch 2, seed 0)" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("builder", "cls", "soft_cap", "masks"),
    [
        ("qwen_backbone", "QwenAttention", None, ["causal", "causal"]),
        ("phi3_backbone", "Phi3Attention", None, ["causal", "causal"]),
        # Gemma 2: a logit soft cap of 50 (which its get_config does not list: read from the layer), and
        # sliding-window layers alternating with global ones.
        ("gemma2_backbone", "CachedGemmaAttention", 50.0, ["causal, a window of 4 positions", "causal"]),
    ],
)
def test_more_families_are_verified_qwen_phi3_and_gemma2_s_soft_cap(
    builder: str, cls: str, soft_cap: float | None, masks: list[str]
) -> None:
    _hub_or_skip()
    document = scan_json("--build", f"tests.scan_models:{builder}", *TOKENS)
    others = document["other_attention"]
    assert [other["class"] for other in others] == [cls, cls]
    for other, mask in zip(others, masks, strict=True):
        assert (
            other["heads"]["query_heads"] == HUB_HEADS and other["heads"]["key_value_heads"] == HUB_KV_HEADS
        )
        check = other["verification"]
        assert other["verified"] is True, check
        assert check["soft_cap"] == soft_cap and check["mask"].endswith(mask)
        assert all(step["relative"] < 1e-5 for step in check["steps"])


def test_a_grouping_other_than_the_kernels_say_is_not_reproduced() -> None:
    """ops.tile instead of ops.repeat: query head i reads key/value head i % 2, not i // 2. The
    same class with ops.repeat is verified; fresh weights' tiny logits hide nothing here, since
    each step is held relative to the layer's own values."""
    document = scan_json("--build", "tests.scan_models:grouped_attentions")
    others = {other["layer"]: other for other in document["other_attention"]}
    assert others["repeat"]["verified"] is True
    assert others["tiled"]["verified"] is False
    check = others["tiled"]["verification"]
    assert check["verdict"] == "not reproduced"
    assert check["detail"].startswith(
        "not reproduced: the key its attention took, as key/value head i // 2 at query head i differs by"
    )
    # No rotary embedding in either: what attends is what was projected (the tiled key is laid out
    # otherwise, and said to be).
    repeat = others["repeat"]["verification"]
    assert repeat["rotary"] == "query and key attend as projected (up to a scale): no rotation"
    assert check["rotary"] == "key changed between its projection and the attention, norms not kept"
    result = scan("--build", "tests.scan_models:grouped_attentions", "--layer", "tiled")
    assert result.exit_code == 0  # not explained: a call scan reads, never a check that gates
    assert _statuses(result.stdout) == ["NOT REPRODUCED", "VERIFIED"]


def test_keras_attention_and_additive_attention_are_re_executed_by_their_own_formula() -> None:
    document = scan_json("--build", "tests.scan_models:plain_attentions")
    for other in document["other_attention"]:  # no heads to group: explain --layer dot|additive's formula
        assert other["verified"] is True, other["verification"]
        kind = {"dot": "Attention's dot", "additive": "AdditiveAttention's additive"}[other["layer"]]
        assert other["verification"]["detail"] == (
            f"verified: {kind} formula (explain --layer {other['layer']}), re-executed in NumPy on the "
            "call's inputs (no mask), reproduced its output"
        )


def test_their_masks_as_a_list_are_re_executed_and_a_changed_formula_is_not_reproduced() -> None:
    document = scan_json("--build", "tests.scan_models:masked_plain_attentions")
    others = {other["layer"]: other for other in document["other_attention"]}
    concat, additive, rescaled = others["concat"], others["additive"], others["rescaled"]
    assert concat["verified"] is True and concat["verification"]["mask"] == "query_mask, value_mask, causal"
    assert "Attention's concat formula" in concat["verification"]["detail"]
    assert additive["verified"] is True and additive["verification"]["mask"] == "value_mask"
    # The same class to isinstance, scores divided by sqrt(8): the formula does not reproduce it.
    assert rescaled["class"] == "RescaledAttention" and rescaled["verified"] is False
    assert rescaled["verification"]["verdict"] == "not reproduced"
    assert rescaled["verification"]["detail"].startswith(
        "not reproduced: Attention's dot formula (explain --layer dot) differs from its output by"
    )


def test_what_is_not_verified_says_why_in_one_line() -> None:
    own = {o["layer"]: o for o in scan_json("--build", "tests.scan_models:own_attentions")["other_attention"]}
    assert own["own"]["verification"]["detail"].startswith("not verified: its heads are not read:")


def test_without_sizes_or_memory_the_real_pass_does_not_run_and_says_so() -> None:
    _hub_or_skip()
    document = scan_json("--build", "tests.scan_models:llama_backbone")
    check = document["other_attention"][0]["verification"]
    assert check["real_pass"] is False and check["detail"] == (
        "not verified: the model leaves the sizes of padding_mask, token_ids unknown; give them with --input "
        "to run it"
    )
    document = scan_json("--build", "tests.scan_models:llama_backbone", *TOKENS, "--max-memory", "1KB")
    check = document["other_attention"][0]["verification"]
    assert check["real_pass"] is False and "above --max-memory" in check["detail"]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_through_ops_dot_product_attention_the_op_is_re_run_sharpened(backend: str) -> None:
    """JAX and torch attend through ops.dot_product_attention: its arguments are re-executed, and
    the op is run again on a query scaled until the logits spread about 3, so a wrong reading of
    which key a head reads cannot hide in a nearly uniform softmax."""
    _hub_or_skip()
    from mha_cli.operations.backends import installed
    from tests.test_backends import run_cli

    if not installed(backend):
        pytest.skip(f"{backend} is not installed (CI installs it)")
    done = run_cli(
        "scan", "--build", "tests.scan_models:llama_backbone", *TOKENS, "--backend", backend, "--json"
    )
    assert done.returncode == 0, done.stderr
    for other in json.loads(done.stdout)["other_attention"]:
        assert other["verified"] is True, other["verification"]
        whats = [step["what"] for step in other["verification"]["steps"]]
        assert whats[:3] == [
            "the key its attention took, as key/value head i // 2 at query head i",
            "the value its attention took, as key/value head i // 2 at query head i",
            "the output of ops.dot_product_attention",
        ]
        assert whats[3].startswith("ops.dot_product_attention re-run with the query x")
        assert whats[4] == "the layer's output, through its attention_output projection"
