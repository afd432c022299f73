"""explain: the tables and the JSON document of one configuration."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mha_cli.core.config import Role
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.operations.dense import DenseResult
from mha_cli.operations.explain import (
    ExplainResult,
)
from mha_cli.operations.picture import Picture
from mha_cli.output.headline import headline
from mha_cli.output.layers import text_of
from mha_cli.output.picture import picture_section
from mha_cli.output.tables import STATUS_MARK, size_text, titled_table

_ROLE_STYLE = {Role.BATCH: "dim", Role.ATTENDED: "bold green", Role.FREE: "yellow", Role.FEATURE: "cyan"}


_ROLE_MEANING = {
    Role.BATCH: "independent examples",
    Role.ATTENDED: "attention runs along it",
    Role.FREE: "not attended: each slice attends on its own",
}


def _from_model(d: Derived, name: str, marker: str) -> str:
    """Where a scanned layer's argument came from: its config, which Keras fills in itself (value_dim
    when None, attention_axes on build), so whether the model's author wrote it cannot be told."""
    if marker != "given":
        return marker
    if (
        name == "attention_axes"
        and isinstance(d, Derivation)
        and d.layer.attention_axes == tuple(range(1, d.rank - 1))
    ):
        return "the layer's config (Keras fills it in on build; None reads the same)"
    if name == "value_dim" and isinstance(d, Derivation) and d.layer.value_dim == d.layer.key_dim:
        return "the layer's config (Keras fills in key_dim for None)"
    return "the layer's config"


def layer_section(result: ExplainResult, *, from_model: bool = False) -> Group:
    """The layer's arguments and where each came from; ``from_model``: a scanned layer's, read from its
    config rather than given on the command line."""
    d = result.derivation
    config = d.config

    table = titled_table("", "argument", "value", "")
    for name, value, marker in text_of(d).arguments(d):
        shown = _from_model(d, name, marker) if from_model else marker
        table.add_row(name, value, Text(shown, style="dim" if marker != "given" else ""))
    run = result.run
    if run is None:
        where = f"NOT EXECUTED: {result.not_executed_reason}"
    elif not run.executed:
        where = f"Keras {run.keras_version} on {run.backend}; NOT EXECUTED: {result.not_executed_reason}"
    else:
        where = (
            f"Keras {run.keras_version} on {run.backend}; "
            f"forward pass with batch {config.batch}, seed {config.seed}"
        )
    return Group(Text("Layer", style="bold"), Text(where, style="dim"), table)


def axes_table(d: Derived) -> Table:
    table = titled_table("Axes", "axis", "neg", "name", "role", "query", "key", "value", "meaning")
    for axis in d.axes:
        table.add_row(
            str(axis.index),
            str(axis.negative_index),
            axis.name,
            Text(axis.role.value, style=_ROLE_STYLE[axis.role]),
            size_text(axis.query_size),
            size_text(axis.key_size),
            size_text(axis.value_size),
            _feature_meaning(d) if axis.role is Role.FEATURE else _ROLE_MEANING[axis.role],
        )
    return table


def _feature_meaning(d: Derived) -> Text:
    meaning = Text(text_of(d).feature_meaning)
    if d.heads_attended:  # attention_axes counts the projected query's axes, where this index is the heads
        meaning.append(
            f"; attention then runs over the heads (attention_axes {d.rank - 1})", style="bold yellow"
        )
    return meaning


def shapes_table(d: Derived) -> Table:
    table = titled_table("Shapes", "tensor", "shape", "axes", f"{d.layer.dtype} / item")
    table.columns[-1].justify = "right"
    for name, tensor in {**d.inputs, **d.shapes}.items():
        style = "bold" if name in ("attention_scores", "output") else ""
        table.add_row(
            name,
            Text(format_shape(tensor.shape), style=style),
            ", ".join(tensor.labels),
            format_bytes(d.bytes_per_item(tensor)),
        )
    return table


def einsums_table(d: Derived) -> Table:
    table = titled_table(
        "Einsum equations (as the installed Keras builds them)",
        "step",
        "equation",
        "operands -> result",
        "letters",
        "FLOPs/item",
    )
    for name, einsum in d.einsums.items():
        operands = " , ".join(format_shape(t.shape) for t in einsum.operands)
        legend = " ".join(f"{letter}={label}" for letter, label, _ in einsum.legend)
        table.add_row(
            name,
            Text(einsum.equation, style="bold"),
            f"{operands} -> {format_shape(einsum.result.shape)}",
            legend,
            f"{einsum.flops_per_item():,}",
        )
    table.add_row("total", "", "", "", f"{d.flops_per_item:,}", style="dim")
    # An equation is read whole: its column is as wide as the longest, the others wrap instead.
    table.columns[1].min_width = max(len(einsum.equation) for einsum in d.einsums.values())
    return table


