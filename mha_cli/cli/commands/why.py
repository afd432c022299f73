"""``mha-explain why``: a pasted traceback of an attention layer's failed call, explained."""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import Annotated

import typer

from mha_cli.cli.options import JsonOption
from mha_cli.cli.process import fail
from mha_cli.core.errors import ExitCode

#: More than this on stdin is not a traceback (a log file piped in by mistake): read no further.
_MOST = 1_000_000


def why_command(
    json_output: JsonOption = False,
    text: Annotated[
        str | None,
        typer.Option("--text", metavar="TEXT", help="The traceback as an argument, instead of stdin."),
    ] = None,
) -> None:
    """Explain a failed call of an attention layer (MultiHeadAttention, GroupQueryAttention,
    Attention, AdditiveAttention) from its traceback.

    Paste the whole traceback on stdin (or give it with --text): the shapes Keras printed under
    "Arguments received by MultiHeadAttention.call()", and the error's own shapes, are diagnosed
    as mha_cli.clarify() diagnoses a live call. A traceback does not hold the layer's arguments;
    what they change is said, or that it cannot be explained from the text alone.
    Exit codes: 0 explained (or said why not), 2 no failed attention call in the text.
    """
    if text is None:
        if sys.stdin.isatty():
            typer.echo("mha-explain why: paste the traceback, then Ctrl-D", err=True)
        text = sys.stdin.read(_MOST)
    from mha_cli.core.why import explain_traceback

    found = explain_traceback(text)
    if found is None:
        fail(
            ExitCode.BAD_INPUT,
            "why: no failed call of an attention layer in the text (paste the whole traceback, down to "
            "'Arguments received by ...call():' and its list)",
        )
    if json_output:
        import json

        typer.echo(
            json.dumps({"schema_version": 1, "read": list(found.read), "explanation": list(found.lines)})
        )
        return
    # On a terminal, wrapped to its width; piped, a line each (for grep and for pasting on).
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 0
    for line in [*(f"read: {line}" for line in found.read), *found.lines]:
        typer.echo(textwrap.fill(line, width, subsequent_indent="  ") if width else line)
