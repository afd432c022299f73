"""The command line: exit codes, one-line errors, JSON, clean streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.core.mha import derive
from scripts.readme_help import COMMANDS, current_help, readme_help

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
FORUM = ["--shape", "32,64,4", "--num-heads", "2", "--key-dim", "128"]


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"COLUMNS": "120"})


BAD_INPUT = [
    (["--shape", "32,x"], "--shape 32,x: 'x' is not a size; sizes are positive integers"),
    (["--shape", ""], "--shape '': empty shape"),
    (["--shape", "32,0,4"], "size 0 is not positive"),
    (["--shape", "None,32,64,4"], "leave out the batch axis (None); write 32,64,4"),
    (["--shape", "16"], "--shape 16: rank 2 with the batch axis; MultiHeadAttention needs rank >= 3"),
    (
        ["--shape", "32,64,4", "--axes", "4"],
        "--axes 4: axis 4 is the key_dim axis of the projected query (batch, ..., heads, key_dim); the real "
        "layer fails on it (its einsum would repeat a letter); attention axes are 1..2 (or -3..-2)",
    ),
    (["--shape", "32,64,4", "--axes", "0"], "--axes 0: axis 0 is the batch axis"),
    (["--shape", "32,64,4", "--axes", "7"], "axis 7 is out of range for a rank-4 input"),
    (["--shape", "32,64,4", "--axes", "(1, -3)"], "--axes '(1, -3)': axis -3 is given twice (as axis 1)"),
    (["--shape", "32,64,4", "--axes", "x"], "'x' is not an axis"),
    (["--shape", "8,16", "--value-shape", "4,4,16"], "rank 4 differs from the query's rank 3"),
    (
        ["--shape", "8,16", "--value-shape", "4,16", "--key-shape", "5,16"],
        "key and value must agree on every axis but the last",
    ),
    (["--shape", "8,16", "--num-heads", "0"], "--num-heads 0: must be >= 1"),
    (["--shape", "8,16", "--key-dim", "-3"], "--key-dim -3: must be >= 1"),
    (["--shape", "8,16", "--key-dim", "٣"], "not an integer"),
    (["--shape", "8,16", "--dtype", "int8"], "--dtype int8: not one of float32, float64, float16, bfloat16"),
    (["--shape", "8,16", "--backend", "mxnet"], "--backend mxnet: not one of tensorflow, jax, torch, numpy"),
    (["--shape", "8,16", "--dropout", "1.5"], "--dropout 1.5: a dropout rate must be in [0, 1)"),
    (["--shape", "8,16", "--json", "--get", "params"], "--json and --get: each prints the whole answer"),
    (
        ["--shape", "8,16", "--code", "--json"],
        "--json and --code: each prints the whole answer in its own form",
    ),
    (["--shape", "8,16", "--frobnicate"], "No such option: --frobnicate"),
    (
        ["--shape", "10,16", "--mask-shape", "10,9"],
        "--mask-shape 10,9: after Keras inserts the missing axes the mask is (1, 1, 10, 9); "
        "its axis 3 has size 9 where the scores (None, 2, 10, 10) have 10 (seq_k)",
    ),
    (["--shape", "32,64,4", "--causal"], "--causal (1, 32, 32): Keras inserts missing mask axes at -5"),
    # The batch axis: the run's --batch (2) is not the heads (also 2); say which, and what works.
    (
        ["--shape", "32,64,4", "--axes", "1", "--mask-shape", "8,64,32,32"],
        "its axis 0 is the batch, 8 here, and this run's batch is 2 (--batch; the scores are "
        "(None, 64, 2, 32, 32)): write None or 1 there, or run with --batch 8",
    ),
    (
        ["--shape", "32,64,4", "--axes", "1", "--mask-shape", "64,32,32"],
        "so its first size lands on the batch axis; give the full shape (None, 64, 32, 32)",
    ),
    (["--shape", "10,16", "--mask-shape", "10,x"], "'x' is not a size"),
    (
        ["--shape", "10,16", "--sliding-window", "0"],
        "--sliding-window 0: must be >= 1",
    ),
    (["explain"], "Missing option '--shape'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_on_stderr_with_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mha-explain: error: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        # Refused by the option's converter, and by the core's derivation: one form, the value as typed.
        (["--shape", "32,64,4", "--axes", "x"], "--axes x: 'x' is not an axis"),
        (
            ["--shape", "32,64,4", "--axes", "4"],
            "--axes 4: axis 4 is the key_dim axis of the projected query",
        ),
        (
            ["--shape", "32,64,4", "--axes", "(4,)"],
            "--axes '(4,)': axis 4 is the key_dim axis of the projected",
        ),
        (["--shape", "32,0,4"], "--shape 32,0,4: size 0 is not positive"),
        (["--shape", "16"], "--shape 16: rank 2 with the batch axis"),
        # compare's --axes is given several times: the line names the one it is about, as resolved.
        (
            ["compare", "--shape", "32,64,4", "--axes", "1", "--axes", "4"],
            "--axes (4,): axis 4 is the key_dim axis",
        ),
    ],
)
def test_a_refused_value_is_one_form_of_line_whoever_refuses_it(args: list[str], line: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"mha-explain: error: {line}")
    assert "(see mha-explain" not in result.stderr  # the line says what is right; no pointer to --help


def test_help_and_version_are_instant_answers() -> None:
    assert invoke("--help").exit_code == 0
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("mha-explain 0.")


@pytest.mark.keras
def test_get_prints_forum_scores_in_shell_form() -> None:
    result = invoke(*FORUM, "--axes", "1", "--get", "shapes.attention_scores")
    assert result.exit_code == 0, result.output
    assert result.stdout == "None,64,2,32,32\n"
    assert (
        invoke(*FORUM, "--axes", "none", "--get", "shapes.attention_scores").stdout == "None,2,32,64,32,64\n"
    )
    assert (
        invoke(
            "--shape", "8,16", "--value-shape", "4,16", "--key-dim", "2", "--get", "equations.dot_product"
        ).stdout
        == "aecd,abcd->acbe\n"
    )


@pytest.mark.keras
def test_get_unknown_path_names_the_choices() -> None:
    result = invoke("--shape", "8,16", "--get", "shapes.nope")
    assert result.exit_code == 2
    assert "--get shapes.nope: no 'nope' in shapes; it has query_projected" in result.stderr


@pytest.mark.keras
def test_json_document_has_the_documented_keys() -> None:
    result = invoke(*FORUM, "--axes", "(1,)", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in (
        "schema_version",
        "keras_version",
        "backend",
        "config",
        "inputs",
        "axes",
        "shapes",
        "equations",
        "weights",
        "params",
        "checks",
        "labels",
        "einsums",
        "costs",
        "summary",
        "warnings",
        "defaults",
    ):
        assert key in doc
    assert doc["schema_version"] == 1
    assert doc["backend"] == "tensorflow"
    assert doc["inputs"]["query"] == [None, 32, 64, 4]
    assert doc["shapes"]["attention_scores"] == [None, 64, 2, 32, 32]
    assert doc["shapes"]["output"] == [None, 32, 64, 4]
    assert doc["equations"]["dot_product"] == "afcde,abcde->acdbf"
    assert [axis["role"] for axis in doc["axes"]] == ["batch", "attended", "free", "feature"]
    assert doc["params"] == 4868
    assert doc["checks"]["derivation"]["passed"] is True
    assert doc["checks"]["numpy_reference"]["passed"] is True
    assert doc["checks"]["keras_symbolic"]["agrees"] is False
    assert doc["checks"]["keras_symbolic"]["attention_scores"] == [None, 2, 32, 32]
    assert set(doc["defaults"]) == {"value_dim", "output_shape"}
    assert doc["einsums"]["dot_product"]["legend"]["f"] == {"axis": "height_k", "size": 32}


@pytest.mark.keras
def test_tables_show_every_section() -> None:
    result = invoke("--shape", "10,16", "--axes", "1")
    assert result.exit_code == 0, result.output
    for heading in ("Layer", "Axes", "Shapes", "Einsum equations", "Weights", "Summary", "Verification"):
        assert heading in result.stdout
    words = " ".join(result.stdout.split())  # rich wraps long lines
    assert "resolve to the same axes (1,)" in words
    assert "mha-explain default (Keras requires it)" in words


@pytest.mark.keras
def test_every_check_is_printed_whole() -> None:
    """A check's detail is its explanation: wrapped, never cropped to the width (--verbose: all of it)."""
    result = invoke("--shape", "32,64,4", "--axes", "1", "--verbose")
    words = " ".join(result.stdout.split())
    assert "the execution path)" in words  # the end of the derivation line
    assert "(tolerance 1e-04 for float32)" in words
    assert "are built for the wrong shape, so build them from the real one." in words


