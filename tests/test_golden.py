"""Golden files: the tables people read and the JSON scripts read, in full, reviewed like code.

Each case runs one command (the real layer where it executes) at a fixed width
and compares its stdout with ``tests/golden/<name>.out`` (tables) or
``tests/golden/<name>.json`` (the JSON contract). What legitimately varies
between runs and Keras releases (the Keras and tool versions, max |diff|
figures, durations) is masked first. After a deliberate change to the output,
rewrite them with ``pytest tests/test_golden.py --update-golden`` and review
the diff.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

GOLDEN = Path(__file__).resolve().parent / "golden"
README_FILES = GOLDEN.parent / "readme_files"
ROOT = GOLDEN.parent.parent

#: name -> (command, needs the real layer)
CASES: dict[str, tuple[list[str], bool]] = {
    "explain-forum-no-run": (["--shape", "32,64,4", "--axes", "1", "--no-run"], False),
    "explain-forum": (["--shape", "32,64,4", "--axes", "1"], True),
    "explain-cross-attention-causal-mask": (
        ["--shape", "8,16", "--value-shape", "4,16", "--causal", "--mask-shape", "None,8,4"],
        True,
    ),
    "explain-image-picture": (["--shape", "6,6,4", "--axes", "1", "--at", "2,3", "--num-heads", "1"], True),
    "explain-memory-guard-verify-small": (["--shape", "224,224,3", "--verify-small"], True),
    "explain-gate-output-shape": (
        ["--shape", "5,6", "--gate", "--output-shape", "3,2", "--no-bias", "--no-run"],
        False,
    ),
    # GroupQueryAttention, the example: the grouping, the repeat and the cache.
    "explain-gqa-no-run": (
        ["--layer", "gqa", "--shape", "10,64", "--num-query-heads", "8", "--num-key-value-heads", "2",
         "--head-dim", "8", "--no-run"],
        False,
    ),
    # Cross-attention of another width, masked and causal: Keras's symbolic call refuses what it runs.
    "explain-gqa-cross-masked-causal": (
        ["--layer", "gqa", "--shape", "6,16", "--value-shape", "4,12", "--num-query-heads", "6",
         "--num-key-value-heads", "3", "--mask-shape", "None,6,4", "--causal", "--verbose"],
        True,
    ),
    # Seed 002's Attention and AdditiveAttention explained: the list call, masks as a list, the formula.
    "explain-additive-cross-masked-causal": (
        ["--layer", "additive", "--shape", "5,4", "--value-shape", "7,6", "--key-shape", "7,4",
         "--query-mask", "--value-mask", "--causal", "--width", "80"],
        True,
    ),
    "compare-three-attentions": (
        ["compare", "--layer", "dot", "--shape", "8,16", "--use-scale", "--value-mask", "--width", "80"], True
    ),
    "compare-image-axes": (
        ["compare", "--shape", "32,64,4", "--axes", "1", "--axes", "2", "--axes", "none"],
        True,
    ),
    "compare-forum-image-axes-all-run": (
        ["compare", "--shape", "32,64,4", "--axes", "all", "--run", "--width", "80"],
        True,
    ),
    "compare-rank-5-axes-all": (["compare", "--shape", "4,1,6,8", "--axes", "all", "--width", "80"], False),
    "check-examples": (["check", "examples/cross_attention.mha.toml"], True),  # run from the repository
    # Seed 002's two layers beside MultiHeadAttention: one explained, two listed as not explained.
    "scan-three-attentions": (
        ["scan", "--build", "tests.scan_models:plain_attentions", "--layer", "dot"], True
    ),
    # What a porter reads: the formulas (pure, no Keras, no torch) and the script they run.
    "map-to-torch-cross-masked": (
        ["map", "--to", "torch", "--shape", "6,8", "--value-shape", "9,5", "--num-heads", "2", "--mask-shape",
         "None,6,9", "--width", "80"],
        False,
    ),
    "map-to-linear-code": (
        ["map", "--to", "linear", "--shape", "5,8", "--value-shape", "7,6", "--num-heads", "3",
         "--key-dim", "2", "--value-dim", "5", "--output-shape", "9", "--causal", "--code"],
        False,
    ),
}  # fmt: skip

_VOLATILE = [
    (re.compile(r"\b\d+\.\d+\.\d+\b"), "X.Y.Z"),  # Keras's version, also alone in a table column
    (re.compile(r"\d\.\de[+-]\d\d"), "#.#e-##"),  # max |diff| figures: rounding differs by release
    (re.compile(r"\d+\.\d s\)"), "#.# s)"),  # check's duration
    (re.compile(r"^note: expectations recorded with Keras .*\n", re.M), ""),  # depends on the Keras here
    (re.compile(r"[ \t]+$", re.M), ""),  # rich pads lines to the width
]


def masked(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def render(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return masked(result.stdout)


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=[pytest.mark.keras] if keras else []) for name, (_, keras) in CASES.items()],
)
def test_output_matches_its_golden_file(
    name: str, update_golden: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    args, _ = CASES[name]
    path = GOLDEN / f"{name}.out"
    rendered = f"$ mha-explain {' '.join(args)}\n{render(args)}"
    compare_with_golden(path, rendered, update_golden)


def compare_with_golden(path: Path, rendered: str, update_golden: bool) -> None:
    """Fail with a unified diff where ``rendered`` differs from ``path`` (or rewrite it)."""
    if update_golden:
        path.write_text(rendered, encoding="utf-8")
        return
    assert path.exists(), f"no {path.name}: run pytest {__file__} --update-golden"
    golden = path.read_text(encoding="utf-8")
    if rendered != golden:
        diff = "".join(
            difflib.unified_diff(
                golden.splitlines(keepends=True), rendered.splitlines(keepends=True), "golden", "now"
            )
        )
        pytest.fail(f"{path.name} differs (review, then --update-golden):\n{diff}", pytrace=False)


#: name -> (command, needs the real layer): JSON documents, the contract with scripts.
JSON_CASES: dict[str, tuple[list[str], bool]] = {
    "explain-forum-image-no-run": (["--shape", "32,64,4", "--no-run", "--json"], False),
    "explain-forum-image-axes-1-no-run": (["--shape", "32,64,4", "--axes", "1", "--no-run", "--json"], False),
    "explain-forum-sentence-no-run": (["--shape", "10,16", "--axes", "1", "--no-run", "--json"], False),
    "explain-gqa-no-run": (
        [
            *("--layer", "gqa", "--shape", "10,64", "--num-query-heads", "8", "--num-key-value-heads", "2"),
            *("--no-run", "--json"),
        ],
        False,
    ),
    "explain-dot-concat-no-run": (
        [
            "--layer",
            "dot",
            "--score-mode",
            "concat",
            "--use-scale",
            "--shape",
            "6,8",
            "--value-shape",
            "9,5",
            "--key-shape",
            "9,8",
            "--value-mask",
            "--causal",
            "--no-run",
            "--json",
        ],
        False,
    ),
    "compare-forum-image-axes-all-run": (
        ["compare", "--shape", "32,64,4", "--axes", "all", "--run", "--json"],
        True,
    ),
    "check-examples": (["check", "examples/cross_attention.mha.toml", "--json"], True),
}

#: Keys whose values vary between runs, machines or releases: masked wherever they appear
#: (null stays null: no Keras ran).
_VOLATILE_KEYS = frozenset({"keras_version", "tool_version", "seconds"})
#: Masked even when null: version_note is null only when the Keras here is the one that recorded.
_ALWAYS_MASKED = frozenset({"version_note"})


def masked_document(value: Any, key: str = "") -> Any:
    """The document with every volatile value replaced by "<masked>" (its keys and layout kept)."""
    if isinstance(value, dict):
        return {k: masked_document(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_document(item, key) for item in value]
    if key in _ALWAYS_MASKED or (value is not None and (key in _VOLATILE_KEYS or "max_abs_diff" in key)):
        return "<masked>"
    return value


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.keras] if keras else [])
        for name, (_, keras) in JSON_CASES.items()
    ],
)
def test_json_matches_its_golden_file(
    name: str, update_golden: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    args, _ = JSON_CASES[name]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    rendered = json.dumps(masked_document(json.loads(result.stdout)), indent=2) + "\n"
    compare_with_golden(GOLDEN / f"{name}.json", rendered, update_golden)


def test_every_golden_file_has_a_case() -> None:
    assert sorted(path.stem for path in GOLDEN.glob("*.out")) == sorted(CASES)
    assert sorted(path.stem for path in GOLDEN.glob("*.json")) == sorted(JSON_CASES)


@pytest.mark.keras
def test_the_readme_transcript_is_real_output() -> None:
    """The README's transcript is the headline of the golden explain-forum output (--brief, width 100)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"A real transcript \(`mha-explain (.*?)`.*?```text\n(.*?)```", readme, re.S)
    assert found is not None
    command, transcript = found.groups()
    assert command.split() == [*CASES["explain-forum"][0], "--brief"]
    shown = CliRunner().invoke(app, command.split(), env={"COLUMNS": "100", "NO_COLOR": "1"}).stdout
    assert masked(transcript) == masked(shown)


