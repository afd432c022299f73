"""Case files: reading, validation with file:line, and comparing expectations (pure, no Keras)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mha_cli.core.cases import CaseFileError, Mismatch, compare, find_case_files, load, observed, parse
from mha_cli.core.config import MHAConfig
from mha_cli.core.mha import derive

GOOD = """\
# shared by every case
[defaults]
num_heads = 2
key_dim = 128

[[case]]
name = "image-height-only"
shape = [32, 64, 4]
axes = [1]

[case.expect]
output = [32, 64, 4]
attention_scores = [64, 2, 32, 32]

[[case]]
name = "sentence"
shape = [10, 16]
attention_axes = "none"
num_heads = 4
"""


def toml(text: str, name: str = "cases.mha.toml") -> object:
    return parse(Path(name), text, "toml")


def problem(text: str, fmt: str = "toml") -> str:
    """The one problem a file has, as check prints it."""
    try:
        loaded = parse(Path("c.mha." + fmt), text, fmt)
    except CaseFileError as error:
        return str(error)
    assert len(loaded.problems) == 1, loaded.problems
    return str(loaded.problems[0])


def test_defaults_apply_to_every_case_and_a_case_overrides_them() -> None:
    loaded = parse(Path("c.mha.toml"), GOOD, "toml")
    assert loaded.problems == ()
    image, sentence = loaded.cases
    assert image.config == MHAConfig((32, 64, 4), num_heads=2, key_dim=128, attention_axes=(1,))
    assert sentence.config == MHAConfig((10, 16), num_heads=4, key_dim=128, attention_axes=None)
    assert (image.line, sentence.line) == (6, 15)
    assert image.expect == {"output": [32, 64, 4], "attention_scores": [64, 2, 32, 32]}
    assert sentence.expect is None


def test_every_knob_reaches_the_config() -> None:
    text = """\
