"""explain --jsonl: one configuration per line in, one answer per line out, in one process."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.cases import KNOBS, parse
from mha_cli.operations.many import LineProblem, config_line
from tests.test_golden import masked_document

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, input: str | bytes):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=input, env={"COLUMNS": "120"})


def lines_of(text: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_takes_every_key_a_case_takes_and_means_the_same() -> None:
    knobs = {
        "shape": [6, 5, 8],
        "value_shape": [4, 5, 8],
        "key_shape": [4, 5, 8],
        "num_heads": 3,
        "key_dim": 2,
        "value_dim": 5,
        "output_shape": [7],
        "attention_axes": [1],
        "use_bias": False,
        "use_gate": True,
        "dropout": 0.25,
        "dtype": "float64",
        "batch": 3,
        "seed": 9,
        "axis_names": ["rows", "cols"],
        "mask_shape": ["None", 5, 6, 4],
        "causal": True,
        "sliding_window": 2,
    }
    # keras = 2 has no use_gate: tests/test_keras2.py; GroupQueryAttention's keys: tests/test_gqa.py.
    assert set(knobs) | {
        "axes",
        "keras",
        "layer",
        "num_query_heads",
        "num_key_value_heads",
        "head_dim",
    } == set(KNOBS)
    name, config = config_line(json.dumps({"name": "all", **knobs}))
    case_file = parse(Path("c.mha.json"), json.dumps({"case": [{"name": "all", **knobs}]}), "json")
    assert case_file.problems == ()
    assert name == "all"
    assert config == case_file.cases[0].config


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"shape": [10, 16], "heads": 2}', "unknown key 'heads'; did you mean 'num_heads'?"),
        ('{"axes": 1}', "no shape"),
        ('{"shape": [10, 16], "axes": 1, "attention_axes": 1}', "give axes or attention_axes, not both"),
        ('{"shape": "10,16"}', "shape: expected"),
        ("[10, 16]", "a line is one JSON object"),
        ('{"shape": [10, 16]', "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "not a configuration (RecursionError)"),
        ('{"shape": [1' + "0" * 5000 + ", 16]}", "not a configuration (ValueError)"),
        ('{"shape": [10, 16], "name": 3}', "name: expected a string"),
    ],
    ids=["typo", "no-shape", "both-axes", "shape-string", "list", "truncated", "deep", "huge-int", "name"],
)
def test_a_bad_line_says_which_key_and_what_is_right(line: str, problem: str) -> None:
    with pytest.raises(LineProblem, match=None) as raised:
        config_line(line)
    assert problem in str(raised.value)


def test_bad_lines_are_answered_in_place_and_the_rest_go_on() -> None:
    text = "\n".join(
        [
            '{"shape": [10, 16]}',
            '{"shape": [10, 16], "num_heads": 0}',
            "",  # blank: no answer
            "\udcff not utf-8",
            '{"name": "sentence", "shape": [10], "axes": 1}',
            '{"shape": [8, 8, 4], "axes": [1, 2]}',
            '{"name": "typo", "shape": [8, 8, 4], "heads": 2}',
            '{"shape": [8, 8, 4], "axes": null}',
        ]
    )
    data = text.encode("utf-8", errors="surrogateescape")
    result = invoke("--jsonl", "-", "--no-run", input=data)
    assert result.exit_code == 2, result.output
    answers = lines_of(result.stdout)
    assert len(answers) == 7
    assert answers[0]["shapes"]["attention_scores"] == [None, 2, 10, 10]
    assert answers[1] == {
        "schema_version": 1,
        "line": 2,
        "name": None,
        "error": "num_heads 0: must be a positive integer",
        "exit_code": 2,
    }
    assert answers[2]["line"] == 4 and "not JSON" in answers[2]["error"]
    assert answers[3]["line"] == 5 and answers[3]["name"] == "sentence"  # named, though it is bad
    assert answers[3]["error"].startswith("shape (10,): rank 2")
    assert answers[4]["shapes"]["attention_scores"] == [None, 2, 8, 8, 8, 8]
    assert answers[5]["name"] == "typo" and "did you mean 'num_heads'" in answers[5]["error"]
    assert answers[6]["attention_axes_given"] is None  # JSON null is None


def test_get_prints_one_line_of_values_per_input_line() -> None:
    text = '{"shape": [10, 16]}\n{"shape": [0]}\n{"shape": [8, 8, 4], "axes": 1}\n'
    result = invoke(
        "--jsonl", "-", "--no-run", "--get", "shapes.attention_scores", "--get", "defaults", input=text
    )
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        'None,2,10,10\t["attention_axes","key_dim","num_heads","output_shape","value_dim"]',
        "",
        'None,8,2,8,8\t["key_dim","num_heads","output_shape","value_dim"]',
    ]
    assert result.stderr == "mha-explain: error: --jsonl stdin:2: shape: size 0 is not positive\n"
    # A path only some documents have: that line's field is empty, the rest go on (exit 2).
    mixed = invoke(
        "--jsonl",
        "-",
        "--no-run",
        "--get",
        "axes.3.role",
        input='{"shape": [4, 6, 16]}\n{"shape": [10, 16]}\n',
    )
    assert mixed.exit_code == 2
    assert mixed.stdout.splitlines() == ["feature", ""]
    assert (
        mixed.stderr
        == "mha-explain: error: --jsonl stdin:2: --get axes.3.role: no '3' in axes; it has an index 0..2\n"
    )
    # Only the first line lacks the gate: its field is empty, the next has it.
    gated = invoke(
        "--jsonl",
        "-",
        "--no-run",
        "--get",
        "shapes.gate",
        input='{"shape": [10, 16]}\n{"shape": [10, 16], "use_gate": true}\n',
    )
    assert gated.exit_code == 2 and gated.stdout.splitlines() == ["", "None,10,2,8"]
    # A path no document has is a typo: stop at once.
    wrong = invoke("--jsonl", "-", "--no-run", "--get", "shapez.output", input=text)
    assert wrong.exit_code == 2 and wrong.stdout == ""
    assert wrong.stderr.startswith("mha-explain: error: --get shapez.output: no 'shapez'")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--shape", "10,16"], "--jsonl and --shape: --jsonl takes each configuration from its line"),
        (["--no-bias"], "--jsonl and --bias/--no-bias:"),
        (["--json"], "--jsonl and --json: --jsonl prints one JSON document per line"),
        (["--picture"], "--jsonl and --picture:"),
    ],
)
def test_options_that_would_be_ignored_are_refused(args: list[str], says: str) -> None:
    result = invoke("--jsonl", "-", *args, input='{"shape": [10, 16]}\n')
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"mha-explain: error: {result.stderr.split('error: ', 1)[1]}"
    assert says in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    result = invoke("--jsonl", str(tmp_path / "missing.jsonl"), input="")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("cannot read it: No such file or directory")
    assert invoke("--num-heads", "2", input="").stderr.startswith(
        "mha-explain: error: Missing option '--shape'"
    )


def test_each_answer_is_written_before_the_next_line_is_read() -> None:
    """A pipe shows progress: the first answer arrives while stdin is still open."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mha_cli", "--jsonl", "-", "--no-run", "--get", "shapes.output"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write('{"shape": [10, 16]}\n')
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "no answer within 30 s while the input stayed open"
        assert process.stdout.readline() == "None,10,16\n"
        process.stdin.write('{"shape": [4, 6]}\n')
        process.stdin.close()
        assert process.stdout.read() == "None,4,6\n"
        assert process.wait(30) == 0
    finally:
        process.kill()


