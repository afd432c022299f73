"""compare --layer gqa: MHA, GQA and MQA (or every key/value head count) on the same input."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.text import Text

from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.summary import join_words
from mha_cli.operations.explain import Status
from mha_cli.operations.heads import HeadsComparison, variant
from mha_cli.output.gqa import grouping
from mha_cli.output.tables import STATUS_MARK, titled_table

#: Short headers: a number is never cut or wrapped, so the columns must fit 60 columns whole.
_COLUMNS = ("kv", "", "q/kv", "cache", "params", "FLOPs/item")
_WORST_FIRST = (Status.FAILED, Status.WARNING, Status.PASSED)


def render_heads(found: HeadsComparison, console: Console) -> None:
    """A row per key/value head count: what changes (projections, cache, params) and what does not."""
    derivations = found.derivations
    first = derivations[0]
    executed = all(result.executed for result in found.results)
    counts = join_words([f"{d.layer.num_key_value_heads} ({variant(d)})" for d in derivations])
    asked = f"{'every legal number of ' if found.every else ''}key/value heads {counts}"
    console.print(
        Text(
            f"GroupQueryAttention with {first.layer.num_query_heads} query heads of "
            f"{first.layer.head_dim} on query {format_shape(first.inputs['query'].shape)}: {asked}",
            style="bold",
        )
    )
    rows: list[tuple[str | Text, ...]] = []
    for result, d in zip(found.results, derivations, strict=True):
        statuses = {check.status for check in result.checks}
        worst = next((status for status in _WORST_FIRST if status in statuses), Status.SKIPPED)
        mark, style = STATUS_MARK[worst]
        rows.append(
            (
                str(d.layer.num_key_value_heads),
                variant(d),
                str(d.layer.num_repeats),
                format_bytes(d.kv_cache_bytes_per_token()),
                f"{d.params:,}",
                f"{d.flops_per_item:,}",
                Text(mark, style=style) if executed else Text("not run", style="dim"),
            )
        )
    table = titled_table("", *_COLUMNS, "checks")
    for column in table.columns:
        column.no_wrap = True
    for column in table.columns[3:6]:
        column.justify = "right"
    for row in rows:
        table.add_row(*row)
    if Measurement.get(console, console.options.update_width(10_000), table).maximum <= console.width:
        console.print(table)
    else:  # too narrow for the table whole: a row a line, nothing cut
        for row in rows:
            line = Text(
                f"{row[0]} {row[1]}: q/kv {row[2]}, cache {row[3]}, params {row[4]}, FLOPs/item {row[5]}, "
            )
            console.print(line.append_text(Text.assemble("checks ", row[6])))
    console.print(
        "kv: key/value heads; q/kv: query heads reading each; cache: key/value bytes per token; checks: "
        "the worst of explain's four "
        "(explain --layer gqa --num-key-value-heads N says more). Key and value are projected to "
        + ", ".join(format_shape(d.shapes["key_projected"].shape) for d in derivations)
        + " and repeated to the query's heads before the dot product."
    )
    scores = sorted({format_shape(d.shapes["attention_scores"].shape) for d in derivations})
    same_equations = len({str(d.equations) for d in derivations}) == 1
    console.print(
        f"The same in every row: scores {', '.join(scores)}, "
        f"output {format_shape(first.shapes['output'].shape)}"
        + (", the einsum equations" if same_equations else "")
        + "."
    )
    smallest, largest = derivations[-1], derivations[0]
    if smallest is not largest:
        ratio = largest.kv_cache_bytes_per_token() // smallest.kv_cache_bytes_per_token()
        shared = (
            grouping(smallest) if variant(smallest) == "GQA" else "every query head reads one key/value head"
        )
        console.print(
            f"{variant(smallest)} caches {ratio}x less per token than {variant(largest)} "
            f"({format_bytes(smallest.kv_cache_bytes_per_token())} against "
            f"{format_bytes(largest.kv_cache_bytes_per_token())}) and has "
            f"{largest.params - smallest.params:,} fewer parameters; {shared}."
        )
    if not executed:
        reason = next(r.not_executed_reason for r in found.results if not r.executed)
        console.print(Text(f"Not verified by a forward pass: {reason}", style="yellow"))
    elif not any(result.failed for result in found.results):
        verified = f"Every row verified on the real layer ({len(found.results)} forward passes)."
        console.print(Text(verified, style="green"))
