import pytest

from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape, parse_axes, parse_bytes, parse_int, parse_names, parse_shape


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32,64,4", (32, 64, 4)),
        (" 32, 64 ,4 ", (32, 64, 4)),
        ("(32, 64, 4)", (32, 64, 4)),
        ("[10,16]", (10, 16)),
        ("(7,)", (7,)),
        ("5", (5,)),
    ],
)
def test_parse_shape_accepts_pasted_forms(text: str, expected: tuple[int, ...]) -> None:
    assert parse_shape("--shape", text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty shape"),
        ("()", "empty shape"),
        ("32,x", "'x' is not a size"),
        ("32,0", "size 0 is not positive"),
        ("32,-4", "size -4 is not positive"),
        ("32,6.5", "'6.5' is not a size"),
        ("3٣,4", "not a size"),  # Arabic-Indic digit: int() would accept it
        ("(32,64", "unbalanced"),
        ("None,32,64,4", r"leave out the batch axis \(None\); write 32,64,4"),
        ("(None, 32)", "leave out the batch axis"),
        ("32,,4", "'' is not a size"),
        ("1" * 20, "too large"),
    ],
)
def test_parse_shape_rejects_with_specific_message(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        parse_shape("--shape", text)
    assert str(error.value).startswith("--shape ")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", None),
        ("None", None),
        ("1", (1,)),
        ("(1)", (1,)),
        ("(1,)", (1,)),
        ("[1, 2]", (1, 2)),
        ("1,2", (1, 2)),
        ("-2", (-2,)),
        ("(2, 1)", (2, 1)),
    ],
)
def test_parse_axes_accepts_python_forms(text: str, expected: tuple[int, ...] | None) -> None:
    assert parse_axes("--axes", text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "no axes"), ("()", "no axes"), ("1,a", "'a' is not an axis"), ("1.5", "not an axis")],
)
def test_parse_axes_rejects(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_axes("--axes", text)


def test_parse_int_minimum_and_ascii() -> None:
    assert parse_int("--num-heads", " 8 ", minimum=1) == 8
    with pytest.raises(ConfigError, match="must be >= 1"):
        parse_int("--num-heads", "0", minimum=1)
    with pytest.raises(ConfigError, match="not an integer"):
        parse_int("--num-heads", "٣", minimum=1)


def test_parse_names() -> None:
    assert parse_names("--axis-names", "rows, cols") == ("rows", "cols")
    with pytest.raises(ConfigError, match="'a-b' is not a name"):
        parse_names("--axis-names", "a-b")


def test_format_shape_matches_keras_printing() -> None:
    assert format_shape((None, 32, 64, 4)) == "(None, 32, 64, 4)"
    assert format_shape((1,)) == "(1,)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GiB", 2 * 2**30), ("512 MiB", 512 * 2**20), ("1.5GB", 1_500_000_000), ("1000", 1000)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes("--max-memory", text) == expected


def test_parse_bytes_rejects_unknown_units() -> None:
    with pytest.raises(ConfigError, match=r"not a size; write e\.g\. 2GiB"):
        parse_bytes("--max-memory", "2 parsecs")