# --- Against the real layer ------------------------------------------------------


@pytest.mark.keras
def test_each_answer_is_the_document_explain_json_prints() -> None:
    import keras
    import numpy as np

    configs = [
        (["--shape", "10,16", "--axes", "1"], {"shape": [10, 16], "axes": 1}),
        (["--shape", "8,8,4", "--num-heads", "1"], {"shape": [8, 8, 4], "num_heads": 1}),
        (
            ["--shape", "8,16", "--value-shape", "4,16", "--causal"],
            {"shape": [8, 16], "value_shape": [4, 16], "causal": True},
        ),
    ]
    text = "".join(json.dumps(line) + "\n" for _, line in configs)
    result = invoke("--jsonl", "-", input=text)
    assert result.exit_code == 0, result.output
    answers = lines_of(result.stdout)
    for number, ((args, line), answer) in enumerate(zip(configs, answers, strict=True), start=1):
        alone = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "120"})
        # explain --json's document, and which input line it answers.
        assert (answer.pop("line"), answer.pop("name")) == (number, None)
        assert masked_document(answer) == masked_document(json.loads(alone.stdout))
        # ... and the scores shape is the real layer's, built here.
        heads, axes = line.get("num_heads", 2), line.get("axes")
        layer = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=8, attention_axes=axes)
        query = np.ones((2, *line["shape"]), "float32")
        value = np.ones((2, *line.get("value_shape", line["shape"])), "float32")
        _, scores = layer(query, value, return_attention_scores=True)
        assert answer["shapes"]["attention_scores"][1:] == list(scores.shape[1:])
        assert all(check["status"] != "failed" for check in answer["checks"].values())


@pytest.mark.keras
def test_a_failed_check_is_exit_1_and_the_rest_go_on() -> None:
    # key_dim 1 and 2 heads over 2 positions: Keras's TF bias-add bug (see test_cli).
    text = '{"shape": [2, 8], "key_dim": 1}\n{"shape": [10, 16]}\n'
    result = invoke("--jsonl", "-", input=text)
    assert result.exit_code == 1, result.output
    first, second = lines_of(result.stdout)
    assert first["checks"]["numpy_reference"]["passed"] is False
    assert second["checks"]["numpy_reference"]["passed"] is True
    assert "--jsonl stdin:1: check failed: numpy_reference" in result.stderr
    worse = invoke("--jsonl", "-", input=text + "oops\n")
    assert worse.exit_code == 2  # a bad line outranks a failed check


def test_each_answer_names_its_input_line() -> None:
    lines = '{"shape": [10, 16], "name": "first"}\n\n{"shape": [8, 16]}\n'
    result = runner.invoke(app, ["--jsonl", "-", "--no-run"], input=lines)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["line"], a["name"]) for a in answers] == [(1, "first"), (3, None)]
    assert answers[1]["inputs"]["query"] == [None, 8, 16]
