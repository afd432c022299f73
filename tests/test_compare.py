"""compare: configurations side by side, and whether they compute the same thing (marked keras)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mha_cli.algebra import MHAConfig
from mha_cli.cli import app
from mha_cli.compare import compare

pytestmark = pytest.mark.keras
runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["compare", *args], env={"COLUMNS": "200"})


def test_for_a_sentence_axes_1_and_none_compute_the_same_attention() -> None:
    """The forum's answer ("it's the same"), from two real forward passes."""
    result = invoke("--shape", "10,16", "--axes", "1", "--axes", "none", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["equivalence"] == {
        "same_weights": True,
        "outputs_equal": True,
        "max_abs_diff": 0.0,
        "tolerance": 1e-4,
    }
    assert [config["config"]["attention_axes"] for config in doc["configs"]] == [[1], [1]]
    assert [config["attention_axes_given"] for config in doc["configs"]] == [[1], None]


def test_for_an_image_each_choice_computes_different_attention() -> None:
    result = invoke("--shape", "32,64,4", "--axes", "1", "--axes", "2", "--axes", "none")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["attention_scores"].split()[-1] == "differs"
    assert "(None, 64, 2, 32, 32)" in lines["attention_scores"]
    assert "(None, 2, 32, 64, 32, 64)" in lines["attention_scores"]
    assert lines["output"].split()[-1] == "same"
    assert "the outputs differ" in result.stdout
    doc = json.loads(invoke("--shape", "32,64,4", "--axes", "1", "--axes", "none", "--json").stdout)
    assert doc["equivalence"]["same_weights"] is True
    assert doc["equivalence"]["outputs_equal"] is False
    assert doc["equivalence"]["max_abs_diff"] > 0.1


def test_outputs_are_compared_only_after_checking_the_layers_got_the_same_weights_and_inputs() -> None:
    seeded = compare([MHAConfig((10, 16), seed=0), MHAConfig((10, 16), seed=1)], "tensorflow")
    assert seeded.equivalence is not None
    assert seeded.equivalence.same_weights is False
    assert seeded.equivalence.outputs_equal is None


def test_without_a_forward_pass_nothing_is_claimed_about_the_outputs() -> None:
    doc = json.loads(invoke("--shape", "10,16", "--axes", "1", "--axes", "none", "--no-run", "--json").stdout)
    assert doc["equivalence"] is None
    assert doc["not_compared_reason"].startswith("a configuration had no forward pass (--no-run")


def test_one_configuration_is_not_a_comparison() -> None:
    result = invoke("--shape", "10,16", "--axes", "1")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "mha-explain: error: --axes: give two or more to compare, e.g. --axes 1 --axes none\n"
    )


def test_graph_shows_how_a_functional_model_records_the_call() -> None:
    """Seed question 002: MultiHeadAttention's tensors are args and kwargs; Attention's are one list."""
    result = runner.invoke(
        app, ["--shape", "8,16", "--value-shape", "4,16", "--key-shape", "4,6", "--graph", "--json"]
    )
    assert result.exit_code == 0, result.output
    convention = json.loads(result.stdout)["call_convention"]
    assert convention["multi_head_attention"] == {
        "call": "layer(query, value, key=key)",
        "args": ["query", "value"],
        "kwargs": {"key": "key"},
    }
    assert convention["attention"]["args"] == [["query", "value"]]
    assert convention["additive_attention"]["args"] == [["query", "value"]]
    self_attention = json.loads(runner.invoke(app, ["--shape", "8,16", "--graph", "--json"]).stdout)
    assert self_attention["call_convention"]["multi_head_attention"]["args"] == ["x", "x"]
    image = json.loads(runner.invoke(app, ["--shape", "6,5,4", "--graph", "--json"]).stdout)
    assert list(image["call_convention"]) == ["multi_head_attention"]  # Attention needs rank-3 inputs
    assert json.loads(runner.invoke(app, ["--shape", "8,16", "--json"]).stdout)["call_convention"] is None


def test_graph_needs_the_real_layer() -> None:
    result = runner.invoke(app, ["--shape", "8,16", "--graph", "--no-run"])
    assert result.exit_code == 2
    assert result.stderr == (
        "mha-explain: error: --graph builds a model around the real layer; leave out --no-run to use it\n"
    )
