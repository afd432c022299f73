"""--keras all: Keras 3 beside Keras 2, as tables and JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mha_cli.core.grammar import format_shape
from mha_cli.operations.explain import ExplainResult
from mha_cli.operations.majors import MajorsRun
from mha_cli.output.headline import call_code
from mha_cli.output.tables import STATUS_MARK, compared_row, diff_cell, titled_table

if TYPE_CHECKING:  # no NumPy at run time: --no-run and --help never import it
    from mha_cli.runtime.migration import MigrationRun


def _recorded(result: ExplainResult | None) -> str:
    """MultiHeadAttention's recorded call, compactly: its args, then its kwargs."""
    convention = None if result is None else result.call_convention
    if convention is None:
        return ""
    recorded = convention["multi_head_attention"]
    return f"args {json.dumps(recorded['args'])} kwargs {json.dumps(recorded['kwargs'])}"


def render_majors(found: MajorsRun, console: Console) -> None:
    """Keras 3 and Keras 2 side by side on identical weights, then every difference in a sentence."""
    keras3, keras2 = found.runs
    results = [run.result for run in found.runs]
    ran = [result for result in results if result is not None]
    title = Text(f"{keras3.version} beside {keras2.version} (tf_keras)", style="bold")
    title.append(", identical weights and inputs" if found.same_weights else "")
    console.print(title)
    console.print(_majors_verdict(found))
    if ran:
        console.print(call_code(ran[0].mha))
    table = titled_table("Side by side", "", keras3.version, keras2.version, "")

    def row(label: str, values: list[str]) -> None:
        compared_row(table, label, values)

    def each(cell: Any) -> list[str]:
        return [cell(result) if result is not None else "" for result in results]

    if any(result is None for result in results):
        row("runs", ["yes" if run.result is not None else f"no: {run.problem}" for run in found.runs])
    if len(ran) == 2:
        row("attention_axes", each(lambda r: format_shape(r.derivation.layer.attention_axes)))
        for name in ("output", "attention_scores"):
            row(name, each(lambda r, n=name: format_shape(r.derivation.shapes[n].shape)))
        for name in ("output", "attention_scores"):
            row(
                f"summary() {name.replace('attention_', '')}",
                each(lambda r, n=name: "" if r.run is None else format_shape(r.run.symbolic[n])),
            )
        row("path (no scores)", each(lambda r: str(r.derivation.execution_path)))
        row("params", each(lambda r: f"{r.derivation.params:,}"))
        row("checks", each(lambda r: " ".join(STATUS_MARK[check.status][0] for check in r.checks)))
        row("recorded call", each(_recorded))
    console.print(table)
    if len(ran) == 2:
        _majors_equations(found, console)
        console.print(Text("Outputs", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row("called with scores", diff_cell(found.output_max_abs_diff, found.tolerance))
        grid.add_row("as a model calls it", diff_cell(found.model_call_max_abs_diff, found.tolerance))
        grid.add_row("attention scores", diff_cell(found.scores_max_abs_diff, found.tolerance))
        grid.add_row(
            "",
            Text(f"max |difference| (tolerance {found.tolerance:g} for {found.config.dtype})", style="dim"),
        )
        console.print(grid)
        console.print()
    migration = found.migration
    if migration is not None:
        console.print(
            Text(f"{keras2.version}'s get_config() in Keras {migration.keras_version}", style="bold")
        )
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        version = keras2.version.removeprefix("Keras ")
        for line in migration_lines(migration, found.migration_output_max_abs_diff, found.tolerance, version):
            grid.add_row("", line)
        console.print(grid)
        console.print()
    console.print(Text("Differences", style="bold"))
    if not found.differences:
        console.print(Text("none: the two compute and report the same here"))
    listed = Table.grid(padding=(0, 1))
    listed.add_column(justify="right", no_wrap=True)
    listed.add_column(overflow="fold")
    for number, difference in enumerate(found.differences, 1):
        style = "" if difference.explained else "bold red"
        mark = "" if difference.explained else " (UNEXPLAINED)"
        listed.add_row(f"{number}.", Text(f"{difference.sentence}{mark}", style=style))
    console.print(listed)


def migration_lines(migration: MigrationRun, diff: float | None, tolerance: float, keras2: str) -> list[Text]:
    """A Keras 2 config in Keras 3: refused as saved?, what the rewrite changes, and whether it holds."""
    refused = migration.as_saved_refused
    lines = [Text(f"as saved: refused ({refused})" if refused else "as saved: loads")]
    removed = [change.key for change in migration.migration.changes if change.removed]
    if removed:
        lines.append(Text(f"remove {', '.join(removed)}"))
    lines += [
        Text(f"{change.key} {change.old} -> {change.new}: {change.why}")
        for change in migration.migration.changes
        if not change.removed
    ]
    if migration.problem is not None:
        lines.append(Text(f"rewritten: refused ({migration.problem})", style="bold red"))
    elif diff is not None:
        lines.append(
            Text.assemble(
                f"rewritten: loads; max |diff| from Keras {keras2}'s output ", diff_cell(diff, tolerance)
            )
        )
    return lines


def _majors_equations(found: MajorsRun, console: Console) -> None:
    """The einsum equations each Keras built: one line when they agree, both when not."""
    equations = [run.result.run.equations for run in found.runs if run.result and run.result.run]
    if len(equations) != 2:
        return
    console.print(Text("Einsum equations (from the built layers)", style="bold"))
    width = max(len(run.version) for run in found.runs)
    for step, first in equations[0].items():
        second = equations[1].get(step, "")
        if first == second:
            console.print(Text(f"{step}: {first} (the same in both)"))
            continue
        console.print(Text(f"{step}: differs", style="bold yellow"))
        for run, equation in zip(found.runs, (first, second), strict=True):
            console.print(Text(f"  {run.version:<{width}}  {equation}"))
    console.print()


def _majors_verdict(found: MajorsRun) -> Text:
    if found.failures:
        return Text(f"check failed: {found.failures[0]}", style="bold red")
    count = len(found.differences)
    diff = found.output_max_abs_diff
    outputs = (
        ""
        if diff is None
        else f"outputs {'equal' if diff <= found.tolerance else 'differ'} (max |diff| {diff:.1e}); "
    )
    if not count:
        return Text(f"{outputs}no other difference between the two here", style="green")
    return Text(
        f"{outputs}{count} difference{'s' if count != 1 else ''} named below, each accounted for by the two "
        "versions' rules",
        style="green",
    )
