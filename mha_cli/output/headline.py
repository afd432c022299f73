"""The answer first: the call a user writes, its shapes, and one verdict line."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from mha_cli.core.call import INPUT_TENSOR, call, input_names
from mha_cli.core.derived import Derived
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.operations.explain import Check, ExplainResult, Status
from mha_cli.output.code import layer_line
from mha_cli.output.layers import text_of


def call_code(d: Derived) -> Text:
    """The constructor and the call, as the user would write them."""
    inputs = ", ".join(
        f"{name}: {format_shape(d.inputs[INPUT_TENSOR[name]].shape)}" for name in input_names(d)
    )
    code = Text()
    code.append(f"layer = {layer_line(d)}\n", style="bold")
    code.append(f"output, scores = {call(d)}\n", style="bold")
    code.append(f"# {inputs}", style="dim")  # a line of its own: a narrow terminal wraps between shapes
    return code


def labelled(shape: tuple[int | None, ...], labels: tuple[str, ...]) -> str:
    return f"{format_shape(shape)}: {', '.join(labels)}"


def verdict(result: ExplainResult) -> Text:
    """One line: what the real layer confirmed, and the one thing to know when something is off."""
    run = result.run
    statuses = [check.status for check in result.checks]
    if run is None or not run.executed:
        line = Text(f"not verified by a forward pass: {result.not_executed_reason}", style="yellow")
        built = sum(status is Status.PASSED for status in statuses)
        if built:
            line.append(f" ({built} check(s) on the built layer passed)")
        return line
    return verified_line(run.keras_version, run.backend, result.checks)


def verified_line(keras_version: str, backend: str, checks: tuple[Check, ...]) -> Text:
    """``verified on Keras X (backend): 4 passed``, and the first failure or note in short."""
    statuses = [check.status for check in checks]
    counts = [
        f"{statuses.count(status)} {word}"
        for status, word in ((Status.PASSED, "passed"), (Status.FAILED, "FAILED"), (Status.WARNING, "note"))
        if status in statuses
    ]
    failed = [check for check in checks if check.status is Status.FAILED]
    line = Text(f"verified on Keras {keras_version} ({backend}): ", style="bold")
    line.append(", ".join(counts), style="bold red" if failed else "green")
    notable = [*failed, *(check for check in checks if check.status is Status.WARNING)]
    if notable:
        line.append(f"; {notable[0].name}: {notable[0].brief}")
    return line


def headline(result: ExplainResult) -> Group:
    """The answer first: the call, the scores and output shapes, the axes' roles, the weights per
    query, and one line of verification (torchinfo and model.summary() answer this densely)."""
    d = result.derivation
    scores, output = d.shapes["attention_scores"], d.shapes["output"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("scores", labelled(scores.shape, scores.labels))
    grid.add_row("output", labelled(output.shape, output.labels))
    for label, text in text_of(d).headline_rows(d):
        grid.add_row(label, Text(text, style="yellow") if label == "warning" else text)
    grid.add_row(
        "weights",
        f"{d.weights_per_query:,} per query position and head; scores "
        f"{format_bytes(d.scores_bytes_per_item())} per batch item; {d.params:,} parameters",
    )
    plan = d.mask
    if plan is not None:  # the call's masks were asked for: how they reach the scores, in one line
        typed = d.config.mask_shape  # as given: None for any batch, where the run uses --batch
        shapes: dict[str, tuple[int | None, ...]] = dict(plan.sources)
        if typed is not None and "attention_mask" in shapes:
            shapes["attention_mask"] = typed
        given = " & ".join(f"{name} {format_shape(shape)}" for name, shape in shapes.items())
        reached: tuple[int | None, ...] = plan.broadcast_to
        if typed is not None and typed[0] is None and len(typed) == len(plan.expected):
            reached = (None, *reached[1:])
        grid.add_row(
            "mask",
            f"{given} -> {format_shape(reached)} over the scores (full attention_mask shape "
            f"{format_shape(plan.expected)})",
        )
    return Group(call_code(d), grid, verdict(result))
