"""Rich tables for people. The only module that imports rich.

Renders an ExplainResult or a CheckReport; computes nothing they do not already hold.
Without a terminal rich emits no colour codes, and it honours NO_COLOR.
"""

from __future__ import annotations

import errno
import io
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mha_cli.core.call import INPUT_TENSOR, call, input_names
from mha_cli.core.cases import show
from mha_cli.core.choices import group_letter
from mha_cli.core.config import KERAS_DEFAULTS, ExecutionPath, Role
from mha_cli.core.derivation import Axis, Derivation
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.summary import join_words
from mha_cli.operations.backends import BackendsRun
from mha_cli.operations.check import CaseStatus, CheckReport, Progress
from mha_cli.operations.compare import Comparison
from mha_cli.operations.explain import ExplainResult, Status
from mha_cli.operations.explore import Exploration
from mha_cli.operations.majors import MajorsRun
from mha_cli.operations.picture import Picture
from mha_cli.operations.porting import MapResult
from mha_cli.operations.record import GONE, RecordReport
from mha_cli.operations.scan import CallResult, ScanResult, shapes_line
from mha_cli.operations.vectors import VectorSet
from mha_cli.output import EXPORT_WIDTH, PIPED_WIDTH
from mha_cli.output.code import constructor, filled_arguments
from mha_cli.output.vectors import place

if TYPE_CHECKING:  # no NumPy at run time: --no-run and --help never import it
    import numpy as np

    from mha_cli.runtime.migration import MigrationRun

