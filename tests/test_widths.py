"""What people read is never cut, at any width from 60 columns up (issue 13).

Each command is rendered at 60, 80 and 120 columns: no line is wider than
that, nothing ends in rich's ellipsis, and every einsum equation appears
whole on one line (a table that does not fit wraps its other cells instead).
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core.config import MHAConfig
from mha_cli.core.mha import derive

runner = CliRunner()
WIDTHS = (60, 80, 120)
#: (command, needs Keras, the configuration whose equations it shows, if any)
COMMANDS: list[tuple[list[str], bool, MHAConfig | None]] = [
    (["--shape", "32,64,4", "--axes", "1", "--no-run"], False, MHAConfig((32, 64, 4), attention_axes=(1,))),
    (
        ["--shape", "5,6", "--gate", "--output-shape", "3,2", "--no-bias", "--no-run"],
        False,
        MHAConfig((5, 6), use_gate=True, output_shape=(3, 2), use_bias=False),
    ),
    (["--shape", "32,64,4", "--axes", "1"], True, MHAConfig((32, 64, 4), attention_axes=(1,))),
    (
        ["--shape", "7,7,2048", "--num-heads", "1", "--key-dim", "3", "--value-dim", "3", "--no-run"],
        False,
        MHAConfig((7, 7, 2048), num_heads=1, key_dim=3, value_dim=3),
    ),
    (["--shape", "6,6,4", "--axes", "1", "--at", "2,3", "--num-heads", "1"], True, None),
    (["--shape", "100,8", "--at", "50"], True, None),  # a 100-position picture row
    (
        ["--shape", "8,16", "--value-shape", "4,16", "--causal", "--mask-shape", "None,8,4", "--graph"],
        True,
        None,
    ),
    (["compare", "--shape", "32,64,4", "--axes", "1", "--axes", "2", "--axes", "none"], True, None),
    (["compare", "--shape", "4,1,6,8", "--axes", "all"], False, None),
    (["compare", "--shape", "32,64,4", "--axes", "all", "--run"], True, None),
    (["check", "examples"], True, None),
    (["scan", "--build", "tests.scan_models:encoder_decoder", "--layer", "decoder_cross"], True, None),
]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    ("args", "config"),
    [
        pytest.param(args, config, marks=[pytest.mark.keras] if keras else [], id=" ".join(args)[:48])
        for args, keras, config in COMMANDS
    ],
)
def test_nothing_is_cut(args: list[str], config: MHAConfig | None, width: int) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if len(line) > width] == []
    assert "…" not in result.stdout
    # A number is never cut: no thousands group of one or two digits at a line's end (1,310,72).
    assert [line for line in lines if re.search(r"\d,\d{1,2}$", line.rstrip())] == []
    # Nor an identifier: every layer name and header word Keras and the tables use is whole.
    words = set(result.stdout.split())
    for whole in ("multi_head_attention", "additive_attention", "FLOPs/item", "query_projected"):
        broken = [w for w in words if whole.startswith(w) and w != whole and whole[len(w) :] in words]
        assert broken == [], f"{whole} is broken across lines"
    if config is not None:
        d = derive(config)
        for equation in d.equations.values():
            assert any(equation in line for line in lines), f"{equation} is not whole on a line"
        # Every number the einsum and weights tables hold, whole on one line.
        numbers = [f"{d.flops_per_item:,}", f"{d.params:,}"]
        numbers += [f"{einsum.flops_per_item():,}" for einsum in d.einsums.values()]
        numbers += [f"{weight.params:,}" for weight in d.weights]
        for number in numbers:
            assert re.search(rf"(?<![\d,]){re.escape(number)}(?![\d,])", result.stdout), f"{number} is cut"


def test_piped_output_has_no_trailing_white_space_and_its_width_is_documented() -> None:
    for env in ({}, {"COLUMNS": "80"}):
        out = runner.invoke(app, ["--shape", "32,64,4", "--axes", "1", "--no-run"], env=env).stdout
        assert [line for line in out.splitlines() if line != line.rstrip()] == []
    wide = runner.invoke(app, ["--shape", "32,64,4", "--no-run"], env={"COLUMNS": ""}).stdout
    assert max(len(line) for line in wide.splitlines()) <= 120  # PIPED_WIDTH, as the README says
    narrow = runner.invoke(app, ["--shape", "32,64,4", "--no-run", "--width", "64"]).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 64


@pytest.mark.parametrize(("color", "escapes"), [("always", True), ("never", False), ("auto", False)])
def test_color_option(color: str, escapes: bool) -> None:
    out = runner.invoke(app, ["--shape", "8,16", "--no-run", "--color", color]).stdout
    assert ("\x1b[" in out) is escapes
    assert [line for line in out.splitlines() if line != line.rstrip()] == []  # also with colour codes


def test_html_export_is_laid_out_at_a_fixed_width_whatever_the_terminal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    html = tmp_path / "out.html"
    result = runner.invoke(
        app,
        ["--shape", "32,64,4", "--axes", "1", "--html", str(html)],
        env={"COLUMNS": "60", "NO_COLOR": "1"},
    )
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 60
    import html as markup
    import re

    # The tables (the page's <pre class="tables">; the heatmap above them is the browser's to lay out).
    tables = re.search(r'<pre class="tables".*?</pre>', html.read_text(), re.S)
    assert tables is not None
    text = markup.unescape(re.sub(r"<[^>]+>", "", tables.group(0)))
    table_lines = [line for line in text.splitlines() if "abcd,def->abcef" in line]
    assert table_lines and 60 < max(len(line.rstrip()) for line in text.splitlines()) <= 120


@pytest.mark.keras
@pytest.mark.parametrize("axes", ["1", "none"])
def test_the_answer_is_on_the_first_screen(axes: str) -> None:
    """At 80 x 24: the call, the scores shape with its axis names, the output shape, the axes' roles,
    the weights per query and the verdict come first; --brief stops there."""
    args = ["--shape", "32,64,4", "--axes", axes]
    full = runner.invoke(app, args, env={"COLUMNS": "80", "NO_COLOR": "1"}).stdout.splitlines()
    first_screen = "\n".join(full[:24])
    d = derive(MHAConfig((32, 64, 4), attention_axes=None if axes == "none" else (1,)))
    scores = d.shapes["attention_scores"]
    for expected in (
        "layer = keras.layers.MultiHeadAttention(",
        f"scores   {scores.shape}",
        ", ".join(scores.labels),
        "output   (None, 32, 64, 4)",
        "attended: height (1)",
        f"{d.weights_per_query:,} per query position and head",
        "verified on Keras",
    ):
        assert expected in " ".join(first_screen.split()) or expected in first_screen, expected
    brief = runner.invoke(app, [*args, "--brief"], env={"COLUMNS": "80", "NO_COLOR": "1"}).stdout.splitlines()
    assert brief == full[: len(brief)] and len(brief) <= 24
    assert "Verification" not in brief and "Axes" not in brief


@pytest.mark.keras
def test_a_keras_note_is_one_short_line_unless_verbose() -> None:
    args = ["--shape", "32,64,4", "--axes", "1"]
    quiet = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"}).stdout
    (line,) = [line for line in quiet.splitlines() if line.startswith("WARN keras_symbolic")]
    assert line == (
        "WARN keras_symbolic: model.summary() shows attention scores (None, 2, 32, 32), the real shape is "
        "(None, 64, 2, 32, 32) (a Keras bug, keras-team/keras#19303; --verbose says more)"
    )
    verbose = runner.invoke(app, [*args, "--verbose"], env={"COLUMNS": "200", "NO_COLOR": "1"}).stdout
    assert "Layers a functional model stacks on the scores are built for the wrong shape" in verbose


@pytest.mark.keras
@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        (["--at", "5,10"], "Attention picture"),
        (["--graph"], "Call convention"),
        (["--mask-shape", "32,32"], "mask     attention_mask (32, 32) -> (1, 1, 1, 32, 32) over the scores"),
    ],
)
def test_brief_keeps_what_the_options_asked_for_and_the_full_answer_leads_with_it(
    asked: list[str], shown: str
) -> None:
    args = ["--shape", "32,64,4", "--axes", "1", *asked]
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    brief = runner.invoke(app, [*args, "--brief"], env=env)
    assert brief.exit_code == 0, brief.output
    assert shown in brief.stdout
    full = runner.invoke(app, args, env=env).stdout
    assert full.startswith(brief.stdout.rstrip("\n"))  # the same first screen, then the rest
    assert full.index(shown) < full.index("\nLayer\n")


def test_a_table_too_wide_for_its_words_becomes_blocks_keeping_every_cell_and_the_caption() -> None:
    from rich.console import Console

    from mha_cli.output.tables import titled_table

    table = titled_table("Cases", "case", "", "details")
    table.caption = "2 case(s): Keras X"
    table.add_row("multi_head_attention_case", "PASS", "attention_scores and more words here")
    table.add_row("", "", "a continuation row")
    console = Console(width=40, record=True, color_system=None)
    console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 40
    assert (
        lines[0] == "Cases" and lines[1] == "multi_head_attention_case" and lines[-1] == "2 case(s): Keras X"
    )
    text = "\n".join(lines)
    assert "  : " not in text and "details: attention_scores and more" in text
    assert "details: a continuation row" in text
    assert "\n\n" not in text  # no blank line for the continuation row
