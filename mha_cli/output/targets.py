"""mha-explain targets: a row per converter, its verdict, and what decides it, cited."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from mha_cli.core.targets import REFUSED, SUPPORTED, UNKNOWN, TargetsTable
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


def render_targets(table: TargetsTable, console: Console, heading: str) -> None:
    console.print(Text(heading, style="bold"))
    uses = "; ".join(feature.shown for feature in table.features)
    console.print(Text(f"uses: {uses}", style="dim"))
    grid = titled_table("", "target", "verdict", "what decides it (the target's rule, where it is)")
    for target in table.targets:
        verdict = table.verdict(target.name)
        grid.add_row(
            f"{target.title}\n{target.version}",
            Text(verdict.upper(), style=_STYLE[verdict]),
            _decides(table, target.name),
        )
    console.print(grid)
    console.print(
        Text(
            "Rules read by hand from each target's source at the version shown (mha_cli/core/targets.toml "
            "cites each); unknown: nobody has read what the target does with it. This is what the targets' "
            "code says, not a conversion: a round trip is the proof.",
            style="dim",
        )
    )


def targets_document(table: TargetsTable, layer: str) -> dict[str, Any]:
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
    }
