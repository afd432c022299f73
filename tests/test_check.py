"""check and record over case files, against the real layer (marked keras)."""

from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.cases import SHAPE_FIELDS, load
from mha_cli.core.config import MHAConfig
from mha_cli.core.mha import derive
from mha_cli.operations.check import CaseStatus, check_files
from mha_cli.operations.explain import explain
from mha_cli.operations.record import record_files
from mha_cli.runtime.keras_adapter import known_wrong_results, softmax_rank_limit
from tests.test_real_layer import configs

pytestmark = pytest.mark.keras

runner = CliRunner()

# Small configurations, so each case costs a few tens of milliseconds.
PINNED = """\
# attention shapes we rely on
[defaults]
num_heads = 2
key_dim = 4

[[case]]
name = "image-height-only"   # attention along axis 1 only
shape = [6, 5, 4]
axes = [1]

[case.expect]
output = [6, 5, 4]
attention_scores = [5, 2, 6, 6]
params = 156  # 3 x (4*2*4 + 2*4) + (2*4*4 + 4)

# cross-attention: 4 key positions
[[case]]
name = "cross"
shape = [8, 16]
value_shape = [4, 16]

[case.expect]
attention_scores = [2, 8, 4]
"""

UNPINNED = """\
# keep this comment
[[case]]
name = "sentence"  # a comment on the name
shape = [10, 16]
num_heads = 2

# the image case
[[case]]
name = "image"
shape = [6, 5, 4]
axes = [1]
"""


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_passing_file_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.mha.toml", PINNED)
    result = invoke("check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "2 case(s) in 1 file(s): 2 passed" in result.stdout


def test_a_differing_shape_exits_1_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "drift.mha.toml", PINNED.replace("[5, 2, 6, 6]", "[2, 6, 5, 6, 5]"))
    result = invoke("check", str(path), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    (failed,) = [case for case in report["cases"] if case["status"] == "failed"]
    assert failed["name"] == "image-height-only"
    assert failed["line"] == 6
    assert failed["mismatches"] == [
        {"field": "attention_scores", "expected": [2, 6, 5, 6, 5], "actual": [5, 2, 6, 6]}
    ]
    assert report["summary"] == {
        "files": 1,
        "cases": 2,
        "passed": 1,
        "failed": 1,
        "error": 0,
        "unrecorded": 0,
        "unreadable_files": 0,
        "seconds": report["summary"]["seconds"],
    }
    assert result.stderr.splitlines() == [
        f"mha-explain: error: 1 problem(s) in the cases checked; first: {path}:6: case 'image-height-only': "
        "attention_scores: expected (2, 6, 5, 6, 5), the real layer gives (5, 2, 6, 6)"
    ]


def test_an_invalid_file_exits_2_at_its_line_and_the_others_are_still_checked(tmp_path: Path) -> None:
    bad = write(tmp_path, "a-bad.mha.toml", '[[case]]\nname = "x"\nshape = [32, 64, 4]\naxes = [4]\n')
    broken = write(tmp_path, "b-broken.mha.toml", '[[case]]\nname = "y"\nshape = [8, 16\n')
    good = write(tmp_path, "c-good.mha.toml", PINNED)
    result = invoke("check", str(tmp_path), "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert [file["path"] for file in report["files"]] == [str(bad), str(broken), str(good)]
    assert report["files"][1]["error"].startswith(f"{broken}:3: not valid TOML")
    (invalid,) = [case for case in report["cases"] if case["status"] == "error"]
    assert (invalid["file"], invalid["line"], invalid["name"]) == (str(bad), 4, "x")
    assert invalid["error"].startswith("axes (4,): axis 4 is the key_dim axis")
    assert [case["status"] for case in report["cases"] if case["file"] == str(good)] == ["passed", "passed"]
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"mha-explain: error: 2 problem(s) in the cases checked; first: {broken}:3:")


def test_junit_xml_parses_and_counts_the_cases(tmp_path: Path) -> None:
    write(tmp_path, "a.mha.toml", PINNED.replace("params = 156", "params = 157"))
    write(tmp_path, "b.mha.toml", UNPINNED + '\n[[case]]\nname = "bad"\nshape = [8]\n')
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    result = invoke("check", str(tmp_path), "--junit", str(junit))
    assert result.exit_code == 2, result.output
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert {key: root.get(key) for key in ("tests", "failures", "errors", "skipped")} == {
        "tests": "5",
        "failures": "1",
        "errors": "1",
        "skipped": "2",
    }
    first, second = root.findall("testsuite")
    assert [case.get("name") for case in first.findall("testcase")] == ["image-height-only", "cross"]
    failure = first.find("testcase/failure")
    assert failure is not None
    assert failure.get("message") == "params: expected 157, the real layer gives 156"
    assert second.get("tests") == "3"
    error = second.find("testcase/error")
    assert error is not None and "rank 2 with the batch axis" in (error.get("message") or "")
    strict = invoke(
        "check", str(tmp_path / "b.mha.toml"), "-k", "sentence", "--strict", "--junit", str(junit)
    )
    assert strict.exit_code == 1
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_k_selects_cases_and_a_pattern_that_selects_none_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.mha.toml", PINNED)
    result = invoke("check", str(path), "-k", "CROSS", "--json")
    assert [case["name"] for case in json.loads(result.stdout)["cases"]] == ["cross"]
    result = invoke("check", str(path), "-k", "image-*", "--json")
    assert [case["name"] for case in json.loads(result.stdout)["cases"]] == ["image-height-only"]
    none = invoke("check", str(path), "-k", "video")
    assert none.exit_code == 2
    assert none.stderr == "mha-explain: error: -k 'video': matches none of the 2 cases in 1 file(s)\n"


def test_a_file_recorded_with_another_keras_says_so(tmp_path: Path) -> None:
    recorded = '\n[recorded]\nkeras_version = "3.0.0"\nbackend = "tensorflow"\ntool_version = "0.0.1"\n'
    path = write(tmp_path, "old.mha.toml", PINNED + recorded)
    result = invoke("check", str(path), "--json")
    assert result.exit_code == 0
    (file,) = json.loads(result.stdout)["files"]
    assert file["version_note"].startswith(
        "expectations recorded with Keras 3.0.0 on tensorflow; this run: Keras 3."
    )
    assert "note: expectations recorded with Keras 3.0.0" in invoke("check", str(path)).stdout


def test_record_fills_in_expect_blocks_and_keeps_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "new.mha.toml", UNPINNED)
    result = invoke("record", str(path))
    assert result.exit_code == 0, result.output
    text = path.read_text()
    for comment in ("# keep this comment", 'name = "sentence"  # a comment on the name', "# the image case"):
        assert comment in text
    # The comment that introduces the image case still sits right above it.
    assert '# the image case\n[[case]]\nname = "image"' in text
    assert text.index("[case.expect]") < text.index("# the image case")
    assert "[recorded]" in text and 'backend = "tensorflow"' in text
    checked = invoke("check", str(path), "--json")
    assert checked.exit_code == 0, checked.output
    assert [case["status"] for case in json.loads(checked.stdout)["cases"]] == ["passed", "passed"]
    again = path.read_text()
    assert invoke("record", str(path)).exit_code == 0
    assert path.read_text() == again  # nothing new to record: the file is not touched


