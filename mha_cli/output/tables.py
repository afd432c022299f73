"""Shared pieces of every command's tables: the console, a titled table, status marks, diff cells."""

from __future__ import annotations

import errno
import io
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO, cast

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mha_cli.operations.explain import Status
from mha_cli.output import EXPORT_WIDTH, PIPED_WIDTH

STATUS_MARK = {
    Status.PASSED: ("PASS", "green"),
    Status.FAILED: ("FAIL", "bold red"),
    Status.WARNING: ("WARN", "yellow"),
    Status.SKIPPED: ("SKIP", "dim"),
}


class RaisingConsole(Console):
    def on_broken_pipe(self) -> None:
        """Raise, as print() does, for a reader that went away (``| head``).

        rich's own handling exits 1, which here means a failed check; raised, the
        CLI answers it like any write to a closed stdout (exit 141).
        """
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


class _Unpadded:
    """A stream that drops trailing white space from every line: rich pads table rows to the width,
    which piped into a file or ``less`` is noise. Colour codes after the padding are kept."""

    _PADDING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.stream.write(self._PADDING.sub(r"\1", line) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def make_console(file: TextIO | None = None, *, width: int | None = None, color: str = "auto") -> Console:
    """The console for tables on stdout: ``width`` columns (--width), colour auto, always or never.

    Without --width: the terminal's width; piped, COLUMNS, else PIPED_WIDTH, so
    einsum rows stay on one line. Lines carry no trailing white space.
    """
    stream = file or sys.stdout
    if width is None and not stream.isatty() and not os.environ.get("COLUMNS"):
        width = PIPED_WIDTH
    colors: dict[str, Any] = {}
    if color == "always":
        colors = {"force_terminal": True}
    elif color == "never":
        colors = {"color_system": None}
    return RaisingConsole(file=cast(TextIO, _Unpadded(stream)), width=width, highlight=False, **colors)


def export_console() -> Console:
    """A console that records what is printed for --svg / --html, laid out at EXPORT_WIDTH columns."""
    return RaisingConsole(
        file=io.StringIO(), width=EXPORT_WIDTH, highlight=False, record=True, force_terminal=True
    )


def export(console: Console, option: str, path: Path, title: str) -> None:
    """Save what ``console`` printed, with its colours (rich's own export): --svg or --html."""
    if option == "--svg":
        console.save_svg(str(path), title=title, clear=False)
    else:
        console.save_html(str(path), clear=False)


def titled_table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        # Nothing is cut: a value too long for its column folds onto the next line, no ellipsis.
        table.add_column(column, overflow="fold")
    return table


def size_text(size: int | None) -> str:
    return "None" if size is None else str(size)


def compared_row(table: Table, label: str, values: list[str]) -> None:
    """One row of a side-by-side table: the values, highlighted and marked "differs" when they do."""
    differs = len(set(values)) > 1
    style = "bold yellow" if differs else ""
    table.add_row(label, *(Text(v, style=style) for v in values), Text("differs" if differs else "same"))


def diff_cell(value: float | None, tolerance: float) -> Text:
    if value is None:
        return Text("not compared", style="dim")
    return Text(f"{value:.1e}", style="bold yellow" if value > tolerance else "green")