_ROLE_STYLE = {Role.BATCH: "dim", Role.ATTENDED: "bold green", Role.FREE: "yellow", Role.FEATURE: "cyan"}
_ROLE_MEANING = {
    Role.BATCH: "independent examples",
    Role.ATTENDED: "attention runs along it",
    Role.FREE: "not attended: each slice attends on its own",
    Role.FEATURE: "projected away into heads x key_dim / value_dim",
}
_STATUS_MARK = {
    Status.PASSED: ("PASS", "green"),
    Status.FAILED: ("FAIL", "bold red"),
    Status.WARNING: ("WARN", "yellow"),
    Status.SKIPPED: ("SKIP", "dim"),
}


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Raise, as print() does, for a reader that went away (``| head``).

        rich's own handling exits 1, which here means a failed check; raised, the
        CLI answers it like any write to a closed stdout (exit 141).
        """
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


class _Unpadded:
    """A stream that drops trailing white space from every line: rich pads table rows to the width,
    which piped into a file or ``less`` is noise. Colour codes after the padding are kept."""

    _PADDING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.stream.write(self._PADDING.sub(r"\1", line) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def make_console(file: TextIO | None = None, *, width: int | None = None, color: str = "auto") -> Console:
    """The console for tables on stdout: ``width`` columns (--width), colour auto, always or never.

    Without --width: the terminal's width; piped, COLUMNS, else PIPED_WIDTH, so
    einsum rows stay on one line. Lines carry no trailing white space.
    """
    stream = file or sys.stdout
    if width is None and not stream.isatty() and not os.environ.get("COLUMNS"):
        width = PIPED_WIDTH
    colors: dict[str, Any] = {}
    if color == "always":
        colors = {"force_terminal": True}
    elif color == "never":
        colors = {"color_system": None}
    return _Console(file=cast(TextIO, _Unpadded(stream)), width=width, highlight=False, **colors)


def export_console() -> Console:
    """A console that records what is printed for --svg / --html, laid out at EXPORT_WIDTH columns."""
    return _Console(file=io.StringIO(), width=EXPORT_WIDTH, highlight=False, record=True, force_terminal=True)


def export(console: Console, option: str, path: Path, title: str) -> None:
    """Save what ``console`` printed, with its colours (rich's own export): --svg or --html."""
    if option == "--svg":
        console.save_svg(str(path), title=title, clear=False)
    else:
        console.save_html(str(path), clear=False)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        # Nothing is cut: a value too long for its column folds onto the next line, no ellipsis.
        table.add_column(column, overflow="fold")
    return table


def _size(size: int | None) -> str:
    return "None" if size is None else str(size)


def _code(d: Derivation) -> Text:
    """The constructor and the call, as the user would write them."""
    inputs = ", ".join(
        f"{name}: {format_shape(d.inputs[INPUT_TENSOR[name]].shape)}" for name in input_names(d)
    )
    code = Text()
    code.append(f"layer = {constructor(d)}\n", style="bold")
    code.append(f"output, scores = {call(d)}\n", style="bold")
    code.append(f"# {inputs}", style="dim")  # a line of its own: a narrow terminal wraps between shapes
    return code


def _labelled(shape: tuple[int | None, ...], labels: tuple[str, ...]) -> str:
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
    counts = [
        f"{statuses.count(status)} {word}"
        for status, word in ((Status.PASSED, "passed"), (Status.FAILED, "FAILED"), (Status.WARNING, "note"))
        if status in statuses
    ]
    line = Text(f"verified on Keras {run.keras_version} ({run.backend}): ", style="bold")
    line.append(", ".join(counts), style="bold red" if result.failed else "green")
    notable = [*result.failed, *(check for check in result.checks if check.status is Status.WARNING)]
    if notable:
        line.append(f"; {notable[0].name}: {notable[0].brief}")
    return line


def headline(result: ExplainResult) -> Group:
    """The answer first: the call, the scores and output shapes, the axes' roles, the weights per
    query, and one line of verification (torchinfo and model.summary() answer this densely)."""
    d = result.derivation
    scores, output = d.shapes["attention_scores"], d.shapes["output"]
    feature = d.axes[-1]

    def named(axes: tuple[Axis, ...]) -> str:
        return ", ".join(f"{axis.name} ({axis.index})" for axis in axes) or "none"

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("scores", _labelled(scores.shape, scores.labels))
    grid.add_row("output", _labelled(output.shape, output.labels))
    grid.add_row(
        "axes",
        f"attended: {named(d.attended_axes)}; free: {named(d.free_axes)}; feature: axis {feature.index}, "
        f"size {feature.query_size} -> {d.layer.num_heads} head{'s' if d.layer.num_heads != 1 else ''} "
        f"x {d.layer.key_dim} (key_dim)",
    )
    grid.add_row(
        "weights",
        f"{d.weights_per_query:,} per query position and head; scores "
        f"{format_bytes(d.scores_bytes_per_item())} per batch item; {d.params:,} parameters",
    )
    return Group(_code(d), grid, verdict(result))


def layer_section(result: ExplainResult) -> Group:
    d = result.derivation
    layer, config = d.layer, d.config

    keras_default = {
        "value_dim": "Keras default: key_dim",
        "output_shape": "Keras default: the query's feature size",
        "attention_axes": "Keras default: all axes but batch, heads and features",
    }
    tool_default = {
        "num_heads": "mha-explain default (Keras requires it)",
        "key_dim": "mha-explain default: query features // num_heads (Keras requires it)",
    }

    def source(name: str, is_default: bool) -> str:
        if name in tool_default and name in layer.defaulted:
            return tool_default[name]
        if name in keras_default and name in layer.defaulted:
            return keras_default[name]
        return "Keras default" if is_default else "given"

    out = d.shapes["output"].shape[d.rank - 1 :]
    table = _table("", "argument", "value", "")
    rows = [
        ("num_heads", str(layer.num_heads), False),
        ("key_dim", str(layer.key_dim), False),
        ("value_dim", str(layer.value_dim), False),
        (
            "output_shape",
            f"None -> {format_shape(out)}" if layer.output_shape is None else format_shape(out),
            False,
        ),
        (
            "attention_axes",
            ("None" if config.attention_axes is None else format_shape(config.attention_axes))
            + f" -> {format_shape(layer.attention_axes)}",
            False,
        ),
        *((name, str(value), value == KERAS_DEFAULTS[name]) for name, value in filled_arguments(d).items()),
    ]
    for name, value, is_default in rows:
        marker = source(name, is_default)
        table.add_row(name, value, Text(marker, style="dim" if marker != "given" else ""))
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


def axes_table(d: Derivation) -> Table:
    table = _table("Axes", "axis", "neg", "name", "role", "query", "key", "value", "meaning")
    for axis in d.axes:
        table.add_row(
            str(axis.index),
            str(axis.negative_index),
            axis.name,
            Text(axis.role.value, style=_ROLE_STYLE[axis.role]),
            _size(axis.query_size),
            _size(axis.key_size),
            _size(axis.value_size),
            _ROLE_MEANING[axis.role],
        )
    return table


def shapes_table(d: Derivation) -> Table:
    table = _table("Shapes", "tensor", "shape", "axes", f"{d.layer.dtype} / item")
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


def einsums_table(d: Derivation) -> Table:
    table = _table(
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


def weights_table(d: Derivation) -> Table:
    table = _table("Weights", "projection", "kernel", "bias", "params")
    for weight in d.weights:
        table.add_row(
            weight.projection,
            format_shape(weight.kernel),
            "-" if weight.bias is None else format_shape(weight.bias),
            f"{weight.params:,}",
        )
    table.add_row(Text("total", style="bold"), "", "", Text(f"{d.params:,}", style="bold"))
    return table


def summary_section(d: Derivation) -> Group:
    return Group(Text("Summary", style="bold"), *(Text(f"- {line}") for line in d.summary))


def verification_section(result: ExplainResult, *, verbose: bool = False) -> Group:
    """One line per check: its short form, or with ``verbose`` the whole explanation."""
    lines = [Text("Verification", style="bold")]
    for check in result.checks:
        mark, style = _STATUS_MARK[check.status]
        line = Text()  # wrapped: a detail is the explanation (cropped to the width, it was lost)
        line.append(f"{mark} ", style=style)
        line.append(f"{check.name}: ", style="bold")
        line.append(check.detail if verbose else check.brief)
        lines.append(line)
    return Group(*lines)


def call_convention_section(convention: dict[str, dict[str, Any]], *, keras2: bool) -> Group:
    table = _table("Call convention (the real Model.get_config())", "layer", "called as", "args", "kwargs")
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
) -> None:
    """The headline, then (unless ``brief``) every section."""
    d = result.derivation
    console.print(headline(result))
    if brief:
        return
    console.print()
    console.print(layer_section(result))
    console.print(axes_table(d))
    console.print(shapes_table(d))
    console.print(einsums_table(d))
    console.print(weights_table(d))
    console.print(summary_section(d))
    if picture is not None:
        console.print()
        console.print(picture_section(picture, console.width))
    if result.call_convention is not None:
        console.print()
        console.print(
            call_convention_section(result.call_convention, keras2=result.derivation.config.keras == 2)
        )
    console.print()
    console.print(verification_section(result, verbose=verbose))
    if result.failed:
        console.print(Panel(Text("A check failed: see Verification above.", style="bold red"), expand=False))


# --- scan ------------------------------------------------------------------------


def _call_status(found: CallResult) -> Text:
    if found.error is not None:
        return Text("ERROR", style="bold red")
    assert found.result is not None
    statuses = [check.status for check in found.result.checks]
    for status in (Status.FAILED, Status.WARNING, Status.PASSED, Status.SKIPPED):
        if status in statuses:
            mark, style = _STATUS_MARK[status]
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
    return (
        label,
        f"{call.arguments['num_heads']} x {call.arguments['key_dim']}, "
        f"{format_shape(d.layer.attention_axes)}",
        shapes_line(found),
        str(d.execution_path),
        f"{d.params:,}",
        format_bytes(d.scores_bytes_per_item()),
        _call_status(found),
    )


def render_scan(scan: ScanResult, console: Console, layers: tuple[CallResult, ...] = ()) -> None:
    """The overview of every attention call (like model.summary(), about attention), then any details."""
    inputs = ", ".join(f"{spec.name} {format_shape((None, *spec.shape))}" for spec in scan.inputs)
    head = Text()
    head.append(f"Model {scan.model_name!r}", style="bold")
    head.append(f"  from {scan.spec.shown}; weights: {scan.weights_from}", style="dim")
    console.print(head)
    if not scan.calls:
        console.print(
            f"No MultiHeadAttention layer in this model (Keras {scan.keras_version}): nothing to explain."
        )
        return
    console.print(Text(f"inputs: {inputs}; batch {scan.spec.batch}, seed {scan.spec.seed}", style="dim"))
    title = (
        f"{len(scan.calls)} attention call(s) in {scan.layer_count} layer(s), Keras {scan.keras_version} "
        f"on {scan.backend}"
    )
    rows = [_scan_row(found) for found in scan.calls]
    if console.width >= _SCAN_TABLE_WIDTH:
        table = _table(title)
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
            console.print(line)
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
            notes.append(
                Text(
                    f"note {call.key}: {call.class_name} overrides {' and '.join(call.overrides)}; "
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
    if scan.migrations:
        _scan_migrations(scan, console)
    if not layers:
        console.print(Text("Details of one layer: --layer PATH (the call's path, as listed).", style="dim"))
    for found in layers:
        console.print()
        console.print(Text(f"== {found.call.key} ({found.call.class_name})", style="bold"))
        if found.result is not None:
            render(found.result, console)


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
            _migration_lines(found.migration, found.output_max_abs_diff, found.tolerance, scan.keras_version)
        ):
            grid.add_row(found.path if number == 0 else "", line)
    console.print(grid)
    console.print()


# --- backends --------------------------------------------------------------------


def render_backends(found: BackendsRun, console: Console) -> None:
    """One row per backend: shapes, checks, and how far its numbers are from the first backend's."""
    table = _table(
        "Backends (identical weights and inputs; differences from the first backend that ran)",
        "backend",
        "Keras",
        "output",
        "attention_scores",
        "checks",
        "max |diff| output",
        "scores",
    )
    for run in found.runs:
        result = run.result
        if result is None:
            table.add_row(run.backend, Text(run.problem or "", style="dim"), "", "", "", "", "")
            continue
        shapes = result.derivation.shapes
        table.add_row(
            run.backend,
            "" if result.run is None else result.run.keras_version,
            format_shape(shapes["output"].shape),
            format_shape(shapes["attention_scores"].shape),
            " ".join(_STATUS_MARK[check.status][0] for check in result.checks),
            "" if run.output_diff is None else f"{run.output_diff:.1e}",
            "" if run.scores_diff is None else f"{run.scores_diff:.1e}",
        )
    console.print(table)


# --- --keras all -----------------------------------------------------------------


def _compared_row(table: Table, label: str, values: list[str]) -> None:
    """One row of a side-by-side table: the values, highlighted and marked "differs" when they do."""
    differs = len(set(values)) > 1
    style = "bold yellow" if differs else ""
    table.add_row(label, *(Text(v, style=style) for v in values), Text("differs" if differs else "same"))


def _recorded(result: ExplainResult | None) -> str:
    """MultiHeadAttention's recorded call, compactly: its args, then its kwargs."""
    convention = None if result is None else result.call_convention
    if convention is None:
        return ""
    recorded = convention["multi_head_attention"]
    return f"args {json.dumps(recorded['args'])} kwargs {json.dumps(recorded['kwargs'])}"


def _diff_cell(value: float | None, tolerance: float) -> Text:
    if value is None:
        return Text("not compared", style="dim")
    return Text(f"{value:.1e}", style="bold yellow" if value > tolerance else "green")


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
        console.print(_code(ran[0].derivation))
    table = _table("Side by side", "", keras3.version, keras2.version, "")

    def row(label: str, values: list[str]) -> None:
        _compared_row(table, label, values)

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
        row("checks", each(lambda r: " ".join(_STATUS_MARK[check.status][0] for check in r.checks)))
        row("recorded call", each(_recorded))
    console.print(table)
    if len(ran) == 2:
        _majors_equations(found, console)
        console.print(Text("Outputs", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row("called with scores", _diff_cell(found.output_max_abs_diff, found.tolerance))
        grid.add_row("as a model calls it", _diff_cell(found.model_call_max_abs_diff, found.tolerance))
        grid.add_row("attention scores", _diff_cell(found.scores_max_abs_diff, found.tolerance))
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
        for line in _migration_lines(
            migration, found.migration_output_max_abs_diff, found.tolerance, version
        ):
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


def _migration_lines(
    migration: MigrationRun, diff: float | None, tolerance: float, keras2: str
) -> list[Text]:
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
                f"rewritten: loads; max |diff| from Keras {keras2}'s output ", _diff_cell(diff, tolerance)
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


# --- compare ---------------------------------------------------------------------


def _axes_label(config_axes: tuple[int, ...] | None) -> str:
    return "--axes none" if config_axes is None else "--axes " + ",".join(map(str, config_axes))


def render_compare(comparison: Comparison, console: Console) -> None:
    """One column per configuration, a row per shape, equation and count; differences marked."""
    results = comparison.results
    table = _table("Compare", "", *(_axes_label(r.derivation.config.attention_axes) for r in results), "")
    derivations = [result.derivation for result in results]

    def row(label: str, values: list[str]) -> None:
        _compared_row(table, label, values)

    row("attention_axes", [format_shape(d.layer.attention_axes) for d in derivations])
    row("roles", [", ".join(axis.role.value for axis in d.axes[1:-1]) for d in derivations])
    for name in derivations[0].shapes:
        row(name, [format_shape(d.shapes[name].shape) for d in derivations])
    labels = [_axes_label(d.config.attention_axes) for d in derivations]
    longest = max(len(equation) for d in derivations for equation in d.equations.values())
    # Side by side only where every equation fits whole in its column (with the row label and the
    # differs column); on a narrower screen they are stacked below the table, one line each.
    stacked = console.width < 20 + len(derivations) * (longest + 2) + 9
    if not stacked:
        for name in derivations[0].equations:
            row(f"{name} einsum", [d.equations[name] for d in derivations])
    row("params", [f"{d.params:,}" for d in derivations])
    row("FLOPs / item", [f"{d.flops_per_item:,}" for d in derivations])
    row("weights / query", [f"{d.weights_per_query:,}" for d in derivations])
    row("scores / item", [format_bytes(d.scores_bytes_per_item()) for d in derivations])
    row(
        "checks",
        [" ".join(_STATUS_MARK[check.status][0] for check in result.checks) for result in results],
    )
    console.print(table)
    if stacked:
        console.print(Text("Einsum equations", style="bold"))
        width = max(len(label) for label in labels)
        for name in derivations[0].equations:
            equations = [d.equations[name] for d in derivations]
            if len(set(equations)) == 1:
                console.print(Text(f"{name}: {equations[0]} (the same for all)"))
                continue
            console.print(Text(f"{name}: differs", style="bold yellow"))
            for label, equation in zip(labels, equations, strict=True):
                console.print(Text(f"  {label:<{width}}  {equation}"))
        console.print()
    console.print(Text("Equivalence", style="bold"))
    found = comparison.equivalence
    if found is None:
        console.print(f"outputs not compared: {comparison.not_compared_reason}")
    elif not found.same_weights:
        console.print(
            "the layers did not hold identical weights and inputs, so their outputs are not compared"
        )
    elif found.outputs_equal:
        console.print(
            f"identical weights and inputs: the outputs are equal (max |diff| {found.max_abs_diff:.1e}, "
            f"tolerance {found.tolerance:.0e}); these configurations compute the same attention"
        )
    else:
        console.print(
            f"identical weights and inputs: the outputs differ (max |diff| {found.max_abs_diff:.2g}); "
            "these configurations compute different attention",
            style="bold",
        )


# --- compare --axes all -----------------------------------------------------------


def _compact(count: int) -> str:
    """``1.2M``-style, for a count in a narrow column."""
    for unit, factor in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= factor:
            return f"{count / factor:.3g}{unit}"
    return str(count)


def _runs_cell(found: Exploration, index: int, notes: dict[str, int]) -> Text:
    """Whether the real layer runs the choice: the algebra's word, or with --run what happened."""
    choice = found.choices.choices[index]
    run = None if found.runs is None else found.runs[index]
    rejected = choice.rejected if run is None else run.rejected
    if rejected is not None:
        number = notes.setdefault(rejected, len(notes) + 1)
        return Text(f"no [{number}]", style="bold yellow")
    if run is None and choice.caveat is not None:
        number = notes.setdefault(choice.caveat, len(notes) + 1)
        return Text(f"maybe [{number}]", style="yellow")
    if run is None:
        return Text("yes")
    assert run.result is not None
    if not run.result.executed:
        number = notes.setdefault(run.result.not_executed_reason or "not run", len(notes) + 1)
        return Text(f"SKIP [{number}]", style="dim")
    statuses = {check.status for check in run.result.checks}
    for status in (Status.FAILED, Status.WARNING):
        if status in statuses:
            return Text(_STATUS_MARK[status][0], style=_STATUS_MARK[status][1])
    return Text(_STATUS_MARK[Status.PASSED][0], style=_STATUS_MARK[Status.PASSED][1])


def _group_sentence(found: Exploration, number: int) -> str:
    """``A  None = (1, 2) = (2, 1): over height and width, ...``: what a group's members compute."""
    group = found.choices.groups[number]
    choices = [found.choices.choices[index] for index in group.members]
    d = choices[0].derivation
    names = {axis.index: axis.name for axis in d.axes}
    mixed = [names[axis] for axis in group.axes]
    single = [axis.name for axis in d.attended_axes if axis.index not in group.axes]
    free = [axis.name for axis in d.free_axes]
    if d.mask is not None:
        reach = "as the masks allow"
    elif mixed:
        reach = f"over {join_words(mixed)}"
    else:
        reach = "to the one key position there is along " + join_words(single)
        single = []
    text = f"{' = '.join(choice.label for choice in choices)}: each query attends {reach}"
    if free:
        text += f", separately for each {join_words(free)}"
    if single and mixed:
        text += f" ({join_words(single)}: one key position, so attending over it changes nothing)"
    return text


def render_choices(found: Exploration, console: Console) -> None:
    """compare --axes all: the answer, a row per choice, the groups, then what was verified."""
    choices = found.choices
    first = choices.choices[0].derivation
    query = format_shape(first.inputs["query"].shape)
    count = len(choices.choices)
    functions = len(choices.groups)
    if count == 1:
        functions_text = "one choice"
    elif functions == 1:
        functions_text = f"{count} choices, all computing the same function"
    else:
        functions_text = f"{count} choices, computing {functions} different functions"
    console.print(Text(f"attention_axes for a query of shape {query}: {functions_text}", style="bold"))
    groups = Table.grid(padding=(0, 2), pad_edge=True)
    groups.add_column(no_wrap=True)
    groups.add_column()
    for number in range(functions):
        groups.add_row(f" {group_letter(number)}", _group_sentence(found, number))
    console.print(groups)
    notes: dict[str, int] = {}
    rows: list[list[str | Text]] = []
    # A group's members together; groups are lettered in listing order, so None comes first.
    for index in sorted(range(len(choices.choices)), key=choices.group_of):
        choice = choices.choices[index]
        d = choice.derivation
        rows.append(
            [
                group_letter(choices.group_of(index)),
                choice.label,
                ", ".join(axis.name for axis in d.attended_axes),
                f"{d.weights_per_query:,}",
                "x".join(map(str, d.shapes["attention_scores"].shape[1:])),
                format_bytes(d.scores_bytes_per_item()).replace(".0 ", " "),
                _compact(d.flops_per_item),
                _runs_cell(found, index, notes),
            ]
        )
    headers = ["fn", "axes", "attends over", "keys", "scores", "bytes", "FLOPs", "runs"]
    columns = zip(headers, zip(*rows, strict=True), strict=True)
    widths = [max(len(str(cell)) for cell in [header, *cells]) for header, cells in columns]
    # The names repeat what the axes column says by number: on a narrow screen they go to a legend.
    named = sum(widths) + 3 * (len(widths) - 1) <= console.width
    keep = [i for i in range(len(headers)) if named or headers[i] != "attends over"]
    table = _table("", *(headers[i] for i in keep))
    table.title = None
    for column in table.columns:
        column.no_wrap = True
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    if not named:
        axes = ", ".join(f"{axis.index} {axis.name}" for axis in first.axes[1:-1])
        console.print(Text(f"axes: {axes}", style="dim"))
    legend = (
        "fn: one letter, one function (the same output on identical weights); keys: key positions "
        "each query weighs, per head; scores: free axes, heads, the query's attended axes, the key's, "
        "in Keras's order; scores' bytes and FLOPs: per batch item"
    )
    console.print(Text(legend, style="dim"))
    paths = {choice.derivation.execution_path for choice in choices.choices}
    if len(paths) == 1:
        path = paths.pop()
        why = f"rank-{first.rank} input" + (", dropout 0" if path is ExecutionPath.FUSED else "")
        console.print(
            Text(f"Called without scores, every choice takes the {path} path ({why}).", style="dim")
        )
    for reason, number in notes.items():
        console.print(Text(f"[{number}] {reason}", style="yellow"))
    if choices.omitted:
        first_omitted = choices.omitted[0]
        shown = "None" if first_omitted.argument is None else format_shape(first_omitted.argument)
        more = "1 more choice is" if len(choices.omitted) == 1 else f"{len(choices.omitted)} more choices are"
        console.print(
            Text(f"{more} not legal for these inputs, e.g. {shown}: {first_omitted.problem}", style="dim")
        )
    console.print()
    console.print(_exploration_verdict(found))


def _exploration_verdict(found: Exploration) -> Text:
    if found.runs is None:
        return Text(
            "answered from the shape algebra: --run runs every choice through the real layer and "
            "compares their outputs",
            style="dim",
        )
    ran = [run for run in found.runs if run.executed]
    pairs = list(zip(found.choices.choices, found.runs, strict=True))
    known = sum(choice.rejected is not None for choice, _ in pairs)
    refused = sum(run.rejected is not None and choice.rejected is None for choice, run in pairs)
    failures = found.failures
    keras = next((run.result.run.keras_version for run in found.runs if run.result and run.result.run), "?")
    line = Text(f"verified on Keras {keras} ({found.choices.backend}): ", style="bold")
    line.append(f"{len(ran)} of {len(found.runs)} choices ran")
    not_run = [f"{known} not run: a known limit, [n] above"] if known else []
    not_run += [f"{refused} refused by the real layer"] if refused else []
    if not_run:
        line.append(f" ({'; '.join(not_run)})")
    letters = [group_letter(number) for number in range(len(found.choices.groups))]
    same = [
        f"{letters[number]} within {check.max_abs_diff:.1e}"
        for number, check in enumerate(found.group_checks or ())
        if check.max_abs_diff is not None
    ]
    if same:
        line.append(f"; outputs agree within each group ({', '.join(same)}; tolerance {found.tolerance:.0e})")
    closest = found.closest
    if closest is not None:
        one, other = (letters[number] for number in closest.groups)
        if closest.max_abs_diff > found.tolerance:
            line.append(
                f"; groups differ (closest: {one} and {other}, max |diff| {closest.max_abs_diff:.2g})"
            )
        elif found.choices.choices[0].derivation.mask is not None:
            line.append(
                f"; groups {one} and {other} gave the same outputs here: with a mask, the algebra groups "
                "only the same axes in the same order and does not claim that other groups differ"
            )
    if found.unverified:
        line.append(f"; no choice of group {', '.join(letters[n] for n in found.unverified)} ran")
    warned: dict[str, list[str]] = {}
    for choice, run in zip(found.choices.choices, found.runs, strict=True):
        for check in run.result.checks if run.result else ():
            if check.status is Status.WARNING:
                warned.setdefault(check.name, []).append(choice.label)
    for name, labels in warned.items():
        line.append(f"\nWARN {name} on {len(labels)} choice{'s' if len(labels) > 1 else ''}", style="yellow")
        line.append(
            f" (explain with --axes {_axes_argument(labels[0])}, the same options and --verbose says more)"
        )
    for failure in failures:
        line.append(f"\nFAIL {failure}", style="bold red")
    return line


def _axes_argument(label: str) -> str:
    """How ``--axes`` takes a choice's label: ``none``, ``1``, ``1,2``."""
    return "none" if label == "None" else label.strip("(,)").replace(" ", "")


# --- check -----------------------------------------------------------------------

_CASE_MARK = {
    CaseStatus.PASSED: ("PASS", "green"),
    CaseStatus.FAILED: ("FAIL", "bold red"),
    CaseStatus.ERROR: ("ERROR", "bold red"),
    CaseStatus.UNRECORDED: ("NEW", "yellow"),
}


def render_check(report: CheckReport, console: Console, *, strict: bool = False) -> None:
    """One row per case, with a row per differing field; then the totals."""
    for file in report.files:
        if not file.results and file.error is None:
            continue  # -k selected none of its cases
        table = _table(str(file.path), "case", "status", "line", "details")
        note = report.version_note(file)
        if note is not None:
            table.caption = f"note: {note}"
            table.caption_justify = "left"
        if file.error is not None:
            table.add_row("(file)", Text("ERROR", style="bold red"), "", file.error)
        for result in file.results:
            mark, style = _CASE_MARK[result.status]
            if strict and result.status is CaseStatus.UNRECORDED:
                style = "bold red"
            lines = result.explanation()
            if result.status is CaseStatus.PASSED and result.case is not None and result.case.expect:
                lines.append(f"as expected: {', '.join(result.case.expect)}")
            if result.not_executed_reason is not None and result.status is not CaseStatus.ERROR:
                lines.append(f"not executed: {result.not_executed_reason}")
            table.add_row(result.name, Text(mark, style=style), str(result.line), lines[0] if lines else "")
            for line in lines[1:]:
                table.add_row("", "", "", line)
        console.print(table)
    label = {CaseStatus.ERROR: "error(s)", CaseStatus.UNRECORDED: "without expectations"}
    counts = ", ".join(
        f"{report.count(status)} {label.get(status, status.value)}"
        for status in CaseStatus
        if report.count(status)
    )
    bad_files = sum(file.error is not None for file in report.files)
    unreadable = f", {bad_files} unreadable file(s)" if bad_files else ""
    ran_on = f"Keras {report.keras_version} on {report.backend}" if report.keras_version else report.backend
    console.print(
        f"{len(report.results)} case(s) in {len(report.files)} file(s): {counts or 'none'}{unreadable} "
        f"({ran_on}, {report.seconds:.1f} s)"
    )


def render_record(report: RecordReport, console: Console) -> None:
    """Per file: what was added, replaced, kept and left out, and why."""
    verb = "would write" if report.dry_run else "wrote"
    for outcome in report.outcomes:
        if outcome.error is not None:
            console.print(Text(outcome.error, style="bold red"))
            continue
        counts = [
            f"{len(outcome.added)} new expect block(s)",
            f"{len(outcome.updated)} expectation(s) replaced",
            f"{len(outcome.unchanged)} unchanged",
        ]
        if outcome.kept:
            counts.append(f"{len(outcome.kept)} differing, kept")
        if outcome.not_recorded:
            counts.append(f"{len(outcome.not_recorded)} not recorded")
        done = verb if outcome.added or outcome.updated else "left as it was"
        console.print(f"{outcome.path}: {done}: {', '.join(counts)}", style="bold")
        for name in outcome.added:
            console.print(f"  added    {name}")
        for change in outcome.updated:
            console.print(
                f"  replaced {change.case}: {change.field} {show(change.old)} -> {show(change.new)}"
            )
        for change in outcome.kept:
            if change.field == GONE:
                said = "pinned in the file but gone from the model (rerun with --update to remove it)"
            else:
                said = (
                    f"{change.field} is {show(change.old)} in the file, {outcome.source} gives "
                    f"{show(change.new)} (rerun with --update to replace it)"
                )
            console.print(Text(f"  kept     {change.case}: {said}", style="yellow"))
        for name, why in outcome.not_recorded:
            console.print(Text(f"  skipped  {name}: {why}", style="red"))
    ran_on = f"Keras {report.keras_version} on {report.backend}" if report.keras_version else report.backend
    console.print(f"recorded with {ran_on}")


@contextmanager
def progress_bar(stream: TextIO) -> Iterator[Progress | None]:
    """A progress bar on ``stream`` when it is a terminal; None (silence) otherwise."""
    if not stream.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
    ) as bar:
        task = bar.add_task("checking", total=None)

        def advance(done: int, total: int, case_id: str) -> None:
            bar.update(task, completed=done, total=total, description=case_id)

        yield advance


# --- picture -----------------------------------------------------------------------

_MAX_COLUMNS, _MAX_ROWS, _MAX_SLICES = 48, 24, 6  # two characters per cell


def _blocks(size: int, most: int) -> int:
    """How many positions one drawn cell covers so that ``size`` positions fit in ``most`` cells."""
    return -(-size // most)


def _grid(
    attended: np.ndarray, query: tuple[int, int] | None, width: int
) -> tuple[list[Text], tuple[int, int]]:
    """A 2-D boolean grid as lines of cells, downsampled by blocks (a block attends if any position does).

    At most ``width`` characters a line (two a cell), so a narrow terminal downsamples more, never crops.
    """
    rows, cols = attended.shape
    down = (_blocks(rows, _MAX_ROWS), _blocks(cols, max(1, min(_MAX_COLUMNS, width // 2))))
    lines = []
    for r in range(0, rows, down[0]):
        line = Text(no_wrap=True, overflow="crop")
        for c in range(0, cols, down[1]):
            here = query is not None and r <= query[0] < r + down[0] and c <= query[1] < c + down[1]
            if here:
                line.append("◉ ", style="bold magenta")
            elif attended[r : r + down[0], c : c + down[1]].any():
                line.append("■ ", style="green")
            else:
                line.append("· ", style="dim")
        lines.append(line)
    return lines, down


def picture_section(picture: Picture, width: int = 120) -> Group:
    names, at = picture.axis_names, picture.at
    where = ", ".join(f"{name}={index}" for name, index in zip(names, at, strict=True))
    total = math.prod(picture.key_grid)
    lines: list[Text] = [
        Text("Attention picture", style="bold"),
        Text(
            f"query position ({where}), batch item 0, head 0: {picture.attended_count:,} of {total:,} key "
            "positions get a non-zero weight in the real forward pass"
        ),
        Text("◉ the query position   ■ attended   · not attended", style="dim")
        if picture.same_grid
        else Text("■ attended   · not attended (key/value positions; the query grid differs)", style="dim"),
    ]
    attended = picture.attended
    if attended.ndim == 1:
        attended = attended[None, :]
        at2: tuple[int, ...] = (0, at[0])
        names = ("", *names)
    else:
        at2 = at
    lead = attended.shape[:-2]
    shown_slices = 0
    skipped = 0
    notes = set()
    for lead_index in itertools.product(*map(range, lead)):
        plane = attended[lead_index]
        query_here = picture.same_grid and tuple(at2[: len(lead)]) == lead_index
        if lead and not plane.any() and not query_here:
            skipped += 1
            continue
        if shown_slices == _MAX_SLICES:
            skipped += 1
            continue
        shown_slices += 1
        if lead:
            label = ", ".join(f"{name}={i}" for name, i in zip(names[: len(lead)], lead_index, strict=True))
            lines.append(Text(f"{label}:", style="bold"))
        grid, down = _grid(plane, tuple(at2[-2:]) if query_here else None, width)  # type: ignore[arg-type]
        lines.extend(grid)
        if down != (1, 1):
            notes.add(
                f"downsampled: each cell covers {down[0]} x {down[1]} positions ({names[-2] or 'row'} x "
                f"{names[-1]}) and is marked if any of them is"
            )
    if skipped:
        notes.add(
            f"{skipped} more slice(s) not drawn: no attended position, or beyond the first {_MAX_SLICES}"
        )
    lines.extend(Text(note, style="dim") for note in sorted(notes))
    return Group(*lines)


def render_vectors(written: list[tuple[Path, VectorSet]], console: Console) -> None:
    """Where test vectors went; for one set, every array it holds."""
    if len(written) == 1:
        directory, vectors = written[0]
        manifest = vectors.manifest
        target = place(directory, vectors)
        console.print(Text(f"Test vectors in {target}/: vectors.npz, manifest.json", style="bold"))
        console.print(
            Text(
                f"Keras {manifest['keras_version']} on {manifest['backend']}, {manifest['dtype']}"
                + (
                    ""
                    if manifest["stored_dtype"] == manifest["dtype"]
                    else f" (stored as {manifest['stored_dtype']})"
                )
                + f"; call: {manifest['call']['text']}"
            )
        )
        table = _table("Arrays in vectors.npz", "name", "shape", "dtype", "role")
        for entry in manifest["arrays"]:
            table.add_row(
                Text(entry["name"]), format_shape(tuple(entry["shape"])), entry["dtype"], entry["role"]
            )
        console.print(table)
        console.print(Text(_verdicts(manifest)))
        return
    table = _table("Test vectors (vectors.npz and manifest.json in each)", "directory", "arrays", "checks")
    for directory, vectors in written:
        target = place(directory, vectors)
        manifest = vectors.manifest
        table.add_row(Text(f"{target}/"), str(len(manifest["arrays"])), _verdicts(manifest))
    console.print(table)


def _verdicts(manifest: dict[str, Any]) -> str:
    """``4 checks passed`` or which did not, from a manifest's checks."""
    failed = [check["name"] for check in manifest["checks"] if check["status"] == "failed"]
    if failed:
        return f"check failed: {', '.join(failed)}"
    passed = sum(check["status"] == "passed" for check in manifest["checks"])
    return f"{passed} checks passed"


def render_map(result: MapResult, console: Console) -> None:
    """The map: the module, each parameter's formula, how the call translates, and the check."""
    from mha_cli.core.weight_map import TARGET_NAMES

    wmap = result.map
    target = TARGET_NAMES[wmap.target]
    arrow = f"Keras MultiHeadAttention -> {target}" if wmap.direction == "to" else f"{target} -> Keras"
    console.print(Text(arrow, style="bold"))
    console.print(Text(wmap.module))
    source = "the Keras layer's weights" if wmap.direction == "to" else "the PyTorch state_dict"
    title = f"Parameters (w: {source}, by name; NumPy)"
    table = _table(title, "parameter", "shape", "formula")
    for parameter in wmap.parameters:
        table.add_row(Text(parameter.name), format_shape(parameter.shape), Text(parameter.formula))
    console.print(table)
    console.print(Text("The call", style="bold"))
    for note in wmap.call_notes:
        console.print(Text(f"- {note}"))
    check = result.check
    if check is None:
        console.print(Text("\nVerify it: the same command with --check; the script: with --code."))
        return
    console.print()
    table = _table(
        f"Check: PyTorch {check.torch_version} beside Keras {check.keras_version} ({check.backend}), "
        "same inputs and masks",
        "compared",
        "max |diff|",
        "",
    )

    def row(label: str, value: float) -> None:
        passed = value <= result.tolerance
        verdict = Text("ok" if passed else "ABOVE TOLERANCE", style="green" if passed else "bold red")
        table.add_row(label, f"{value:.1e}", verdict)

    row("output", check.output_max_abs_diff)
    for head, difference in enumerate(check.head_max_abs_diff):
        row(f"attention weights, head {head}", difference)
    console.print(table)
    moved = "Keras's weights into PyTorch" if wmap.direction == "to" else "PyTorch's weights into Keras"
    line = f"{moved}, tolerance {result.tolerance:.0e} ({result.derivation.layer.dtype})"
    if check.fully_masked_rows:
        line += f"; {check.fully_masked_rows} query row(s) with no key to attend to left out (NaN in PyTorch)"
    console.print(Text(line))
