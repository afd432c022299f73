"""The tables of keras.layers.Attention and AdditiveAttention (``--layer dot|additive``).

The same order as MultiHeadAttention's: the answer first (the call, the scores and output shapes,
one verdict), then the layer's arguments, the axes, the shapes, the computation step by step, the
weights, the masks, how it differs from MultiHeadAttention, and the verification.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mha_cli.core.dense import DenseDerivation, call_line, constructor
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.operations.dense import DenseResult
from mha_cli.output.explain import verification_section
from mha_cli.output.headline import labelled, verified_line
from mha_cli.output.tables import size_text, titled_table


def _code(d: DenseDerivation) -> Text:
    names = ("query", "value", "key") if d.key_given else ("query", "value")
    shapes = ", ".join(f"{name}: {format_shape(d.inputs[name].shape)}" for name in names)
    masks = "".join(f", {mask.name}: {format_shape(mask.shape)}" for mask in d.masks if mask.name != "causal")
    code = Text()
    code.append(f"layer = {constructor(d)}\n", style="bold")
    code.append(f"{call_line(d)}\n", style="bold")
    code.append(f"# {shapes}{masks}", style="dim")
    return code


def _verdict(result: DenseResult) -> Text:
    run = result.run
    if run is None:
        return Text(f"not verified by a forward pass: {result.not_executed_reason}", style="yellow")
    return verified_line(run.keras_version, run.backend, result.checks)


def headline(result: DenseResult) -> Group:
    d = result.derivation
    scores, output = d.shapes["attention_scores"], d.shapes["output"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("scores", labelled(scores.shape, scores.labels))
    grid.add_row("output", labelled(output.shape, output.labels))
    grid.add_row("axes", "attended: axis 1 (seq_q against seq_k); feature: axis 2, not projected, no heads")
    grid.add_row(
        "weights",
        f"{d.inputs['value'].shape[1]:,} per query position; scores "
        f"{format_bytes(d.bytes_per_item(scores))} per batch item; {d.params:,} parameters",
    )
    for mask in d.masks:
        grid.add_row("mask", f"{mask.name} {format_shape(mask.shape)}: {mask.effect}")
    for warning in result.warnings:
        grid.add_row("warning", Text(warning, style="yellow"))
    return Group(_code(d), grid, _verdict(result))


def _layer_section(result: DenseResult) -> Group:
    d = result.derivation
    table = titled_table("", "argument", "value", "")
    default_scale = "Keras default" + (" (AdditiveAttention: True)" if d.kind == "additive" else "")
    rows = [("use_scale", str(d.use_scale), default_scale if "use_scale" in d.defaulted else "given")]
    if d.kind == "dot":
        given = "Keras default" if "score_mode" in d.defaulted else "given"
        rows.append(("score_mode", repr(d.score_mode), given))
    rows.append(("dropout", str(d.config.dropout), "Keras default" if "dropout" in d.defaulted else "given"))
    rows.append(("dtype", d.config.dtype, "Keras default" if d.config.dtype == "float32" else "given"))
    for name, value, marker in rows:
        table.add_row(name, value, Text(marker, style="dim" if marker != "given" else ""))
    run = result.run
    if run is None:
        where = f"NOT EXECUTED: {result.not_executed_reason}"
    else:
        config = d.config
        where = (
            f"Keras {run.keras_version} on {run.backend}; forward pass with batch {config.batch}, "
            f"seed {config.seed}"
        )
    return Group(Text(f"Layer: keras.layers.{d.keras_class}", style="bold"), Text(where, style="dim"), table)


def _axes_table(d: DenseDerivation) -> Table:
    query, value, key = (d.inputs[name].shape for name in ("query", "value", "key"))
    table = titled_table("Axes", "axis", "role", "query", "key", "value", "meaning")
    table.add_row("0", Text("batch", style="dim"), "None", "None", "None", "independent examples")
    table.add_row(
        "1",
        Text("attended", style="bold green"),
        size_text(query[1]),
        size_text(key[1]),
        size_text(value[1]),
        "every query position against every key position",
    )
    feature = (
        "scored as given (query against key), carried as given (value)"
        if d.score_mode == "dot"
        else "summed over in the score (query + key), carried as given (value)"
    )
    table.add_row(
        "2",
        Text("feature", style="cyan"),
        size_text(query[2]),
        size_text(key[2]),
        size_text(value[2]),
        feature,
    )
    return table


def _shapes_table(d: DenseDerivation) -> Table:
    table = titled_table("Shapes", "tensor", "shape", "axes", f"{d.config.dtype} / item")
    table.columns[-1].justify = "right"
    for name, tensor in {**d.inputs, **d.shapes}.items():
        style = "bold" if name in ("attention_scores", "output") else ""
        shown = name if name != "key" or d.key_given else "key (the value)"
        table.add_row(
            shown,
            Text(format_shape(tensor.shape), style=style),
            ", ".join(tensor.labels),
            format_bytes(d.bytes_per_item(tensor)),
        )
    return table


def _steps_table(d: DenseDerivation) -> Table:
    title = "Computation (as keras.layers." + d.keras_class + ".call runs it)"
    table = titled_table(title, "step", "computes", "result")
    for step in d.steps:
        table.add_row(step.name, Text(step.formula, style="bold"), format_shape(step.result.shape))
    table.add_row(
        "total", f"{d.flops_per_item:,} FLOPs per batch item (tanh counted as one)", "", style="dim"
    )
    return table


def _weights_table(d: DenseDerivation) -> Table | Text:
    if not d.weights:
        why = "use_scale=False" + (", score_mode='dot'" if d.kind == "dot" else "")
        return Text.assemble(("Weights", "bold"), f"\nnone ({why}): 0 parameters")
    table = titled_table("Weights", "weight", "shape", "initializer", "what it does", "params")
    for weight in d.weights:
        table.add_row(
            weight.name, format_shape(weight.shape), weight.initializer, weight.meaning, str(weight.params)
        )
    table.add_row(Text("total", style="bold"), "", "", "", Text(f"{d.params:,}", style="bold"))
    return table


def _sentences(title: str, lines: tuple[str, ...]) -> Group:
    return Group(Text(title, style="bold"), *(Text(f"- {line}") for line in lines))


def render(result: DenseResult, console: Console, *, brief: bool = False, verbose: bool = False) -> None:
    d = result.derivation
    console.print(headline(result))
    if brief:
        return
    console.print()
    console.print(_layer_section(result))
    console.print(_axes_table(d))
    console.print(_shapes_table(d))
    console.print(_steps_table(d))
    console.print(_weights_table(d))
    if not d.weights:
        console.print()
    console.print(_sentences("Summary", d.summary))
    console.print()
    console.print(_sentences("How it differs from MultiHeadAttention", d.differences))
    console.print()
    console.print(verification_section(result, verbose=verbose))
    if result.failed:
        console.print(Panel(Text("A check failed: see Verification above.", style="bold red"), expand=False))