[[case]]
name = "all"
shape = [8, 6]
value_shape = [5, 7]
key_shape = [5, 3]
num_heads = 3
key_dim = 4
value_dim = 2
output_shape = [3, 2]
axes = -2
use_bias = false
use_gate = true
dropout = 0.5
dtype = "float64"
batch = 3
seed = 7
axis_names = ["time"]
mask_shape = ["None", 8, 5]
causal = true
sliding_window = 3
"""
    (case,) = parse(Path("c.toml"), text, "toml").cases
    assert case.config == MHAConfig(
        (8, 6),
        (5, 7),
        (5, 3),
        3,
        4,
        2,
        (3, 2),
        (-2,),
        False,
        True,
        0.5,
        "float64",
        3,
        7,
        ("time",),
        mask_shape=(None, 8, 5),
        causal=True,
        sliding_window=3,
    )


BAD = [
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\nnum_head = 2\n',
        "c.mha.toml:4: case 'a': unknown key 'num_head'; did you mean 'num_heads'?",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, "x"]\n',
        "c.mha.toml:3: case 'a': shape: expected an integer, got 'x'",
    ),
    ('[[case]]\nname = "a"\nshape = [0, 16]\n', "c.mha.toml:3: case 'a': shape: size 0 is not positive"),
    (
        '[[case]]\nname = "a"\nshape = ["None", 8, 16]\n',
        "c.mha.toml:3: case 'a': shape: leave out the batch axis (None)",
    ),
    (
        '[[case]]\nname = "a"\nshape = [32, 64, 4]\naxes = [4]\n',
        "c.mha.toml:4: case 'a': axes (4,): axis 4 is the key_dim axis of the projected query",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\nuse_bias = "yes"\n',
        "c.mha.toml:4: case 'a': use_bias: expected true or false, got 'yes'",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\naxes = [1]\nattention_axes = [1]\n',
        "c.mha.toml:5: case 'a': give axes or attention_axes, not both",
    ),
    ('[[case]]\nname = "a"\nnum_heads = 2\n', "c.mha.toml:1: case 'a': no shape; give the query shape"),
    ("[[case]]\nshape = [8, 16]\n", "c.mha.toml:1: case '#1': every case needs a name"),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\n\n[[case]]\nname = "a"\nshape = [4, 16]\n',
        "c.mha.toml:6: case 'a': the name is used twice (first at line 2)",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\nvalue_shape = [4, 4, 16]\n',
        "c.mha.toml:4: case 'a': value_shape (4, 4, 16): rank 4 differs",
    ),
    (
        '[defaults]\nkey_dim = 0\n\n[[case]]\nname = "a"\nshape = [8, 16]\n',
        "c.mha.toml:2: case 'a': key_dim 0: must be a positive integer",
    ),
    (
        '[defaults]\nname = "x"\n\n[[case]]\nname = "a"\nshape = [8, 16]\n',
        "c.mha.toml:2: 'name' cannot have a default; set it in each case",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\n[case.expect]\noutput = [8, 16]\nscores = [2, 8, 8]\n',
        "c.mha.toml:6: case 'a': unknown expect field 'scores'",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\nexpect.output = [8, 16]\nexpect.params = -1\n',
        "c.mha.toml:5: case 'a': expect.params: expected a count, got -1",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\n[case.expect]\nequations = { scores = "ab" }\n',
        "c.mha.toml:5: case 'a': unknown equation 'scores'",
    ),
    (
        '[[case]]\nname = "a"\nshape = [8, 16]\nuse_causal_mask = true\n',
        "c.mha.toml:4: case 'a': unknown key 'use_causal_mask'",
    ),
    ('[[case]]\nname = "a"\nshape = [8, 16\n', "c.mha.toml:3: not valid TOML"),
    (
        '[[cases]]\nname = "a"\nshape = [8, 16]\n',
        "c.mha.toml:1: unknown top-level key 'cases'; did you mean 'case'?",
    ),
    ("# nothing yet\n", "c.mha.toml:1: no cases; add [[case]] tables"),
    (
        '[recorded]\nkeras_version = "3.15.1"\n\n[[case]]\nname = "a"\nshape = [8, 16]\n',
        "c.mha.toml:1: [recorded] is written by mha-explain record",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[message.split(": ", 1)[1][:40] for _, message in BAD])
def test_problems_point_at_file_line_and_case(text: str, message: str) -> None:
    assert problem(text).startswith(message)


def test_a_bad_case_does_not_hide_the_good_ones() -> None:
    loaded = parse(
        Path("c.toml"),
        '[[case]]\nname = "bad"\nshape = [8]\n\n[[case]]\nname = "good"\nshape = [8, 16]\n',
        "toml",
    )
    assert [case.name for case in loaded.cases] == ["good"]
    assert [str(error) for error in loaded.problems] == [
        "c.toml:3: case 'bad': shape (8,): rank 2 with the batch axis; MultiHeadAttention needs rank >= 3 "
        "(batch, at least one attention axis, features), e.g. 10,16"
    ]


def test_json_case_files_are_read_alike_with_lines() -> None:
    document = {
        "defaults": {"num_heads": 2},
        "case": [
            {"name": "a", "shape": [8, 16], "expect": {"output": [8, 16]}},
            {"name": "b", "shape": [8, 16], "axes": [3]},
        ],
    }
    text = json.dumps(document, indent=2)
    loaded = parse(Path("c.mha.json"), text, "json")
    assert loaded.cases[0].config == MHAConfig((8, 16), num_heads=2)
    assert loaded.cases[0].expect == {"output": [8, 16]}
    axes_line = text.splitlines().index('      "axes": [') + 1
    assert str(loaded.problems[0]).startswith(f"c.mha.json:{axes_line}: case 'b': axes (3,): ")
    assert problem('{"case": [\n  {"name": "a",}\n]}', "json").startswith("c.mha.json:2: not valid JSON")


def test_load_reports_missing_files_and_unknown_suffixes(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match=r"nope.mha.toml:1: no such file or directory"):
        load(tmp_path / "nope.mha.toml")
    # A mistyped directory or file name is missing, not a file of the wrong kind.
    with pytest.raises(CaseFileError, match=r"shapes:1: no such file or directory"):
        load(tmp_path / "shapes")
    (tmp_path / "cases.yaml").write_text("case: []\n")
    with pytest.raises(CaseFileError, match=r"ends in .toml or .json"):
        load(tmp_path / "cases.yaml")


def test_directories_yield_their_case_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.mha.toml", "sub/a.mha.json", "notes.toml", "c.mha.toml.bak"):
        (tmp_path / name).write_text("")
    explicit = tmp_path / "notes.toml"
    assert find_case_files([tmp_path, explicit]) == [
        tmp_path / "b.mha.toml",
        tmp_path / "sub/a.mha.json",
        explicit,
    ]


def test_expectations_compare_field_by_field() -> None:
    derivation = derive(MHAConfig((32, 64, 4), num_heads=2, key_dim=128, attention_axes=(1,)))
    assert (
        compare({"output": [32, 64, 4], "attention_scores": [64, 2, 32, 32], "params": 4868}, derivation)
        == ()
    )
    assert compare({"attention_scores": [2, 32, 64, 32, 64]}, derivation) == (
        Mismatch("attention_scores", [2, 32, 64, 32, 64], [64, 2, 32, 32]),
    )
    equations = observed(derivation, ["equations"])["equations"]
    wrong = {**equations, "combine": "x"}
    assert compare({"equations": wrong}, derivation) == (
        Mismatch("equations.combine", "x", equations["combine"]),
    )
    assert compare({"gate": [32, 64, 2, 128]}, derivation) == (Mismatch("gate", [32, 64, 2, 128], None),)


def test_observed_values_leave_out_the_batch_axis() -> None:
    derivation = derive(MHAConfig((8, 16), value_shape=(4, 16), num_heads=2, key_dim=8))
    values = observed(derivation)
    assert values["output"] == [8, 16]
    assert values["attention_scores"] == [2, 8, 4]
    assert values["key_projected"] == [4, 2, 8]
    assert values["params"] == derivation.params
    assert "gate" not in values


def test_the_real_layers_refusal_is_at_the_case_not_at_its_keras_key() -> None:
    """--keras sets the knob keras; a ConfigError from the real layer (option "keras") is not about it."""
    from mha_cli.core.cases import at_key
    from mha_cli.core.errors import ConfigError

    refused = ConfigError("keras", None, "the real layer rejects this configuration: bad thing")
    assert at_key(refused) == (None, "the real layer rejects this configuration: bad thing")
    assert at_key(ConfigError("--keras", 4, "choose 3 or 2")) == ("keras", "keras 4: choose 3 or 2")
    assert at_key(ConfigError("--axes", "(3,)", "no"), "attention_axes") == (
        "attention_axes",
        "attention_axes (3,): no",
    )