def test_record_never_overwrites_without_update(tmp_path: Path) -> None:
    path = write(tmp_path, "pinned.mha.toml", PINNED.replace("params = 156", "params = 157  # by hand"))
    before = path.read_text()
    refused = invoke("record", str(path))
    assert refused.exit_code == 1
    assert path.read_text() == before
    assert "kept     image-height-only: params is 157 in the file, the real layer gives 156" in refused.stdout
    assert refused.stderr == (
        f"mha-explain: error: 1 problem(s) recording; first: {path}: case 'image-height-only': params is 157 "
        "in the file, the real layer gives 156; kept (--update replaces it)\n"
    )
    updated = invoke("record", str(path), "--update")
    assert updated.exit_code == 0, updated.output
    assert "replaced image-height-only: params 157 -> 156" in updated.stdout
    after = path.read_text()
    # Only the value changed (its comment kept); [recorded] was added at the end.
    assert after[: len(before)] == before.replace("params = 157  # by hand", "params = 156  # by hand")
    assert after[len(before) :].startswith("\n[recorded]")


def test_record_json_says_what_it_did_to_each_file(tmp_path: Path) -> None:
    pinned = write(tmp_path, "pinned.mha.toml", PINNED.replace("[5, 2, 6, 6]", "[5, 2, 6, 7]"))
    unpinned = write(tmp_path, "new.mha.toml", UNPINNED)
    before = {path: path.read_text() for path in (pinned, unpinned)}
    change = {
        "case": "image-height-only",
        "field": "attention_scores",
        "old": [5, 2, 6, 7],
        "new": [5, 2, 6, 6],
    }

    kept = invoke("record", str(pinned), str(unpinned), "--dry-run", "--json")
    doc = json.loads(kept.stdout)
    assert kept.exit_code == doc["exit_code"] == 1  # a differing expectation, kept
    assert (doc["dry_run"], doc["backend"], doc["schema_version"]) == (True, "tensorflow", 1)
    files = {Path(file["path"]): file for file in doc["files"]}
    assert files[pinned]["kept"] == [change]
    assert (files[pinned]["updated"], files[pinned]["unchanged"]) == ([], ["cross"])
    assert files[unpinned]["added"] == ["sentence", "image"]
    assert not any(file["written"] for file in doc["files"])
    assert {path: path.read_text() for path in before} == before

    done = invoke("record", str(pinned), str(unpinned), "--update", "--json")
    doc = json.loads(done.stdout)
    assert done.exit_code == doc["exit_code"] == 0, done.output
    files = {Path(file["path"]): file for file in doc["files"]}
    assert (files[pinned]["updated"], files[pinned]["kept"]) == ([change], [])
    assert all(file["written"] and file["error"] is None for file in doc["files"])
    assert "attention_scores = [5, 2, 6, 6]" in pinned.read_text()
    checked = invoke("check", str(pinned), str(unpinned), "--json")
    assert checked.exit_code == 0, checked.output
    assert {case["status"] for case in json.loads(checked.stdout)["cases"]} == {"passed"}


