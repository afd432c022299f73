"""A case file's ``[model]``: record pins every attention call from the model, check re-scans it.

The point of it: the model is the source of truth, so a change to the model
(its code, or a re-saved file) turns check red, naming the layer and the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from tests import scan_models

pytestmark = pytest.mark.keras
runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

MODEL_CODE = """\
import keras


def build():
    x = keras.Input(shape=(6, 8), name="x")
    attention = keras.layers.MultiHeadAttention(num_heads={heads}, key_dim=4, name="attention")
    return keras.Model(x, attention(x, x), name="tiny")
"""


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """mha-explain as CI runs it: a fresh process, so the model's module is imported anew."""
    return subprocess.run(
        [sys.executable, "-m", "mha_cli", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_changing_num_heads_in_the_model_code_turns_check_red(tmp_path: Path) -> None:
    (tmp_path / "tiny_models.py").write_text(MODEL_CODE.format(heads=2))
    case_file = tmp_path / "tiny.mha.toml"
    case_file.write_text('[model]\nbuild = "tiny_models:build"\n')
    recorded = _cli(tmp_path, "record", case_file.name)
    assert recorded.returncode == 0, recorded.stderr
    pinned = case_file.read_text()
    assert '[calls.attention]\nclass = "MultiHeadAttention"\nnum_heads = 2\n' in pinned
    assert _cli(tmp_path, "check", case_file.name).returncode == 0

    (tmp_path / "tiny_models.py").write_text(MODEL_CODE.format(heads=4))  # someone edits the model
    checked = _cli(tmp_path, "check", case_file.name)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    # At the line of the pinned num_heads: [model] 1-2, a blank line, [calls.attention] 4, class 5.
    assert "tiny.mha.toml:6: call 'attention': num_heads: expected 2, the model gives 4" in checked.stderr
    assert case_file.read_text() == pinned  # check never writes


@pytest.fixture
def saved_image(tmp_path: Path) -> Path:
    scan_models.image().save(tmp_path / "image.keras")
    return tmp_path / "image.keras"


def _record_then_check(case_file: Path) -> None:
    recorded = runner.invoke(app, ["record", str(case_file)])
    assert recorded.exit_code == 0, recorded.output
    checked = runner.invoke(app, ["check", str(case_file)])
    assert checked.exit_code == 0, checked.output


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_record_pins_each_call_by_layer_path(saved_image: Path, fmt: str) -> None:
    case_file = saved_image.parent / f"image.mha.{fmt}"
    if fmt == "toml":
        case_file.write_text('[model]\npath = "image.keras"\n')
    else:
        case_file.write_text(json.dumps({"model": {"path": "image.keras"}}, indent=2))
    _record_then_check(case_file)
    if fmt == "json":
        calls = json.loads(case_file.read_text())["calls"]
    else:
        import tomllib

        calls = tomllib.loads(case_file.read_text())["calls"]
    assert list(calls) == ["columns", "whole"]
    assert calls["columns"]["attention_axes"] == [1] and calls["whole"]["attention_axes"] == [1, 2]
    assert calls["columns"]["attention_scores"] == [5, 2, 6, 6]  # (width, heads, height_q, height_k)


def test_a_resaved_model_with_other_axes_and_a_new_call_fail_check(saved_image: Path, tmp_path: Path) -> None:
    import keras

    case_file = tmp_path / "image.mha.toml"
    case_file.write_text('[model]\npath = "image.keras"\n')
    _record_then_check(case_file)
    # Re-saved: the first layer now attends over width, and a third layer appears.
    pixels = keras.Input(shape=(6, 5, 4), name="pixels")
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=(2,), name="columns")(
        pixels, pixels
    )
    x = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, attention_axes=(1, 2), name="whole")(x, x)
    x = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, name="extra")(x, x)
    keras.Model(pixels, x).save(saved_image)
    checked = runner.invoke(app, ["check", str(case_file), "--json"])
    assert checked.exit_code == 1
    cases = {case["name"]: case for case in json.loads(checked.stdout)["cases"]}
    assert cases["whole"]["status"] == "passed"
    assert cases["columns"]["status"] == "failed"
    fields = {m["field"]: (m["expected"], m["actual"]) for m in cases["columns"]["mismatches"]}
    assert fields["attention_axes"] == ([1], [2])
    assert cases["extra"]["status"] == "failed"
    assert "an attention call the file does not pin" in cases["extra"]["failed_checks"][0]


def test_a_pinned_call_that_is_gone_fails_and_record_update_removes_it(
    saved_image: Path, tmp_path: Path
) -> None:
    import keras

    case_file = tmp_path / "image.mha.toml"
    case_file.write_text('[model]\npath = "image.keras"\n')
    _record_then_check(case_file)
    pixels = keras.Input(shape=(6, 5, 4), name="pixels")
    only = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, attention_axes=(1, 2), name="whole")
    keras.Model(pixels, only(pixels, pixels)).save(saved_image)
    checked = runner.invoke(app, ["check", str(case_file)])
    assert checked.exit_code == 1
    assert "call 'columns': this call is gone from the model" in checked.stderr
    kept = runner.invoke(app, ["record", str(case_file)])
    assert kept.exit_code == 1 and "[calls.columns]" in case_file.read_text()
    assert (
        "call 'columns' is pinned in the file but gone from the model; kept (--update removes it)"
        in kept.stderr
    )
    updated = runner.invoke(app, ["record", "--update", str(case_file)])
    assert updated.exit_code == 0, updated.output
    assert "[calls.columns]" not in case_file.read_text()
    assert runner.invoke(app, ["check", str(case_file)]).exit_code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[model]\npath = "image.keras"\nbuild = "m:f"\n', "name a model file"),
        ('[model]\npath = "image.keras"\nweights = "x"\n', "unknown key in [model] 'weights'"),
        ('[model]\npath = "image.keras"\n[[case]]\nname = "a"\nshape = [4, 8]\n', "not both"),
        ('[model]\npath = "missing.keras"\n', "model: MODEL"),
        ('[model]\npath = "image.keras"\ninputs = "tokens=4"\n', "model.inputs: a list of strings"),
        ('[model]\npath = "image.keras"\n[calls.columns]\nheads = 2\n', "unknown field 'heads'"),
    ],
)
def test_a_wrong_model_table_is_exit_2_at_its_line(
    saved_image: Path, tmp_path: Path, text: str, message: str
) -> None:
    case_file = tmp_path / "bad.mha.toml"
    case_file.write_text(text)
    result = runner.invoke(app, ["check", str(case_file)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_the_pytest_plugin_collects_one_item_per_pinned_call(
    pytester: pytest.Pytester, saved_image: Path
) -> None:
    case_file = pytester.path / "image.mha.toml"
    (pytester.path / "image.keras").write_bytes(saved_image.read_bytes())
    case_file.write_text('[model]\npath = "image.keras"\n')
    assert runner.invoke(app, ["record", str(case_file)]).exit_code == 0
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", case_file.name)
    result.stdout.fnmatch_lines(
        [
            "*image.mha.toml::columns PASSED*",
            "*image.mha.toml::whole PASSED*",
            "*image.mha.toml::[[]model[]] unpinned calls PASSED*",
        ]
    )
    assert result.ret == 0