#: What people read: the README and every page of docs/.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _readme_examples() -> list[tuple[str, str, str]]:
    """(file:line, command, expected output) of every console block in the docs that runs mha-explain."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in re.finditer(r"```console\n\$ mha-explain ([^\n]*)\n(.*?)```", text, re.S):
            where = f"{document.relative_to(ROOT)}:{text.count(chr(10), 0, block.start()) + 1}"
            found.append((where, block.group(1), block.group(2)))
    return found


def _words(text: str) -> str:
    """The words of ``text``, masked; a table's rule is as long as the table is wide, so any length."""
    return " ".join(re.sub("─+", "─", masked(text)).split())


@pytest.mark.keras
@pytest.mark.parametrize(("line", "command", "shown"), _readme_examples(), ids=lambda value: str(value)[:40])
def test_each_readme_example_shows_real_output(
    line: str, command: str, shown: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every README example, run: its lines appear in the real output in order ("..." skips lines).

    Compared word by word, so a block may be wrapped at any width; wide enough
    here (200) that no table cell wraps.
    """
    from mha_cli.operations.backends import installed
    from tests.keras_features import ADDED_IN, keras_supports

    args = command.split()
    if "all" in args and not all(installed(backend) for backend in ("jax", "torch")):
        pytest.skip("the --backend all example needs every backend (CI installs them)")
    if "--keras" in args and importlib.util.find_spec("tf_keras") is None:
        pytest.skip("--keras 2 needs tf-keras: pip install 'mha-explain[keras2]' (CI installs it)")
    if any(arg.endswith("_backbone") for arg in args) and importlib.util.find_spec("keras_hub") is None:
        pytest.skip("the KerasHub example needs keras-hub: pip install 'mha-explain[hub]' (CI installs it)")
    if args[0] == "map" and "--check" in args and importlib.util.find_spec("torch") is None:
        pytest.skip("map --check runs PyTorch: pip install 'mha-explain[torch]' (CI installs it)")
    for argument, option in (("use_gate", "--gate"), ("sliding_window", "--sliding-window")):
        if option in args and not keras_supports(argument):
            pytest.skip(f"{option} needs Keras >= {ADDED_IN[argument]}")
    if "gqa" in args and not keras_supports("sliding_window", "GroupQueryAttention"):
        pytest.skip(
            "docs/gqa.md shows Keras 3.15: before it keras.Input returns no GroupQueryAttention scores"
        )
    # The files examples run are the repository's (examples/), or tests/readme_files/ for the
    # ones the README shows only by their output.
    shown_only = [arg for arg in args if arg.endswith(".toml") and not (ROOT / arg).exists()]
    monkeypatch.chdir(README_FILES if shown_only else ROOT)
    # What an example writes goes to a temporary directory, not into the repository.
    args = [
        str(tmp_path / arg) if index and args[index - 1] in {"--out", "--vectors"} else arg
        for index, arg in enumerate(args)
    ]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    real = _words(result.stdout + result.stderr)
    position = 0
    for part in re.split(r"^\.\.\.\n", shown, flags=re.M):
        expected = _words(part)
        found = real.find(expected, position)
        assert found >= 0, f"{line}: `mha-explain {command}` no longer prints:\n{part}"
        position = found + len(expected)


@pytest.mark.keras
def test_the_readme_library_example_runs() -> None:
    """The library example (docs/development.md): its imports are the public paths, and its comments are
    what it gives."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", page, re.S)
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/development.md", "exec"), namespace)
    d = namespace["d"]
    assert d.shapes["attention_scores"].shape == (None, 64, 2, 32, 32)
    assert d.equations["dot_product"] == "afcde,abcde->acdbf"


@pytest.mark.keras
def test_the_api_page_example_runs_and_says_what_it_gives() -> None:
    """docs/api.md's example, run as written: each value its comments name is what it gives."""
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    block = re.findall(r"```python\n(.*?)```", page, re.S)[0]  # the first; clarify()'s is a sketch
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/api.md", "exec"), namespace)
    result = namespace["result"]
    assert result.get("shapes.attention_scores") == [None, 5, 2, 6, 6]
    assert result.failed == ()
    assert namespace["scanned"].get("calls.0.layer") == "attention"
    assert namespace["three"].get("layers.dot.shapes.attention_scores") == [None, 8, 8]