def test_an_interrupted_record_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mha_cli.operations.check

    path = write(tmp_path, "new.mha.toml", UNPINNED)
    before = path.read_bytes()
    real_explain = mha_cli.operations.check.explain
    calls = []

    def interrupted_on_second_case(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(mha_cli.operations.check, "explain", interrupted_on_second_case)
    result = invoke("record", str(path))
    assert result.exit_code == 130
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["new.mha.toml"]


def test_a_failed_write_leaves_the_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "new.mha.toml", UNPINNED)
    before = path.read_bytes()

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    result = invoke("record", str(path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"mha-explain: error: 1 problem(s) recording; first: {path}: cannot write it: "
        "No space left on device; it is unchanged\n"
    )
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["new.mha.toml"]


def test_record_json_files_keep_their_layout(tmp_path: Path) -> None:
    document = {"defaults": {"num_heads": 2}, "case": [{"name": "s", "shape": [10, 16]}]}
    path = write(tmp_path, "cases.mha.json", json.dumps(document, indent=4) + "\n")
    assert invoke("record", str(path)).exit_code == 0
    text = path.read_text()
    recorded = json.loads(text)
    assert list(recorded) == ["defaults", "case", "recorded"]
    assert recorded["case"][0]["expect"]["attention_scores"] == [2, 10, 10]
    assert text.startswith('{\n    "defaults"')
    assert invoke("check", str(path)).exit_code == 0


def test_record_does_not_record_a_case_the_layer_rejects(tmp_path: Path) -> None:
    path = write(
        tmp_path, "x.mha.toml", UNPINNED + '\n[[case]]\nname = "video"\nshape = [2, 3, 4, 8]\naxes = 9\n'
    )
    before = path.read_text()
    result = invoke("record", str(path), "--dry-run")
    assert result.exit_code == 2
    assert path.read_text() == before
    assert "would write: 2 new expect block(s)" in result.stdout
    assert f"{path}:16: case 'video': axes (9,): axis 9 is out of range" in result.stdout


def test_the_pytest_plugin_collects_one_item_per_case_and_fails_with_the_diff(
    pytester: pytest.Pytester,
) -> None:
    """Through the installed pytest11 entry point, as in a user's project."""
    pytester.makefile(".mha.toml", ok=PINNED)
    pytester.makefile(".mha.toml", drift=PINNED.replace("[2, 8, 4]", "[2, 8, 8]"))
    pytester.makefile(".mha.toml", new=UNPINNED, bad='[[case]]\nname = "b"\nshape = [8]\n')
    result = pytester.runpytest_inprocess("-rfs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "bad.mha.toml:3: case 'b': shape (8,): rank 2 with the batch axis*",
            "drift.mha.toml:17: case 'cross': attention_scores: expected (2, 8, 8), the real layer gives "
            "(2, 8, 4)",
            "FAILED bad.mha.toml::b - bad.mha.toml:3: case 'b': shape (8,)*",
            "FAILED drift.mha.toml::cross - drift.mha.toml:17: case 'cross': attention_sco*",
            "SKIPPED*no expect block: run mha-explain record*",
        ]
    )
    strict = pytester.runpytest_inprocess("new.mha.toml", "--mha-strict", "-p", "no:cacheprovider")
    strict.assert_outcomes(failed=2)
    # An unreadable file is a collection error at its line, as pytest reports any.
    pytester.makefile(".mha.toml", broken="[[case]\n")
    broken = pytester.runpytest_inprocess("broken.mha.toml", "-p", "no:cacheprovider")
    broken.assert_outcomes(errors=1)
    broken.stdout.fnmatch_lines(["*broken.mha.toml:1: not valid TOML: Expected ']]'*"])


