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
    unknown = runner.invoke(app, ["targets", "--shape", "10,16", "--target", "tvm"])
    assert unknown.exit_code == 2 and unknown.output.startswith(
        "mha-explain: error: --target tvm: unknown target"
    )


def test_a_timeout_that_is_no_time_is_refused_before_anything_runs() -> None:
    for value in ("-1", "0", "nan"):
        result = runner.invoke(app, ["targets", "--shape", "8,16", "--run", "--timeout", value])
        assert result.exit_code == 2, result.output
        assert "--timeout" in result.output and "give a number of seconds above 0" in result.output
