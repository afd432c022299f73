"""Hostile input: malformed command lines and case files, fuzzed parsers, interrupts.

Every mistake is exit 2 with one specific line on stderr, no traceback and no
file written; no input makes anything but our own error types escape.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.cases import CaseFileError, parse
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import parse_axes, parse_bytes, parse_mask_shape, parse_position, parse_shape

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

COMMAND_LINES = [
    (["--shape", "1e3,4"], "'1e3' is not a size"),
    (["--shape", "99999999999999999999,4"], "too large"),
    (["--shape", "-4,8"], "size -4 is not positive"),
    (["--shape", "٣,٤"], "is not a size"),
    (["--shape", "8,16", "--num-heads", "10000000000000"], "too large"),
    (["--shape", "8,16", "--axes", "1,1"], "axis 1 is given twice"),
    (["--shape", "8,16", "--axes", "[1,2)"], "unbalanced '['"),
    (["--shape", "8,16", "--axes", "1,,2"], "'' is not an axis"),
    (["--shape", "8,16", "--axes", "__import__('os')"], "is not an axis"),
    (["--shape", "8,16", "--max-memory", "lots"], "--max-memory"),
    (["--shape", "8,16", "--output-shape", "0"], "size 0 is not positive"),
    (["--shape", "8,16", "--batch", "0"], "must be >= 1"),
    (["--shape", "8,16", "--seed", "-1"], "must be >= 0"),
    (["--shape", "8,16", "--axis-names", "a b"], "is not a name"),
    (["--shape", "8,16", "--axis-names", "feature"], "'feature' is reserved"),
    (["--shape", "8,16", "--dtype", ""], "--dtype '': not one of"),
    (["--shape", "8,16", "--get", "shapes.nope", "--no-run"], "no 'nope' in shapes"),
    (["--shape", "8,16", "--at", "-1"], "--at"),
    (["compare", "--shape", "8,16", "--axes", "1"], "give two or more"),
    (["check"], "Missing argument"),
    (["record", "--update"], "Missing argument"),
]


@pytest.mark.parametrize(("args", "message"), COMMAND_LINES)
def test_malformed_command_lines_are_one_line_with_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("mha-explain: error: ") and message in line, line


CASE_FILES = [
    ("empty.mha.toml", b"", "no cases"),
    ("comments.mha.toml", b"# only a comment\n", "no cases"),
    ("binary.mha.toml", bytes(range(256)), "cannot read it"),
    ("latin1.mha.toml", '[[case]]\nname = "é"\n'.encode("latin-1"), "cannot read it"),
    (
        "types.mha.toml",
        b'[[case]]\nname = "a"\nshape = "32,64"\n',
        "shape: expected a list of positive sizes",
    ),
    ("huge.mha.toml", b'[[case]]\nname = "a"\nshape = [99999999999999999, 4]\n', "too large"),
    ("negative.mha.toml", b'[[case]]\nname = "a"\nshape = [-3, 4]\n', "size -3 is not positive"),
    ("float.mha.toml", b'[[case]]\nname = "a"\nshape = [3.5, 4]\n', "expected an integer"),
    ("heads.mha.toml", b'[[case]]\nname = "a"\nshape = [8, 16]\nnum_heads = 0\n', "num_heads 0"),
    ("dupaxes.mha.toml", b'[[case]]\nname = "a"\nshape = [8, 8, 16]\naxes = [1, -3]\n', "given twice"),
    ("unknown.mha.toml", b'[[case]]\nname = "a"\nshape = [8, 16]\nheads = 2\n', "unknown key 'heads'"),
    ("array.mha.json", b"[1, 2, 3]", "the top level must be a table"),
    ("null.mha.json", b'{"case": [{"name": "a", "shape": null}]}', "shape: expected"),
    ("nested.mha.json", b'{"case": [{"name": "a", "shape": [[8], 16]}]}', "expected an integer"),
    ("cases.mha.json", b'{"case": {"name": "a"}}', "cases are [[case]] tables"),
    (
        "recorded.mha.toml",
        b'recorded = 3\n[[case]]\nname = "a"\nshape = [8, 16]\n',
        "[recorded] is written by",
    ),
    ("notes.txt", b"whatever", "ends in .toml or .json"),
]


@pytest.mark.parametrize(("name", "content", "message"), CASE_FILES, ids=[name for name, _, _ in CASE_FILES])
@pytest.mark.parametrize("command", ["check", "record"])
def test_malformed_case_files_are_exit_2_and_never_written(
    tmp_path: Path, command: str, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("mha-explain: error: ") and message in line, line
    assert "Traceback" not in result.output
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == [name]


def test_the_matrix_is_at_least_40_cases() -> None:
    assert len(COMMAND_LINES) + len(CASE_FILES) + 26 >= 40  # 26: tests/test_cli.py's BAD_INPUT


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_the_parsers_raise_only_config_error(text: str) -> None:
    for parser in (parse_shape, parse_axes, parse_bytes, parse_mask_shape, parse_position):
        with contextlib.suppress(ConfigError):
            parser("--option", text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
case_like = st.fixed_dictionaries(
    {},
    optional={
        "defaults": st.dictionaries(st.sampled_from(["num_heads", "key_dim", "axes", "shape"]), json_values),
        "case": st.lists(
            st.dictionaries(
                st.sampled_from(
                    ["name", "shape", "axes", "num_heads", "value_shape", "expect", "mask_shape"]
                ),
                json_values,
            ),
            max_size=3,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), case_like.map(json.dumps)), st.sampled_from(["toml", "json"]))
def test_case_file_loading_raises_only_case_file_error(text: str, fmt: str) -> None:
    with contextlib.suppress(CaseFileError):
        parse(Path(f"fuzz.mha.{fmt}"), text, fmt)


def test_no_user_text_is_evaluated() -> None:
    paths = sorted((ROOT / "mha_cli").rglob("*.py"))
    assert len(paths) > 30  # every layer's modules, not just the package's top level
    for path in paths:
        source = path.read_text(encoding="utf-8")
        for banned in ("eval(", "literal_eval", "exec("):
            assert banned not in source, f"{path.name} uses {banned}"


@pytest.mark.keras
def test_ctrl_c_during_a_forward_pass_exits_130_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import mha_cli.runtime.keras_adapter

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mha_cli.runtime.keras_adapter, "_run", interrupted)
    result = runner.invoke(app, ["--shape", "8,16"])
    assert result.exit_code == 130
    assert result.stderr == "mha-explain: interrupted\n"


_RUN = [sys.executable, "-m", "mha_cli", "--shape", "8,16"]


@pytest.fixture(scope="module")
def answer_seconds() -> float:
    """How long the interrupted command takes here to start printing its answer (the faster of two runs).

    TensorFlow's import is most of it, and takes 2 to 5 s depending on the
    machine and on which backends are installed: fixed delays missed the run.
    """
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        process = subprocess.Popen(_RUN, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        assert process.stdout is not None
        process.stdout.read(1)
        seconds.append(time.perf_counter() - started)
        process.communicate(timeout=120)
        assert process.returncode == 0
    return min(seconds)


@pytest.mark.parametrize("fraction", [0.25, 0.7])
def test_a_real_sigint_exits_130_without_a_traceback(fraction: float, answer_seconds: float) -> None:
    """SIGINT early in TensorFlow's import, and late in the run.

    Ctrl-C inside TensorFlow's import crashed it (a segfault, "initialization
    failed"); now it ends the process there at once, nothing having been written
    (it was held back to the import's end: 3.3-3.9 s late, measured), and in the
    run keras_adapter holds it back until those calls return.
    A run here can be faster than the measured one, so a signal that arrives
    once the answer is out (where it is ignored by design, exit 0) is sent
    again, earlier, in a new run.
    """
    for attempt in range(3):
        delay = fraction * answer_seconds * 0.75**attempt
        process = subprocess.Popen(
            _RUN,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            # As from a shell: SIGINT at its default, whatever this test process has done with it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        if process.returncode == 0 and stdout:
            continue  # the answer was out before the signal came
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] == "mha-explain: interrupted"
        return
    pytest.fail(f"3 runs answered before their SIGINT, the last sent {delay:.2f} s after its start")