def _case_document(config: MHAConfig) -> dict[str, object]:
    """A one-case file stating ``config`` with the case-file keys (what a user would write)."""
    case: dict[str, object] = {"name": "random", "shape": list(config.query_shape)}
    optional = {
        "value_shape": config.value_shape,
        "key_shape": config.key_shape,
        "num_heads": config.num_heads,
        "key_dim": config.key_dim,
        "value_dim": config.value_dim,
        "output_shape": config.output_shape,
    }
    case.update({key: list(v) if isinstance(v, tuple) else v for key, v in optional.items() if v is not None})
    case["axes"] = "none" if config.attention_axes is None else list(config.attention_axes)
    case.update(use_bias=config.use_bias, use_gate=config.use_gate, dtype=config.dtype)
    case.update(batch=config.batch, seed=config.seed)
    return {"case": [case]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs())
def test_record_then_check_round_trips_for_any_valid_configuration(tmp_path: Path, config: MHAConfig) -> None:
    """The file states the configuration exactly; record writes what the real layer produced; check passes."""
    derivation = derive(config)
    limit = softmax_rank_limit(config.dtype)
    single_axis_rank = (
        len(derivation.shapes["attention_scores"].shape) if len(config.attention_axes or ()) == 1 else 0
    )
    assume(
        limit is None or single_axis_rank <= limit
    )  # refused by name: test_tensorflow_onednn_softmax_limit
    assume(not known_wrong_results(derivation, "tensorflow"))  # not recorded: a verification fails
    path = tmp_path / "random.mha.toml"
    path.write_text(tomlkit.dumps(_case_document(config)))
    (case,) = load(path).cases
    assert case.config == config
    assert record_files([path], "tensorflow").exit_code() == 0
    (case,) = load(path).cases
    result = explain(config, "tensorflow")
    assert result.run is not None
    real = {name: list(shape[1:]) for name, shape in result.run.shapes.items()}  # Keras's, without batch
    params = sum(math.prod(shape) for shape in result.run.weights.values())  # Keras's variables
    assert case.expect == {**{name: real[name] for name in SHAPE_FIELDS if name in real}, "params": params}
    report = check_files([path], "tensorflow")
    assert [result.status for result in report.results] == [CaseStatus.PASSED]


def test_record_refuses_a_read_only_file(tmp_path: Path) -> None:
    path = write(tmp_path, "frozen.mha.toml", UNPINNED)
    path.chmod(0o444)
    result = invoke("record", str(path))
    assert result.exit_code == 2
    assert result.stderr.endswith(f"{path}: cannot write it: the file is read-only; it is unchanged\n")
    assert path.read_text() == UNPINNED


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_on_a_terminal_only() -> None:
    from mha_cli.output.check import progress_bar

    with progress_bar(io.StringIO()) as silent:
        assert silent is None
    terminal = _Terminal()
    with progress_bar(terminal) as advance:
        assert advance is not None
        advance(3, 200, "cases.mha.toml::image")
    assert "3/200" in terminal.getvalue()


