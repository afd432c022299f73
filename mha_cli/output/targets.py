"""mha-explain targets: a row per converter, its verdict, and what decides it, cited."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from mha_cli.core.targets import REFUSED, SUPPORTED, UNKNOWN, ModelTargets, TargetsTable
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
    table: TargetsTable,
    console: Console,
    heading: str,
    trips: tuple[RoundTrip, ...] | None = None,
    footnote: bool = True,
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
    if footnote:
        _footnote(console)


def _footnote(console: Console) -> None:
    console.print(
        Text(
            "Rules read by hand from each target's source at the version shown (mha_cli/core/targets.toml "
            "cites each); unknown: nobody has read what the target does with it. This is what the targets' "
            "code says, not a conversion: a round trip is the proof.",
            style="dim",
        )
    )


_LAYERS = {"mha": "MultiHeadAttention", "gqa": "GroupQueryAttention"}


def _listed(calls: tuple[str, ...], most: int = 4) -> str:
    shown = ", ".join(calls[:most])
    return shown + (f" and {len(calls) - most} more" if len(calls) > most else "")


def render_model_targets(
    found: ModelTargets, console: Console, trips: tuple[tuple[str, RoundTrip], ...] | None = None
) -> None:
    """scan --targets: the model's verdict per target first, then each group of calls' table, then
    (--run) each call's round trips."""
    console.print()
    grid = titled_table("Converters for this model", "target", "verdict", "the calls that decide it")
    for target in found.targets:
        verdict = found.verdict(target.name)
        if verdict == REFUSED:
            why = "refuses " + _listed(found.refusing(target.name))
        elif verdict == UNKNOWN:
            unread = tuple(
                call
                for group in found.groups
                if group.table.verdict(target.name) == UNKNOWN
                for call in group.calls
            )
            reasons = [f"not read for {_listed(unread)}"] if unread else []
            if found.uncovered:
                reasons.append(f"{_listed(tuple(call for call, _, _ in found.uncovered))} not covered")
            why = "; ".join(reasons)
        else:
            why = "takes every call"
        grid.add_row(target.title, Text(verdict.upper(), style=_STYLE[verdict]), why)
    console.print(grid)
    for group in found.groups:
        console.print()
        count = len(group.calls)
        heading = f"{count} call{'s' if count > 1 else ''} of {_LAYERS[group.layer]}: {_listed(group.calls)}"
        render_targets(group.table, console, heading=heading, footnote=False)
    if found.uncovered:
        console.print()
        uncovered = titled_table("Attention the rules do not cover", "call", "why")
        for call, _, why in found.uncovered:
            uncovered.add_row(call, why)
        console.print(uncovered)
    if trips is not None:
        console.print()
        title = "Round trips: each call converted as its own layer, the model's weights, its own inputs"
        grid = titled_table(title, "call", "target", "result")
        for call, trip in trips:
            grid.add_row(call, trip.target, _trip(trip))
        console.print(grid)
    _footnote(console)


def model_targets_document(
    found: ModelTargets, trips: tuple[tuple[str, RoundTrip], ...] | None = None
) -> dict[str, Any]:
    """scan --json's ``targets``: the model's verdict per target, each group of calls, what is not
    covered, and (--run; else null) each call's round trips."""
    return {
        "verdicts": {target.name: found.verdict(target.name) for target in found.targets},
        "refusing": {target.name: list(found.refusing(target.name)) for target in found.targets},
        "groups": [
            {"calls": list(group.calls)}
            | {
                name: value
                for name, value in targets_document(group.table, group.layer).items()
                if name not in ("schema_version", "round_trips")
            }
            for group in found.groups
        ],
        "not_covered": [{"call": call, "class": what, "why": why} for call, what, why in found.uncovered],
        "round_trips": None
        if trips is None
        else [{"call": call} | _trip_document(trip) for call, trip in trips],
    }


def _trip_document(trip: RoundTrip) -> dict[str, Any]:
    return {
        "target": trip.target,
        "status": trip.status,
        "detail": trip.detail,
        "max_abs_diff": trip.max_abs_diff,
        "tolerance": trip.tolerance,
    }


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
        "round_trips": None if trips is None else [_trip_document(trip) for trip in trips],
    }
