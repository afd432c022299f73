"""compare --layer dot|additive: MultiHeadAttention, Attention and AdditiveAttention side by side.

One column per layer, a row per question people ask of them (how it is built and called, what it
scores with, which shapes come out, what it costs), the rows that differ marked, each column's own
verification; then how the named layer differs from MultiHeadAttention, in sentences.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from mha_cli.core.call import call
from mha_cli.core.dense import DenseDerivation, call_line, constructor
from mha_cli.core.derived import Derivation
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.operations.dense import DenseResult
from mha_cli.operations.explain import ExplainResult, Status
from mha_cli.operations.families import FAMILIES, Families, Refused
from mha_cli.output.code import layer_line
from mha_cli.output.tables import compared_row, titled_table

_ROWS = (
    "layer",
    "call",
    "projections",
    "heads",
    "scores from",
    "masks",
    "attention_scores",
    "output",
    "params",
    "FLOPs/item",
    "largest tensor/item",
    "verified",
)


def _verified(result: ExplainResult | DenseResult) -> str:
    if not result.executed:
        return f"not run: {result.not_executed_reason}"
    failed = [check.name for check in result.failed]
    if failed:
        return f"FAILED: {', '.join(failed)}"
    passed = sum(check.status is Status.PASSED for check in result.checks)
    notes = sum(check.status is Status.WARNING for check in result.checks)
    return f"{passed} passed" + (f", {notes} note" if notes else "")


def _mha_cells(result: ExplainResult) -> dict[str, str]:
    d = result.derivation
    assert isinstance(d, Derivation)
    layer = d.layer
    given = [f"attention_mask {format_shape(d.config.mask_shape)}"] if d.config.mask_shape else []
    masks = " + ".join([*given, *(["causal"] if d.config.causal else [])]) or "none"
    return {
        "layer": layer_line(d),
        "call": call(d).replace(", return_attention_scores=True", ""),
        "projections": "query, key, value, output (EinsumDense)",
        "heads": f"{layer.num_heads} x key_dim {layer.key_dim}",
        "scores from": f"q . k / sqrt({layer.key_dim}) per head, q and k projected",
        "masks": masks,
        "attention_scores": format_shape(d.shapes["attention_scores"].shape),
        "output": format_shape(d.shapes["output"].shape),
        "params": f"{d.params:,}",
        "FLOPs/item": f"{d.flops_per_item:,}",
        "largest tensor/item": _largest(d),
        "verified": _verified(result),
    }


def _largest(d: Derivation | DenseDerivation) -> str:
    """The largest tensor of one batch item, and its bytes."""
    tensors = {**d.inputs, **d.shapes}
    largest = max(tensors, key=lambda name: d.bytes_per_item(tensors[name]))
    return f"{largest} {format_bytes(d.bytes_per_item(tensors[largest]))}"


def _short_score(d: DenseDerivation) -> str:
    scale = "scale x " if d.use_scale else ""
    if d.score_mode == "dot":
        return "q . k" + (" x scale" if d.use_scale else "") + ", as given"
    if d.score_mode == "concat":
        return f"w x sum(tanh({scale}(q + k))), as given"
    return f"sum({scale}tanh(q + k)), as given"


def _dense_cells(result: DenseResult) -> dict[str, str]:
    d = result.derivation
    shown = [
        f"{mask.name} {format_shape(mask.shape)}" if mask.name != "causal" else "causal" for mask in d.masks
    ]
    return {
        "layer": constructor(d),
        "call": call_line(d).removeprefix("output, scores = ").replace(", return_attention_scores=True", ""),
        "projections": "none",
        "heads": "none",
        "scores from": _short_score(d),
        "masks": " + ".join(shown) or "none",
        "attention_scores": format_shape(d.shapes["attention_scores"].shape),
        "output": format_shape(d.shapes["output"].shape),
        "params": f"{d.params:,}",
        "FLOPs/item": f"{d.flops_per_item:,}",
        "largest tensor/item": _largest(d),
        "verified": _verified(result),
    }


def cells(result: ExplainResult | DenseResult | Refused) -> dict[str, str]:
    if isinstance(result, Refused):
        return {row: ("refuses this input: " + result.reason if row == "layer" else "-") for row in _ROWS}
    if isinstance(result, DenseResult):
        return _dense_cells(result)
    return _mha_cells(result)


def render_families(found: Families, console: Console) -> None:
    columns = {kind: cells(result) for kind, result in found.results.items()}
    asked = found.results[found.asked]
    query = asked.derivation.inputs["query"] if not isinstance(asked, Refused) else None
    where = f" on query {format_shape(query.shape)}" if query is not None else ""
    console.print(Text(f"MultiHeadAttention, Attention and AdditiveAttention{where}", style="bold"))
    table = titled_table("", "", *(FAMILIES[kind] for kind in columns), "")
    for row in _ROWS:
        compared_row(table, row, [columns[kind][row] for kind in columns])
    console.print(table)
    if isinstance(asked, DenseResult):
        console.print(
            Text(f"How {asked.derivation.keras_class} differs from MultiHeadAttention", style="bold")
        )
        for line in asked.derivation.differences:
            console.print(Text(f"- {line}"))
        if asked.derivation.config.query_mask:
            console.print(
                Text("- MultiHeadAttention has no query_mask argument: its column runs without one.")
            )