@pytest.mark.keras
def test_failed_check_exits_1_and_says_so() -> None:
    # key_dim 1 and 2 heads over 2 positions: Keras's TF bias-add bug.
    result = invoke("--shape", "2,8", "--key-dim", "1", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["checks"]["numpy_reference"]["passed"] is False
    assert result.stderr.startswith("mha-explain: error: check failed: numpy_reference")


@pytest.mark.keras
def test_a_plain_call_that_computes_another_output_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras disagreeing with itself (fused path vs scores path) is reported, not our failure."""
    import mha_cli.runtime.keras_adapter

    observed = mha_cli.runtime.keras_adapter._observed_path

    def drifting(*args: object, **kwargs: object) -> tuple[str, object]:
        path, output = observed(*args, **kwargs)  # type: ignore[arg-type]
        return path, output + 0.01

    monkeypatch.setattr(mha_cli.runtime.keras_adapter, "_observed_path", drifting)
    result = invoke("--shape", "8,16", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    plain_call = doc["checks"]["plain_call"]
    assert plain_call["status"] == "warning"
    assert plain_call["path"] == "fused"
    assert plain_call["output_max_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    assert any("computes another output than the call with them" in line for line in doc["warnings"])


def test_no_run_skips_the_plain_call() -> None:
    result = invoke("--shape", "8,16", "--no-run", "--json")
    assert json.loads(result.stdout)["checks"]["plain_call"] == {
        "status": "skipped",
        "passed": None,
        "path": None,
        "output_max_abs_diff": None,
        "tolerance": 1e-4,
    }


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mha_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.keras
def test_real_process_keeps_tensorflow_noise_off_both_streams() -> None:
    done = run_cli("--shape", "8,16", "--value-shape", "4,16", "--json")
    assert done.returncode == 0
    assert done.stderr == ""
    assert json.loads(done.stdout)["shapes"]["attention_scores"] == [None, 2, 8, 4]
    table = run_cli("--shape", "8,16")
    assert table.returncode == 0
    assert table.stderr == ""
    assert "\x1b[" not in table.stdout  # piped: no colour codes


_LEAVING = """
import atexit, sys, types
class Teardown:
    def __del__(self):
        sys.stderr.write("torn down")
kept = Teardown()  # freed only by the interpreter's teardown
atexit.register(lambda: sys.stderr.write("atexit ran;"))
if {keras_loaded}:
    sys.modules["keras"] = types.ModuleType("keras")  # as after a forward pass
from mha_cli.cli.process import leave
sys.stdout.write("answer " * 100_000)  # more than any pipe buffer, and not yet flushed
leave({code})
"""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--shape", "8,16", "--no-run"], id="rich-table"),
        pytest.param(["--shape", "8,16", "--json"], id="json-after-a-forward-pass", marks=pytest.mark.keras),
    ],
)
def test_a_reader_that_goes_away_gets_141_not_the_failed_check_code(args: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mha_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    process.stdout.close()  # as `| head` does once it has its lines; here before the first
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 141
    assert stderr == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--shape", "8,16", "--no-run"], id="rich-table"),
        pytest.param(["--shape", "8,16", "--no-run", "--json"], id="json-left-in-the-buffer-until-exit"),
        pytest.param(["--shape", "8,16", "--json"], id="json-after-a-forward-pass", marks=pytest.mark.keras),
    ],
)
def test_a_full_disk_is_one_line_and_exit_3_not_a_traceback(args: list[str]) -> None:
    with open("/dev/full", "w") as full:  # every write fails: "No space left on device"
        done = subprocess.run(
            [sys.executable, "-m", "mha_cli", *args], stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
    assert done.returncode == 3
    assert done.stderr == "mha-explain: error: cannot write the answer to stdout: No space left on device\n"


def _run_python(probe: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("code", [0, 1, 3, 130])
def test_after_a_forward_pass_the_process_exits_without_teardown_but_loses_nothing(code: int) -> None:
    """TensorFlow's teardown takes about 1 s after the answer; leave() skips it, nothing else."""
    done = _run_python(_LEAVING.format(keras_loaded=True, code=code))
    assert done.returncode == code
    assert done.stdout == "answer " * 100_000
    assert done.stderr == "atexit ran;"


def test_without_a_backend_loaded_the_process_exits_as_python_does() -> None:
    done = _run_python(_LEAVING.format(keras_loaded=False, code=2))
    assert (done.returncode, done.stderr) == (2, "atexit ran;torn down")
    assert done.stdout == "answer " * 100_000


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["explain", "--help"],
        ["compare", "--help"],
        ["check", "--help"],
        ["--shape", "8,x"],
        ["--shape", "8,16", "--no-run", "--json"],
        ["compare", "--shape", "8,16", "--axes", "1", "--axes", "none", "--no-run", "--json"],
        ["compare", "--shape", "4,1,6,8", "--axes", "all"],
    ],
    ids=[
        "help",
        "explain-help",
        "compare-help",
        "check-help",
        "usage-error",
        "no-run",
        "compare-no-run",
        "compare-axes-all",
    ],
)
def test_instant_answers_import_no_backend(args: list[str]) -> None:
    probe = (
        "import sys\n"
        "from mha_cli.cli.app import main\n"
        f"sys.argv = ['mha-explain', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = _run_python(probe)
    # NumPy too: its import alone (~0.15 s here) would be half of the 0.3 s budget.
    assert "HEAVY []" in done.stderr


def test_the_core_imports_only_the_standard_library() -> None:
    probe = (
        "import sys, pkgutil, importlib, mha_cli.core\n"
        "for found in pkgutil.iter_modules(mha_cli.core.__path__):\n"
        "    importlib.import_module('mha_cli.core.' + found.name)\n"
        "print(sorted(m for m in ('numpy', 'keras', 'tensorflow', 'rich', 'typer') if m in sys.modules))"
    )
    done = _run_python(probe)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_help_reference_is_current(command: str) -> None:

    assert readme_help(command) == current_help(command), "run: python scripts/readme_help.py --write"


def test_explain_is_the_default_command() -> None:
    implicit = invoke("--shape", "8,16", "--no-run", "--json")
    explicit = invoke("explain", "--shape", "8,16", "--no-run", "--json")
    assert implicit.exit_code == explicit.exit_code == 0
    assert json.loads(implicit.stdout) == json.loads(explicit.stdout)


def test_a_mistyped_command_is_not_taken_for_explain() -> None:
    result = invoke("explian", "--shape", "8,16")
    assert result.exit_code == 2
    assert result.stderr.startswith("mha-explain: error: No such command 'explian'")


def test_no_run_answers_from_the_algebra_and_says_so() -> None:
    result = invoke(*FORUM, "--axes", "1", "--no-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["executed"] is False
    assert doc["keras_version"] is None
    assert doc["not_executed_reason"].startswith("--no-run")
    assert doc["shapes"]["attention_scores"] == [None, 64, 2, 32, 32]
    assert {check["status"] for check in doc["checks"].values()} == {"skipped"}
    table = invoke(*FORUM, "--axes", "1", "--no-run")
    assert "NOT EXECUTED" in table.stdout


@pytest.mark.keras
def test_memory_guard_skips_a_forward_pass_that_would_not_fit() -> None:
    # A 224x224 image attending over all axes: 50,176^2 scores per head and item.
    result = invoke("--shape", "224,224,3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["executed"] is False
    assert "above --max-memory 2.0 GiB" in doc["not_executed_reason"]
    assert doc["shapes"]["attention_scores"] == [None, 2, 224, 224, 224, 224]
    assert result.stderr == ""
    # The layer is still built: its equations, weights, axes and compute_output_shape are checked.
    assert doc["keras_version"] is not None
    checks = doc["checks"]
    assert (checks["derivation"]["status"], checks["numpy_reference"]["status"]) == ("passed", "skipped")
    assert checks["keras_symbolic"]["output"] == [None, 224, 224, 3]


def test_weights_too_big_to_build_are_answered_from_the_algebra_without_keras() -> None:
    # 8 heads x 128 x 10^6 features: about 4 x 10^9 weights, far above 2 GiB.
    probe = (
        "import sys, json\n"
        "from mha_cli.cli.app import main\n"
        "sys.argv = ['mha-explain', '--shape', '4,1000000', '--num-heads', '8', '--key-dim', '128',"
        " '--verify-small', '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('keras', 'tensorflow') if m in sys.modules)\n"
        "print('HEAVY', heavy, code, file=sys.stderr)\n"
    )
    done = _run_python(probe)
    assert done.stderr.strip() == "HEAVY [] 0"
    doc = json.loads(done.stdout)
    assert doc["executed"] is False
    assert doc["not_executed_reason"].startswith("the layer's 4,097,003,072 weights alone would need about")
    assert doc["params"] == 4 * (1_000_000 * 8 * 128) + 3 * 8 * 128 + 1_000_000  # kernels + biases
    assert doc["checks"]["reduced_run"]["status"] == "skipped"


def test_shell_form_is_unambiguous() -> None:
    """Review bug 11: a list of sentences with commas was joined with commas."""
    from mha_cli.output.documents import shell_form

    assert shell_form([None, 64, 2, 32, 32]) == "None,64,2,32,32"  # a shape: one line, commas
    assert shell_form(["a, b.", "c."]) == "a, b.\nc."  # words: one item per line
    assert shell_form(["line\nbreak", "x"]) == '["line\\nbreak","x"]'  # would be ambiguous: JSON
    assert shell_form(True) == "true" and shell_form(None) == "None" and shell_form([]) == ""
    summary = invoke("--shape", "10,16", "--no-run", "--get", "summary").stdout.splitlines()
    assert tuple(summary) == derive(MHAConfig((10, 16))).summary


def test_no_run_does_not_claim_what_the_backend_rejects() -> None:
    """Review bug 8: --no-run answered rank-11 multi-axis scores on TensorFlow, which the real run refuses."""
    args = ["--shape", "2,2,2,2,2,2,2", "--axes", "1,2,3", "--no-run"]
    refused = invoke(*args)
    assert refused.exit_code == 2
    assert "--axes 1,2,3: the attention scores would have rank 11; on TensorFlow" in refused.stderr
    assert invoke(*args, "--backend", "jax").exit_code == 0  # JAX takes it


def test_get_given_several_times_prints_one_value_per_line_in_order() -> None:
    """Issue 14: all but the last --get were silently dropped."""
    result = invoke(
        "--shape", "32,64,4", "--axes", "1", "--no-run", "--get", "params", "--get", "shapes.output"
    )
    assert result.exit_code == 0, result.output
    d = derive(MHAConfig((32, 64, 4), attention_axes=(1,)))
    assert result.stdout == f"{d.params}\nNone,32,64,4\n"
    wrong = invoke("--shape", "32,64,4", "--no-run", "--get", "params", "--get", "nope")
    assert wrong.exit_code == 2 and wrong.stdout == ""  # nothing printed when one path is wrong


def test_the_mask_shapes_the_batch_errors_suggest_are_accepted() -> None:
    for args in (["--mask-shape", "8,64,32,32", "--batch", "8"], ["--mask-shape", "None,64,32,32"]):
        result = invoke("--shape", "32,64,4", "--axes", "1", "--no-run", *args)
        assert result.exit_code == 0, result.output


def test_a_shape_with_a_likely_batch_in_front_gets_a_note_before_the_run() -> None:
    noted = invoke("--shape", "8,32,64,4", "--axes", "1", "--no-run")
    assert noted.exit_code == 0, noted.output
    assert noted.stderr.splitlines() == [
        "mha-explain: note: --shape leaves the batch axis out, so this query is (None, 8, 32, 64, 4), "
        "rank 5; if 8 is your batch, write --shape 32,64,4 (--batch 8 sets the run's batch)"
    ]
    assert invoke("--shape", "32,64,4", "--axes", "1", "--no-run").stderr == ""


def test_a_get_typo_is_found_before_the_run_and_shapes_lists_the_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mha_cli.runtime import keras_adapter  # no Keras until a layer runs

    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the forward pass ran")

    monkeypatch.setattr(keras_adapter, "run_layer", no_run)
    typo = invoke("--shape", "10,16", "--get", "shapes.atention_scores")
    assert typo.exit_code == 2 and typo.stdout == ""
    assert "no 'atention_scores' in shapes; it has query_projected" in typo.stderr
    assert "verified" not in typo.output
    shown = invoke(
        "--shape",
        "8,16",
        "--value-shape",
        "4,12",
        "--no-run",
        "--get",
        "shapes.query",
        "--get",
        "shapes.value",
    )
    assert shown.stdout.splitlines() == ["None,8,16", "None,4,12"]