def test_an_int_output_shape_is_checked_and_recorded_like_a_list(tmp_path: Path) -> None:
    """Review bug 1: ``output_shape = 5`` (an int, which case files allow) crashed check and record
    with a TypeError, so no other file was checked and --json wrote nothing."""
    as_int = write(tmp_path, "int.mha.toml", '[[case]]\nname = "int"\nshape = [8, 16]\noutput_shape = 5\n')
    write(tmp_path, "other.mha.toml", '[[case]]\nname = "other"\nshape = [8, 16]\n')
    recorded = runner.invoke(app, ["record", str(tmp_path)])
    assert recorded.exit_code == 0, recorded.output
    assert "output = [8, 5]" in as_int.read_text()
    checked = runner.invoke(app, ["check", str(tmp_path), "--json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert [case["status"] for case in report["cases"]] == ["passed", "passed"]
    (case,) = load(as_int).cases
    assert case.config.output_shape == (5,)  # as Keras takes output_shape=5: one output axis of 5


def test_a_mismatch_without_a_forward_pass_says_where_the_value_came_from(tmp_path: Path) -> None:
    """Review bug 10: with the memory guard, a mismatch said "the real layer gives"."""
    path = write(
        tmp_path,
        "big.mha.toml",
        '[[case]]\nname = "big"\nshape = [224, 224, 3]\n\n'
        "[case.expect]\nattention_scores = [2, 1, 1, 1, 1]\n",
    )
    result = runner.invoke(app, ["check", str(path), "--max-memory", "1MiB"])
    assert result.exit_code == 1, result.output
    assert (
        "the shape algebra (the memory guard skipped the run) gives (2, 224, 224, 224, 224)" in result.stderr
    )


@pytest.mark.keras
def test_the_pytest_plugin_keeps_the_frameworks_noise_out_of_a_users_report(
    pytester: pytest.Pytester,
) -> None:
    """In a project without this repository's filterwarnings: Keras's own DeprecationWarnings (numpy 2's
    __array__ copy keyword, 32 on these 4 cases) are not the user's business."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    pytester.makefile(".mha.toml", axes=(examples / "attention_axes.mha.toml").read_text(encoding="utf-8"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert "warnings" not in result.parseoutcomes(), result.stdout.str()


@pytest.mark.keras
def test_the_ci_recipe_in_the_docs_runs(tmp_path: Path) -> None:
    """docs/case-files.md's GitHub Actions job, step by step, in a project laid out as the job
    leaves it: this checkout at ./mha-explain, the user's case files in shapes/."""
    import re
    import shlex
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "case-files.md").read_text(encoding="utf-8")
    workflow = next(b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "attention-shapes.yml" in b)
    runs = re.findall(r"^\s+- run: (.+)$", workflow, re.M)
    assert runs == ["pip install ./mha-explain", "mha-explain check shapes/ --junit attention-shapes.xml"]
    (tmp_path / "mha-explain").symlink_to(root, target_is_directory=True)
    (tmp_path / "shapes").mkdir()
    for case_file in (root / "examples").glob("attention_axes.mha.toml"):
        (tmp_path / "shapes" / case_file.name).write_text(case_file.read_text(encoding="utf-8"))
    # Without installing: that it is this project, and installable (its build backend comes from the
    # package index as for the job, not from whatever setuptools this environment holds).
    install = shlex.split(runs[0])
    pip = [sys.executable, "-m", *install[:2], "--dry-run", "--no-deps"]
    installed = subprocess.run([*pip, *install[2:]], cwd=tmp_path, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    assert "Would install mha-explain" in installed.stdout
    check = shlex.split(runs[1])
    ran = subprocess.run(
        [sys.executable, "-m", "mha_cli", *check[1:]], cwd=tmp_path, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    junit = (tmp_path / "attention-shapes.xml").read_text(encoding="utf-8")
    assert 'tests="4"' in junit and 'failures="0"' in junit
