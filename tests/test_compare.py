"""compare: configurations side by side, and whether they compute the same thing (marked keras)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.operations.compare import compare
from tests.keras_features import keras_supports

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
    # The raw node, as Model.get_config() wrote it: tensors by their keras_history.
    (node,) = convention["multi_head_attention"].pop("inbound_nodes")
    assert [arg["config"]["keras_history"][0] for arg in node["args"]] == ["query", "value"]
    assert node["kwargs"]["key"]["config"]["keras_history"][0] == "key"
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


def picture(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["picture"]  # type: ignore[no-any-return]


def test_the_picture_shows_one_column_for_attention_along_height() -> None:
    drawn = picture("--shape", "32,64,4", "--axes", "1", "--at", "5,10")
    assert (drawn["at"], drawn["key_grid"], drawn["attended_count"]) == ([5, 10], [32, 64], 32)
    attended = drawn["attended"]
    assert all(attended[h][w] == (w == 10) for h in range(32) for w in range(64))


def test_the_picture_honours_causal_and_sliding_window_masks() -> None:
    if keras_supports("sliding_window"):
        drawn = picture("--shape", "12,16", "--causal", "--sliding-window", "3", "--at", "6")
        assert drawn["attended"] == [4 <= j <= 6 for j in range(12)]
    else:
        refused = runner.invoke(app, ["--shape", "12,16", "--sliding-window", "3"])
        assert refused.exit_code == 2
        assert "has no sliding_window (added in Keras 3.15)" in refused.stderr
    assert picture("--shape", "12,16", "--causal", "--at", "0")["attended"] == [j == 0 for j in range(12)]


def test_the_picture_keeps_free_axes_independent() -> None:
    drawn = picture("--shape", "4,5,6,8", "--axes", "1,3", "--at", "1,2,3")
    assert drawn["attended_count"] == 4 * 6
    attended = drawn["attended"]
    assert all(attended[d][h][w] == (h == 2) for d in range(4) for h in range(5) for w in range(6))


def test_the_picture_of_cross_attention_is_drawn_on_the_key_grid() -> None:
    drawn = picture("--shape", "8,16", "--value-shape", "4,16", "--at", "3")
    assert (drawn["key_grid"], drawn["attended"]) == ([4], [True] * 4)
    table = runner.invoke(app, ["--shape", "8,16", "--value-shape", "4,16", "--picture"]).stdout
    assert "the query grid differs" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "10,16", "--at", "10"], "--at 10: seq has positions 0..9"),
        (["--shape", "6,5,4", "--at", "1"], "--at 1: give one index per axis between batch and features"),
        (["--shape", "10,16", "--at", "1", "--no-run"], "the picture is read from a real forward pass"),
        (
            ["--shape", "10,16", "--svg", "x.svg", "--json"],
            "--svg saves the tables; it cannot be combined with --json",
        ),
    ],
)
def test_picture_mistakes_are_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("mha-explain: error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_tables_and_picture_export_to_svg_and_html(tmp_path: Path) -> None:
    svg, html = tmp_path / "mha.svg", tmp_path / "mha.html"
    result = runner.invoke(
        app, ["--shape", "10,16", "--causal", "--picture", "--svg", str(svg), "--html", str(html)]
    )
    assert result.exit_code == 0, result.output
    assert svg.read_text().startswith("<svg") and "Attention" in svg.read_text()
    assert "Attention&#160;picture" in html.read_text() or "Attention picture" in html.read_text()


def _readme_answers() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## What it answers") : text.index("A real transcript")]
    return re.findall(r"\| `(mha-explain [^`]+)`", table)


@pytest.mark.parametrize("command", _readme_answers())
def test_every_answer_in_the_readme_runs(command: str, tmp_path: Path) -> None:
    """Each forum question's one command, as the README gives it, answers with exit 0."""
    args = shlex.split(command)[1:]
    if "--keras" in args and importlib.util.find_spec("tf_keras") is None:
        pytest.skip("needs tf-keras: pip install 'mha-explain[keras2]' (CI installs it)")
    if "--check" in args and importlib.util.find_spec("torch") is None:
        pytest.skip("map --check runs PyTorch: pip install 'mha-explain[torch]' (CI installs it)")
    if args[0] == "check":
        args[1] = str(Path(__file__).resolve().parent.parent / args[1])
    # What a command writes goes to a temporary directory, not into the repository.
    args = [
        str(tmp_path / arg) if index and args[index - 1] == "--out" else arg for index, arg in enumerate(args)
    ]
    result = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_the_readme_lists_an_answer_for_each_seed_question() -> None:
    assert len(_readme_answers()) >= 9


def test_graph_records_the_key_and_masks_of_self_attention() -> None:
    """Review bugs 2 and 3: --graph built a different call without the key, masks or sliding_window."""
    keyed = json.loads(
        runner.invoke(app, ["--shape", "8,16", "--key-shape", "8,6", "--graph", "--json"]).stdout
    )
    recorded = keyed["call_convention"]["multi_head_attention"]
    assert len(recorded.pop("inbound_nodes")) == 1
    assert recorded == {
        "call": "layer(x, x, key=key)",
        "args": ["x", "x"],
        "kwargs": {"key": "key"},
    }
    masked = runner.invoke(
        app, ["--shape", "12,16", "--causal", "--mask-shape", "None,12,12", "--graph", "--json"]
    )
    assert masked.exit_code == 0, masked.output
    recorded = json.loads(masked.stdout)["call_convention"]["multi_head_attention"]
    assert recorded["call"] == "layer(x, x, attention_mask=mask, use_causal_mask=True)"
    assert recorded["kwargs"] == {"attention_mask": "mask", "use_causal_mask": True}
