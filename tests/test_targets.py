"""mha-explain targets: every rule cited, and the table's logic on known configurations."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.kinds import derive_any
from mha_cli.core.targets import FEATURES, REFUSED, SUPPORTED, UNKNOWN, features_of, load_rules, targets_table

runner = CliRunner()


def test_every_rule_is_cited_and_names_a_known_target_and_feature() -> None:
    targets, rules = load_rules()
    names = {target.name for target in targets}
    assert {
        "frugally-deep",
        "hls4ml",
        "coremltools",
        "litert-float",
        "litert-int8",
        "tf2onnx",
        "keras2c",
        "nobuco",
    } <= names
    for target in targets:
        assert target.source and target.version and target.what, target
    seen = set()
    for rule in rules:
        assert rule.target in names, rule
        assert rule.feature in FEATURES, rule
        assert rule.verdict in (SUPPORTED, REFUSED, UNKNOWN), rule
        assert rule.rule.strip() and rule.where.strip(), rule
        assert (rule.target, rule.feature) not in seen, f"two rules for {rule.target} {rule.feature}"
        seen.add((rule.target, rule.feature))


def _verdicts(config: MHAConfig | GQAConfig, **flags: bool) -> dict[str, str]:
    table = targets_table(features_of(derive_any(config), **flags))
    return {target.name: table.verdict(target.name) for target in table.targets}


def test_a_sentence_is_what_most_targets_take() -> None:
    verdicts = _verdicts(MHAConfig(query_shape=(10, 16)))
    assert verdicts["frugally-deep"] == verdicts["coremltools"] == verdicts["tf2onnx"] == SUPPORTED
    assert verdicts["hls4ml-pr1163"] == verdicts["nobuco"] == verdicts["litert-float"] == SUPPORTED
    # No converter for the layer at all, or none for plain Keras's layer on main, or no int8 op.
    assert verdicts["keras2c"] == verdicts["hls4ml"] == verdicts["litert-int8"] == REFUSED


def test_an_image_attending_over_two_axes() -> None:
    config = MHAConfig(query_shape=(6, 6, 4), attention_axes=(1, 2))
    table = targets_table(features_of(derive_any(config)))
    assert [feature.name for feature in table.features] == ["layer:mha", "rank>3", "attention_axes"]
    cell = table.cells[("frugally-deep", "attention_axes")]
    assert cell.verdict == REFUSED and cell.rule is not None and "attention_axes=None" in cell.rule.rule
    assert table.verdict("hls4ml-pr1163") == REFUSED and table.verdict("nobuco") == REFUSED
    assert table.verdict("coremltools") == SUPPORTED  # generic einsum fallback, not a refusal
    assert table.verdict("tf2onnx") == UNKNOWN  # nobody read what it does with rank 4


@pytest.mark.parametrize(
    ("config", "feature", "refused_by"),
    [
        (
            MHAConfig(query_shape=(5, 6), output_shape=(3,)),
            "output_shape",
            {"frugally-deep", "hls4ml-pr1163"},
        ),
        (MHAConfig(query_shape=(5, 6), value_shape=(7, 4)), "widths", {"frugally-deep", "nobuco"}),
        (
            MHAConfig(query_shape=(5, 6), mask_shape=(None, 5, 5)),
            "attention_mask",
            {"frugally-deep", "hls4ml", "nobuco"},
        ),
        (MHAConfig(query_shape=(5, 6), causal=True), "causal", {"frugally-deep"}),
        (MHAConfig(query_shape=(5, 6), use_bias=False), "no_bias", {"nobuco"}),
    ],
)
def test_each_feature_is_refused_by_the_targets_whose_rule_says_so(
    config: MHAConfig, feature: str, refused_by: set[str]
) -> None:
    table = targets_table(features_of(derive_any(config)))
    assert {t.name for t in table.targets if table.cells[(t.name, feature)].verdict == REFUSED} == refused_by


def test_flags_for_what_the_configuration_cannot_say() -> None:
    verdicts = _verdicts(MHAConfig(query_shape=(10, 16)), scores=True, dynamic=True)
    assert verdicts["coremltools"] == REFUSED  # apple/coremltools#1251: dynamic lengths
    table = targets_table(features_of(derive_any(MHAConfig(query_shape=(10, 16))), scores=True))
    assert table.cells[("nobuco", "scores")].verdict == SUPPORTED
    gqa = _verdicts(GQAConfig(query_shape=(10, 64), num_query_heads=8, num_key_value_heads=2))
    assert gqa["frugally-deep"] == SUPPORTED and gqa["keras2c"] == REFUSED and gqa["nobuco"] == REFUSED


def test_the_command_its_json_and_its_exit_codes() -> None:
    result = runner.invoke(app, ["targets", "--shape", "10,16", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    keras2c = next(t for t in document["targets"] if t["name"] == "keras2c")
    assert keras2c["verdict"] == "refused" and keras2c["version"].startswith("v2.0.0")
    assert keras2c["cells"]["layer:mha"]["where"].startswith("src/keras2c/check_model.py")
    refused = runner.invoke(
        app, ["targets", "--shape", "6,6,4", "--axes", "1,2", "--target", "frugally-deep"]
    )
    assert refused.exit_code == 1 and "frugally-deep refuses this layer" in refused.output
    taken = runner.invoke(app, ["targets", "--shape", "10,16", "--target", "frugally-deep"])
    assert taken.exit_code == 0
    nothing = runner.invoke(app, ["targets", "--shape", "10,16", "--target", "keras2c", "--run"])
    assert nothing.exit_code == 2 and "--run: none of the targets named converts here" in nothing.output
    unknown = runner.invoke(app, ["targets", "--shape", "10,16", "--target", "tvm"])
    assert unknown.exit_code == 2 and unknown.output.startswith(
        "mha-explain: error: --target tvm: unknown target"
    )


def test_a_timeout_that_is_no_time_is_refused_before_anything_runs() -> None:
    for value in ("-1", "0", "nan"):
        result = runner.invoke(app, ["targets", "--shape", "8,16", "--run", "--timeout", value])
        assert result.exit_code == 2, result.output
        assert "--timeout" in result.output and "give a number of seconds above 0" in result.output


# --- scan --targets: a model's calls -----------------------------------------------------------------


@pytest.mark.keras
def test_scan_targets_groups_a_model_s_calls_and_names_what_each_target_refuses() -> None:
    """tests.scan_models:porters_model: frugally-deep drops masks and refuses other axes; hls4ml's PR
    refuses only the image's call; keras.layers.Attention is not covered, so no target is 'supported'
    for the model; each verdict is the rules' on the features scan read from the real calls."""
    result = runner.invoke(app, ["scan", "--build", "tests.scan_models:porters_model", "--targets", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["targets"]
    groups = {tuple(group["calls"]): group for group in found["groups"]}
    assert set(groups) == {("masked",), ("plain",), ("grid",)}
    masked = {feature["name"]: feature["shown"] for feature in groups[("masked",)]["features"]}
    # The mask Keras combined from the tokens' mask_zero mask, with the causal one beside it.
    assert masked["attention_mask"].startswith("a mask (None, 16, 16) Keras made from query_mask")
    assert "causal" in masked
    # MultiHeadAttention hands the query's mask on with its output: the next call is masked too.
    plain = {feature["name"]: feature["shown"] for feature in groups[("plain",)]["features"]}
    assert plain["attention_mask"] == masked["attention_mask"] and "causal" not in plain
    grid = {target["name"]: target for target in groups[("grid",)]["targets"]}
    assert grid["frugally-deep"]["cells"]["attention_axes"]["where"] == "keras_export/convert_model.py L603"
    assert found["refusing"]["frugally-deep"] == ["masked", "plain", "grid"]
    assert found["refusing"]["hls4ml-pr1163"] == ["grid"]
    assert found["not_covered"] == [
        {
            "call": "dot",
            "class": "Attention",
            "why": "Attention: the rules cover keras.layers.MultiHeadAttention and GroupQueryAttention "
            "(and their subclasses)",
        }
    ]
    # ONNX refuses nothing here and has rules it has not read: unknown, as is every verdict the
    # uncovered Attention leaves open.
    assert found["verdicts"]["tf2onnx"] == UNKNOWN and found["verdicts"]["frugally-deep"] == REFUSED
    assert SUPPORTED not in found["verdicts"].values()


@pytest.mark.keras
def test_scan_targets_exit_codes_and_bad_input() -> None:
    build = ["scan", "--build", "tests.scan_models:porters_model"]
    refused = runner.invoke(app, [*build, "--targets", "--target", "hls4ml-pr1163"])
    assert refused.exit_code == 1
    assert "--target hls4ml-pr1163 refuses 1 call(s); first: grid (see the table)" in refused.output
    assert "Converters for this model" in refused.output
    nobody = runner.invoke(
        app, ["scan", "--build", "tests.scan_models:plain_attentions", "--targets", "--target", "coremltools"]
    )
    assert nobody.exit_code == 0, nobody.output
    for bad, said in (
        (["--target", "frugally-deep"], "--target goes with --targets: add --targets"),
        (["--dynamic"], "--dynamic goes with --targets: add --targets"),
        (["--run"], "--run goes with --targets: add --targets"),
        (["--targets", "--run", "--timeout", "0"], "--timeout 0: give a number of seconds above 0"),
        (
            ["--targets", "--run", "--target", "frugally-deep"],
            "--run: none of the targets named converts here; --run covers tf2onnx, litert-float",
        ),
        (["--targets", "--target", "tvm"], "--target tvm: unknown target; choose one of frugally-deep"),
    ):
        result = runner.invoke(app, [*build, *bad])
        assert result.exit_code == 2 and said in result.output, result.output
