"""mha-explain targets: a row per converter, its verdict, and what decides it, cited."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from mha_cli.core.targets import REFUSED, SUPPORTED, UNKNOWN, TargetsTable
from mha_cli.operations.roundtrip import RoundTrip
from mha_cli.output.documents import SCHEMA_VERSION
from mha_cli.output.tables import titled_table

_STYLE = {SUPPORTED: "green", REFUSED: "bold red", UNKNOWN: "yellow"}


def _decides(table: TargetsTable, target: str) -> str:
    """The features that decide the verdict: each refused one with its rule, else each unknown one."""
    verdict = table.verdict(target)
    lines = []
    for feature in table.features:
        cell = table.cells[(target, feature.name)]
        if cell.verdict != verdict:
            continue
        if cell.rule is not None:
            lines.append(f"{feature.shown}: {cell.rule.rule} ({cell.rule.where})")
        else:
            lines.append(f"{feature.shown}: not read")
    return "\n".join(lines)


def _trip(found: RoundTrip | None) -> Text:
    if found is None:
        return Text("-", style="dim")
    style = (
        "green" if found.status == "passed" else "yellow" if found.status == "not installed" else "bold red"
    )
    return Text(f"{found.status.upper()}: {found.detail}", style=style)


def render_targets(
    table: TargetsTable, console: Console, heading: str, trips: tuple[RoundTrip, ...] | None = None
) -> None:
    console.print(Text(heading, style="bold"))
    uses = "; ".join(feature.shown for feature in table.features)
    console.print(Text(f"uses: {uses}", style="dim"))
    columns = ["target", "verdict", "what decides it (the target's rule, where it is)"]
    if trips is not None:
        columns.append("round trip (converted and run here)")
    grid = titled_table("", *columns)
    by_target = {trip.target: trip for trip in trips or ()}
    for target in table.targets:
        verdict = table.verdict(target.name)
        row: list[str | Text] = [
            f"{target.title}\n{target.version}",
            Text(verdict.upper(), style=_STYLE[verdict]),
            _decides(table, target.name),
        ]
        if trips is not None:
            row.append(_trip(by_target.get(target.name)))
        grid.add_row(*row)
    console.print(grid)
    console.print(
        Text(
            "Rules read by hand from each target's source at the version shown (mha_cli/core/targets.toml "
            "cites each); unknown: nobody has read what the target does with it. This is what the targets' "
            "code says, not a conversion: a round trip is the proof.",
            style="dim",
        )
    )


def targets_document(
    table: TargetsTable, layer: str, trips: tuple[RoundTrip, ...] | None = None
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "layer": layer,
        "features": [{"name": feature.name, "shown": feature.shown} for feature in table.features],
        "targets": [
            {
                "name": target.name,
                "title": target.title,
                "source": target.source,
                "version": target.version,
                "verdict": table.verdict(target.name),
                "cells": {
                    feature.name: {
                        "verdict": table.cells[(target.name, feature.name)].verdict,
                        "rule": None
                        if (rule := table.cells[(target.name, feature.name)].rule) is None
                        else rule.rule,
                        "where": None if rule is None else rule.where,
                    }
                    for feature in table.features
                },
            }
            for target in table.targets
        ],
        "round_trips": None
        if trips is None
        else [
            {
                "target": trip.target,
                "status": trip.status,
                "detail": trip.detail,
                "max_abs_diff": trip.max_abs_diff,
                "tolerance": trip.tolerance,
            }
            for trip in trips
        ],
    }
