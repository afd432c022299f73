"""scan: a model's attention calls, as tables and JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mha_cli.core.derived import Derivation
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.other import NO_PROJECTIONS, Heads, OtherCheck, Verdict
from mha_cli.core.summary import configuration_warnings, heads_warning
from mha_cli.operations.explain import Status
from mha_cli.operations.scan import CallResult, ScanResult, shapes_line
from mha_cli.output.explain import render
from mha_cli.output.majors import migration_lines
from mha_cli.output.tables import STATUS_MARK, titled_table

if TYPE_CHECKING:
    from mha_cli.runtime.others import OtherAttention


def _call_status(found: CallResult) -> Text:
    if found.error is not None:
        return Text("ERROR", style="bold red")
    assert found.result is not None
    statuses = [check.status for check in found.result.checks]
    if configuration_warnings(found.result.derivation):  # heads attended: never a plain PASS
        statuses.append(Status.WARNING)
    for status in (Status.FAILED, Status.WARNING, Status.PASSED, Status.SKIPPED):
        if status in statuses:
            mark, style = STATUS_MARK[status]
            return Text(mark, style=style)
    return Text("")


#: Below this many columns the scan overview is a list rather than a seven-column table.
_SCAN_TABLE_WIDTH = 100


def _scan_row(found: CallResult) -> tuple[str, str, str, str, str, str, Text]:
    """One call's overview: label, heads and axes, shapes, path, params, scores per item, status."""
    call = found.call
    label = call.key + (" (scores)" if call.scores_requested else "")
    if call.class_name != "MultiHeadAttention":
        label += f" [{call.class_name}]"
    if found.result is None:
        return label, "", shapes_line(found), "", "", "", _call_status(found)
    d = found.result.derivation
    arguments = call.arguments
    heads = (
        # GroupQueryAttention: query heads, the key/value heads they share, and head_dim.
        f"{arguments['num_query_heads']} ({arguments['num_key_value_heads']} kv) x {arguments['head_dim']}"
        if call.kind == "gqa"
        else f"{arguments['num_heads']} x {arguments['key_dim']}"
    )
    return (
        label,
        f"{heads}, {format_shape(d.layer.attention_axes)}",
        shapes_line(found),
        str(d.execution_path),
        f"{d.params:,}",
        format_bytes(d.scores_bytes_per_item()),
        _call_status(found),
    )