def weights_table(d: Derived) -> Table:
    table = titled_table("Weights", "projection", "kernel", "bias", "params")
    for weight in d.weights:
        table.add_row(
            weight.projection,
            format_shape(weight.kernel),
            "-" if weight.bias is None else format_shape(weight.bias),
            f"{weight.params:,}",
        )
    table.add_row(Text("total", style="bold"), "", "", Text(f"{d.params:,}", style="bold"))
    return table


def summary_section(d: Derived) -> Group:
    return Group(Text("Summary", style="bold"), *(Text(f"- {line}") for line in d.summary))


def verification_section(result: ExplainResult | DenseResult, *, verbose: bool = False) -> Group:
    """One line per check: its short form, or with ``verbose`` the whole explanation."""
    lines = [Text("Verification", style="bold")]
    for check in result.checks:
        mark, style = STATUS_MARK[check.status]
        line = Text()  # wrapped: a detail is the explanation (cropped to the width, it was lost)
        line.append(f"{mark} ", style=style)
        line.append(f"{check.name}: ", style="bold")
        line.append(check.detail if verbose else check.brief)
        lines.append(line)
    return Group(*lines)


def call_convention_section(convention: dict[str, dict[str, Any]], *, keras2: bool) -> Group:
    table = titled_table(
        "Call convention (the real Model.get_config())", "layer", "called as", "args", "kwargs"
    )
    for name, recorded in convention.items():
        # Text, not markup: "[query, value]" is not a rich style.
        cells = (recorded["call"], json.dumps(recorded["args"]), json.dumps(recorded["kwargs"]))
        table.add_row(name, *(Text(cell) for cell in cells))
    if keras2:
        raw = [
            Text(f'"{name}" inbound_nodes: {json.dumps(recorded["inbound_nodes"])}')
            for name, recorded in convention.items()
        ]
        paragraph = (
            "Keras 2 (tf_keras) records a call as a list of [input, node, tensor, kwargs] entries: one per "
            "tensor of the first positional argument, and every other argument in the first entry's kwargs. "
            "So mha(query, value) stores query as the entry and value as a keyword, "
            '{"value": [input, 0, 0]}, though it was passed by position; Attention\'s one list argument '
            "becomes one entry per tensor. Keras 3 records args and kwargs as they were passed. A converter "
            "reading both formats binds MultiHeadAttention's tensors by MultiHeadAttention.call(query, "
            "value, key=None, ...): Keras 2's entries are the first argument, its kwargs the rest by name."
        )
        return Group(table, *raw, Text(paragraph))
    paragraph = (
        "Each inbound node's args and kwargs, with every tensor named by the input it comes from. "
        "A converter must read MultiHeadAttention's tensors from both args and kwargs of each inbound "
        "node and bind them by MultiHeadAttention.call(query, value, key=None, ...): Keras records the "
        "call as it was made, so positional query and value land in args and a keyword key (or value, "
        "if passed so) in kwargs. Attention and AdditiveAttention take one list, recorded whole as "
        "args[0] = [query, value] (or [query, value, key])."
    )
    if "attention" not in convention:
        paragraph += (
            " (Attention and AdditiveAttention are left out: they need rank-3 inputs with equal features.)"
        )
    return Group(table, Text(paragraph))


def render(
    result: ExplainResult,
    console: Console,
    picture: Picture | None = None,
    *,
    brief: bool = False,
    verbose: bool = False,
    from_model: bool = False,
) -> None:
    """The headline, then what the options asked for (the picture, the call convention), then
    (unless ``brief``) every other section: what was asked is on the first screen either way."""
    d = result.derivation
    console.print(headline(result))
    if picture is not None:
        console.print()
        console.print(picture_section(picture, console.width))
    if result.call_convention is not None:
        console.print()
        console.print(
            call_convention_section(result.call_convention, keras2=result.derivation.config.keras == 2)
        )
    if brief:
        return
    console.print()
    console.print(layer_section(result, from_model=from_model))
    console.print(axes_table(d))
    console.print(shapes_table(d))
    console.print(einsums_table(d))
    for section in text_of(d).sections(d):
        console.print(section)
    console.print(weights_table(d))
    console.print(summary_section(d))
    console.print()
    console.print(verification_section(result, verbose=verbose))
    if result.failed:
        console.print(Panel(Text("A check failed: see Verification above.", style="bold red"), expand=False))
