"""What a newcomer meets first: bare mha-explain, --help's sections, completion, a repeated option."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

runner = CliRunner()


def test_bare_mha_explain_prints_a_short_usage_with_three_examples() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert result.stdout == ""
    examples = [line for line in result.stderr.splitlines() if line.startswith("  mha-explain ")]
    assert len(examples) == 3
    assert len(result.stderr.splitlines()) <= 12


def test_explain_help_groups_its_options() -> None:
    text = runner.invoke(app, ["explain", "--help"], env={"COLUMNS": "100"}).stdout
    headings = [
        line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")
    ]
    assert headings == ["The layer:", "The inputs and masks:", "The run:", "The output:", "Options:"]
    sections = text.split("\n\n")
    layer = next(section for section in sections if section.startswith("The layer:"))
    assert "--num-heads" in layer and "--axes" in layer and "--shape" not in layer


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            "mha-explain ",
            {
                "explain",
                "compare",
                "check",
                "record",
                "scan",
                "vectors",
                "map",
                "targets",
                "why",
            },
        ),
        ("mha-explain --shape 8,16 --backend ", {"tensorflow", "jax", "torch", "numpy", "all"}),
        ("mha-explain explain --dtype f", {"float32", "float64", "float16"}),
        ("mha-explain compare --backend t", {"tensorflow", "torch"}),
    ],
)
def test_shell_completion_through_its_environment_variables(words: str, expected: set[str]) -> None:
    """As bash's completion script asks: _MHA_EXPLAIN_COMPLETE, COMP_WORDS and COMP_CWORD."""
    env = {
        **os.environ,
        "_MHA_EXPLAIN_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    script = "import sys; sys.argv[0] = 'mha-explain'; from mha_cli.cli.app import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert set(done.stdout.split()) == expected, done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--shape", "8,16", "--axes", "1", "--axes", "2"],
            "--axes: given 2 times (1, 2); give it once; to put several side by side, use "
            "mha-explain compare --axes 1 --axes 2",
        ),
        (["--shape", "8,16", "--shape", "4,16"], "--shape: given 2 times (8,16, 4,16); give it once"),
        (
            ["check", "examples", "--backend", "jax", "--backend=torch"],
            "--backend: given 2 times (jax, torch)",
        ),
    ],
)
def test_a_single_valued_option_given_twice_is_an_error(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"mha-explain: error: {message}") and result.stderr.count("\n") == 1


def test_compare_still_takes_axes_several_times() -> None:
    result = runner.invoke(app, ["compare", "--shape", "8,16", "--axes", "1", "--axes", "none", "--no-run"])
    assert result.exit_code == 0, result.output