def _listed(names: tuple[str, ...]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def render_scan(
    scan: ScanResult,
    console: Console,
    layers: tuple[CallResult, ...] = (),
    others: tuple[OtherAttention, ...] = (),
) -> None:
    """The overview of every attention call (like model.summary(), about attention), then any details."""
    inputs = ", ".join(f"{spec.name} {format_shape((None, *spec.shape))}" for spec in scan.inputs)
    head = Text()
    head.append(f"Model {scan.model_name!r}", style="bold")
    head.append(f"  from {scan.spec.shown}; weights: {scan.weights_from}", style="dim")
    console.print(head)
    if not scan.calls:
        if not scan.other_attention:
            looked = (
                "and no other layer computes attention"
                if scan.others_not_looked_for is None
                else f"other attention was not looked for: {scan.others_not_looked_for}"
            )
            console.print(
                f"No MultiHeadAttention or GroupQueryAttention layer in this model (Keras "
                f"{scan.keras_version}), {looked}: nothing to explain."
            )
            return
        how = "traced, not run"
        if scan.others_run:
            how = f"traced, then run once on random inputs (batch {scan.spec.batch}, seed {scan.spec.seed})"
        console.print(Text(f"inputs: {inputs}; {how}", style="dim"))
        console.print(
            f"No MultiHeadAttention or GroupQueryAttention layer in this model (Keras {scan.keras_version}); "
            "other layers compute attention:"
        )
        _render_others(scan, console, others)
        return
    console.print(Text(f"inputs: {inputs}; batch {scan.spec.batch}, seed {scan.spec.seed}", style="dim"))
    title = (
        f"{len(scan.calls)} attention call(s) in {scan.layer_count} layer(s), Keras {scan.keras_version} "
        f"on {scan.backend}"
    )
    rows = [_scan_row(found) for found in scan.calls]
    if console.width >= _SCAN_TABLE_WIDTH:
        table = titled_table(title)
        for column in ("layer", "heads x key_dim, axes", "query -> scores -> output", "path"):
            table.add_column(column, overflow="fold")  # nothing is cut: long values fold
        for column in ("params", "scores/item"):
            table.add_column(column, justify="right", overflow="fold")
        table.add_column("status", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:  # too narrow for seven columns: a short list, one block per call
        console.print(Text(title, style="bold"))
        for label, arguments, shapes, path, params, scores, status in rows:
            line = Text(f"{label}  ")
            line.append_text(status)
            # A path is copied into --layer: never broken by a newline, even if longer than the screen.
            console.print(line, soft_wrap=True)
            console.print(Text(f"  heads x key_dim, axes {arguments}; {shapes}", style="dim"))
            if path:
                console.print(Text(f"  {path} path, {params} params, scores {scores} per item", style="dim"))
    notes = []
    if scan.not_executed_reason is not None:
        notes.append(Text(f"NOT EXECUTED: {scan.not_executed_reason}", style="yellow"))
    for found in scan.calls:
        call = found.call
        if found.error is not None:
            notes.append(Text(f"ERROR {call.key}: {found.error}", style="bold red"))
            continue
        assert found.result is not None
        if isinstance(found.result.derivation, Derivation) and found.result.derivation.heads_attended:
            notes.append(
                Text(f"WARN {call.key}: {heads_warning(found.result.derivation, brief=True)}", style="yellow")
            )
        if found.summary_scores_wrong:
            symbolic = found.result.check("keras_symbolic")
            real = found.result.derivation.shapes["attention_scores"].shape
            notes.append(
                Text(
                    f"WARN {call.key}: model.summary() shows its scores as "
                    f"{format_shape(getattr(symbolic, 'attention_scores', None) or ())}; the real shape is "
                    f"{format_shape(real)} (keras-team/keras#19303)",
                    style="yellow",
                )
            )
        if call.overrides:
            unbiased = call.arguments.get("unbiased") or ()
            built = f" (its build leaves {' and '.join(unbiased)} without a bias)" if unbiased else ""
            notes.append(
                Text(
                    f"note {call.key}: {call.class_name} overrides {_listed(call.overrides)}{built}; "
                    + found.result.check("model_call").detail,
                    style="dim",
                )
            )
        for check in found.result.failed:
            notes.append(Text(f"FAIL {call.key}: {check.name}: {check.detail}", style="bold red"))
        if call.mask_sources:
            notes.append(
                Text(
                    f"mask {call.key}: {', '.join(call.mask_sources)} -> "
                    f"{format_shape(call.mask_shape or ())} (combined as Keras does)",
                    style="dim",
                )
            )
    for note in notes:
        console.print(note)
    if scan.other_attention:
        if notes:  # the overview's table ends with a blank line; its notes do not
            console.print()
        _render_others(scan, console, others)
    if scan.migrations:
        _scan_migrations(scan, console)
    if not layers and not others:
        console.print(Text("Details of one layer: --layer PATH (the call's path, as listed).", style="dim"))
    for found in layers:
        console.print()
        console.print(Text(f"== {found.call.key} ({found.call.class_name})", style="bold"), soft_wrap=True)
        if found.result is not None:
            render(found.result, console, from_model=True)


def _scan_migrations(scan: ScanResult, console: Console) -> None:
    """scan --keras all: each Keras 2 layer's config in Keras 3, as saved and rewritten, and its output."""
    first = scan.migrations[0].migration
    console.print()
    console.print(
        Text(
            f"In Keras {first.keras_version}: each layer's get_config() from Keras {scan.keras_version}, "
            "loaded by MultiHeadAttention.from_config and run on the layer's weights and first call",
            style="bold",
        )
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for found in scan.migrations:
        for number, line in enumerate(
            migration_lines(found.migration, found.output_max_abs_diff, found.tolerance, scan.keras_version)
        ):
            grid.add_row(found.path if number == 0 else "", line)
    console.print(grid)
    console.print()


def _compact(shape: tuple[int | None, ...]) -> str:
    """A shape without its batch axis, as the overview writes them: ``(8,16)``."""
    return "(" + ",".join("None" if size is None else str(size) for size in shape[1:]) + ")"


def _render_others(scan: ScanResult, console: Console, selected: tuple[OtherAttention, ...]) -> None:
    """The calls of layers that compute attention mha-explain does not explain, and any --layer details."""
    title = (
        f"{len(scan.other_attention)} attention call(s) mha-explain does not explain (shapes from a symbolic "
        "pass; status from a real one)"
    )
    table = titled_table(
        title, "layer", "class", "heads x head_dim", "inputs -> output", "in its call", "status"
    )
    table.columns[2].no_wrap = table.columns[-1].no_wrap = True
    for other in scan.other_attention:
        inputs = ", ".join(f"{name} {_compact(shape)}" for name, shape in other.inputs)
        output = "" if other.output is None else f" -> {_compact(other.output)}"
        table.add_row(
            other.key,
            other.class_name,
            _heads(other.heads),
            inputs + output,
            other.evidence,
            _status(other.check),
        )
    console.print(table)
    console.print(
        Text(
            "not explained: their class is neither MultiHeadAttention nor GroupQueryAttention, nor a "
            "subclass, so nothing is derived for them; heads are read from their own kernels where they "
            "project onto heads. VERIFIED: on a real pass, grouped-query attention re-executed in NumPy on "
            "the query, key and value the call's attention received (after any rotary embedding), then its "
            "own output projection, reproduced its output (Attention and AdditiveAttention: their own "
            "formula, as explain --layer dot|additive derives it); NOT REPRODUCED: it computes something "
            "else; NOT VERIFIED says why nothing was re-executed. --layer PATH shows each step.",
            style="dim",
        )
    )
    for other in selected:
        console.print()
        console.print(
            Text(f"== {other.key} ({other.class_name}), not explained", style="bold"), soft_wrap=True
        )
        console.print(Text(f"in its call: {other.evidence}", style="dim"))
        heads = other.heads
        if isinstance(heads, Heads):
            layout = "the query's heads first, " if heads.heads_first else ""
            console.print(
                Text(
                    f"heads: {_heads(heads)} (query heads, key/value heads, head_dim), read from its query, "
                    f"key and value kernels ({layout}below); {heads.agreement}",
                    style="dim",
                )
            )
            console.print(
                Text(
                    f"a decoder caches {heads.kv_cache_bytes_per_token(other.dtype):,} bytes per token for "
                    f"it (key and value, {heads.key_value_heads} x {heads.head_dim} in {other.dtype}); "
                    f"{other.params:,} params",
                    style="dim",
                )
            )
        else:
            console.print(Text(f"heads {heads}; {other.params:,} params", style="dim"))
        # Not verified for want of heads: the heads line above already says why.
        if other.check is not None and not (isinstance(heads, str) and heads in other.check.detail):
            _render_other_check(other.check, console)
        if not other.projections:
            continue
        projections = titled_table("its own projections, as built", "layer", "class", "equation", "kernel")
        for projection in other.projections:
            projections.add_row(
                projection.name,
                projection.class_name,
                projection.equation or "...i,ij->...j",
                format_shape(projection.kernel),
            )
        console.print(projections)


def _heads(heads: Heads | str) -> str:
    """``4 (2 kv) x 4``: query heads, the key/value heads they share and head_dim; or ``not read``."""
    if isinstance(heads, str):
        return "none" if heads == NO_PROJECTIONS else "not read"
    if heads.key_value_heads == heads.query_heads:
        return f"{heads.query_heads} x {heads.head_dim}"
    return f"{heads.query_heads} ({heads.key_value_heads} kv) x {heads.head_dim}"


def _status(check: OtherCheck | None) -> Text:
    """A not-explained call's status: what its real pass showed (none ran: NOT EXPLAINED)."""
    if check is None:
        return Text("NOT EXPLAINED", style="yellow")
    style = {Verdict.VERIFIED: "green", Verdict.NOT_REPRODUCED: "red"}.get(check.verdict, "yellow")
    return Text(str(check.verdict).upper(), style=style)


def _render_other_check(check: OtherCheck, console: Console) -> None:
    """--layer: what the real pass re-executed of the call, step by step, and what it saw."""
    console.print(Text(check.detail, style=_status(check).style), soft_wrap=False)
    received = ", ".join(f"{name} {format_shape(shape)}" for name, shape in check.received)
    facts = [
        ("received (batch, positions, heads, head_dim)", received or None),
        ("mask", check.mask),
        ("scale", None if check.scale is None else f"{check.scale:.4g}"),
        ("soft cap", None if check.soft_cap is None else f"{check.soft_cap:g}"),
        ("rotary", check.rotary),
        ("ran in its call", ", ".join(check.sublayers) or None),
    ]
    for name, fact in facts:
        if fact is not None:
            console.print(Text(f"{name}: {fact}", style="dim"))
    if not check.steps:
        return
    steps = titled_table(
        f"NumPy against the layer (relative: of the layer's largest value; tolerance {check.tolerance:.0e})",
        "step",
        "max |diff|",
        "relative",
    )
    for step in check.steps:
        steps.add_row(step.what, f"{step.max_abs_diff:.1e}", f"{step.relative:.1e}")
    console.print(steps)
