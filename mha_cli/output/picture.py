"""--picture: which key positions one query position attends to, drawn and as JSON."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text

from mha_cli.operations.picture import Picture

if TYPE_CHECKING:  # no NumPy at run time: --no-run and --help never import it
    import numpy as np


_MAX_COLUMNS, _MAX_ROWS, _MAX_SLICES = 48, 24, 6  # two characters per cell


def _blocks(size: int, most: int) -> int:
    """How many positions one drawn cell covers so that ``size`` positions fit in ``most`` cells."""
    return -(-size // most)


def _grid(
    attended: np.ndarray, query: tuple[int, int] | None, width: int
) -> tuple[list[Text], tuple[int, int]]:
    """A 2-D boolean grid as lines of cells, downsampled by blocks (a block attends if any position does).

    At most ``width`` characters a line (two a cell), so a narrow terminal downsamples more, never crops.
    """
    rows, cols = attended.shape
    down = (_blocks(rows, _MAX_ROWS), _blocks(cols, max(1, min(_MAX_COLUMNS, width // 2))))
    lines = []
    for r in range(0, rows, down[0]):
        line = Text(no_wrap=True, overflow="crop")
        for c in range(0, cols, down[1]):
            here = query is not None and r <= query[0] < r + down[0] and c <= query[1] < c + down[1]
            if here:
                line.append("◉ ", style="bold magenta")
            elif attended[r : r + down[0], c : c + down[1]].any():
                line.append("■ ", style="green")
            else:
                line.append("· ", style="dim")
        lines.append(line)
    return lines, down


def picture_section(picture: Picture, width: int = 120) -> Group:
    names, at = picture.axis_names, picture.at
    where = ", ".join(f"{name}={index}" for name, index in zip(names, at, strict=True))
    total = math.prod(picture.key_grid)
    lines: list[Text] = [
        Text("Attention picture", style="bold"),
        Text(
            f"query position ({where}), batch item 0, head 0: {picture.attended_count:,} of {total:,} key "
            "positions get a non-zero weight in the real forward pass"
        ),
        Text("◉ the query position   ■ attended   · not attended", style="dim")
        if picture.same_grid
        else Text("■ attended   · not attended (key/value positions; the query grid differs)", style="dim"),
    ]
    attended = picture.attended
    if attended.ndim == 1:
        attended = attended[None, :]
        at2: tuple[int, ...] = (0, at[0])
        names = ("", *names)
    else:
        at2 = at
    lead = attended.shape[:-2]
    shown_slices = 0
    skipped = 0
    notes = set()
    for lead_index in itertools.product(*map(range, lead)):
        plane = attended[lead_index]
        query_here = picture.same_grid and tuple(at2[: len(lead)]) == lead_index
        if lead and not plane.any() and not query_here:
            skipped += 1
            continue
        if shown_slices == _MAX_SLICES:
            skipped += 1
            continue
        shown_slices += 1
        if lead:
            label = ", ".join(f"{name}={i}" for name, i in zip(names[: len(lead)], lead_index, strict=True))
            lines.append(Text(f"{label}:", style="bold"))
        grid, down = _grid(plane, tuple(at2[-2:]) if query_here else None, width)  # type: ignore[arg-type]
        lines.extend(grid)
        if down != (1, 1):
            notes.add(
                f"downsampled: each cell covers {down[0]} x {down[1]} positions ({names[-2] or 'row'} x "
                f"{names[-1]}) and is marked if any of them is"
            )
    if skipped:
        notes.add(
            f"{skipped} more slice(s) not drawn: no attended position, or beyond the first {_MAX_SLICES}"
        )
    lines.extend(Text(note, style="dim") for note in sorted(notes))
    return Group(*lines)
