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
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
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


class UncutTable(Table):
    """A table that never cuts a value: no number, identifier or shape part is broken.

    Rich's own layout is kept where it cuts nothing. Where it would (its
    collapse shrinks a column below its longest word: ``1,310,72`` under
    ``FLOPs/it`` at 80 columns), each column gets at least its longest word
    and the room left goes to the columns whose cells are longest; a table
    whose words alone are wider than the screen is printed as one block per
    row instead, ``header: value`` under the row's first cell.
    """

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.columns:
            yield from super().__rich_console__(console, options)
            return
        pads = [self._get_padding_width(index) for index in range(len(self.columns))]
        available = options.max_width - self._extra_width - sum(pads)
        least, most = [], []
        for column in self.columns:
            measured = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
            low = max(column.min_width or 0, *(m.minimum for m in measured))
            high = max(low, *(m.maximum for m in measured))
            # A right-justified column holds numbers ("512.0 KiB", "1,310,720"): never wrapped either.
            least.append(high if column.no_wrap or column.justify == "right" else low)
            most.append(high)
        inner = options.update_width(options.max_width - self._extra_width)
        rich_widths = self._calculate_column_widths(console, inner)
        fits = sum(rich_widths) <= inner.max_width  # rich's last resort overflows, and the screen crops it
        if fits and all(width >= low + pad for width, low, pad in zip(rich_widths, least, pads, strict=True)):
            yield from super().__rich_console__(console, options)  # rich's own layout cuts nothing
        elif sum(least) <= available:
            widths = _shared_out(least, most, available)
            saved = [column.width for column in self.columns]
            for column, width in zip(self.columns, widths, strict=True):
                column.width = width
            try:
                yield from super().__rich_console__(console, options)
            finally:
                for column, before in zip(self.columns, saved, strict=True):
                    column.width = before
        else:
            yield from self._blocks(console)

    def _blocks(self, console: Console) -> RenderResult:
        if self.title:
            yield Text(str(self.title), style="bold")
        rest = self.columns[1:]
        cells = [list(column.cells) for column in self.columns]
        for row in range(self.row_count):
            heading = _as_text(console, cells[0][row])
            if heading.plain.strip():  # a row with an empty first cell continues the one above
                yield heading
            # Each other cell under its header, continued lines hanging under the value.
            block = Table.grid(padding=(0, 1), pad_edge=False)
            block.add_column(style="dim", no_wrap=True)
            block.add_column(overflow="fold")
            for column, column_cells in zip(rest, cells[1:], strict=True):
                value = _as_text(console, column_cells[row])
                if value.plain.strip():
                    header = _as_text(console, column.header).plain.strip()
                    block.add_row(Text(f"  {header}:" if header else " "), value)
            if block.row_count:
                yield block
        if self.caption:
            yield _as_text(console, self.caption)


def _as_text(console: Console, cell: Any) -> Text:
    if isinstance(cell, Text):
        return cell
    return console.render_str(cell) if isinstance(cell, str) else Text(str(cell))


def _shared_out(least: list[int], most: list[int], available: int) -> list[int]:
    """Widths from each column's least, the rest given out in proportion to what each still wants."""
    widths = list(least)
    spare = available - sum(widths)
    while spare > 0:
        wanting = [index for index, width in enumerate(widths) if width < most[index]]
        if not wanting:
            break
        total = sum(most[index] - widths[index] for index in wanting)
        given = 0
        for index in wanting:
            share = min(most[index] - widths[index], max(1, spare * (most[index] - widths[index]) // total))
            share = min(share, spare - given)
            widths[index] += share
            given += share
        spare -= given
        if given == 0:
            break
    return widths


def titled_table(title: str, *columns: str) -> Table:
    table = UncutTable(
        title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False
    )
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


def rendered(render: Any, width: int, color: bool) -> Text:
    """What ``render(console)`` prints, as one rich Text (the public API's ``__rich_console__``)."""
    buffer = io.StringIO()
    render(make_console(buffer, width=width, color="always" if color else "never"))
    return Text.from_ansi(buffer.getvalue().rstrip("\n"))


def rendered_html(render: Any) -> str:
    """What ``render(console)`` prints, as self-contained HTML: inline styles, no script, no network."""
    console = export_console()
    render(console)
    return html_fragment(console)


def html_fragment(console: Console) -> str:
    """What an export console recorded, as one ``<pre class="tables">`` with inline styles (kept, so the
    same recording can also be saved as SVG or as rich's own page)."""
    fragment = '<pre class="tables" style="{stylesheet}">{code}</pre>'
    return str(console.export_html(inline_styles=True, code_format=fragment, clear=False))
