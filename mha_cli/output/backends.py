"""--backend all: one configuration on every backend, as a table and JSON."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from mha_cli.core.grammar import format_shape
from mha_cli.operations.backends import BackendsRun
from mha_cli.output.tables import STATUS_MARK, titled_table


def render_backends(found: BackendsRun, console: Console) -> None:
    """One row per backend: shapes, checks, and how far its numbers are from the first backend's."""
    table = titled_table(
        "Backends (identical weights and inputs; differences from the first backend that ran)",
        "backend",
        "Keras",
        "output",
        "attention_scores",
        "checks",
        "max |diff| output",
        "scores",
    )
    for run in found.runs:
        result = run.result
        if result is None:
            table.add_row(run.backend, Text(run.problem or "", style="dim"), "", "", "", "", "")
            continue
        shapes = result.derivation.shapes
        table.add_row(
            run.backend,
            "" if result.run is None else result.run.keras_version,
            format_shape(shapes["output"].shape),
            format_shape(shapes["attention_scores"].shape),
            " ".join(STATUS_MARK[check.status][0] for check in result.checks),
            "" if run.output_diff is None else f"{run.output_diff:.1e}",
            "" if run.scores_diff is None else f"{run.scores_diff:.1e}",
        )
    console.print(table)
