"""compare: configurations side by side, and every attention_axes choice, as tables and JSON."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mha_cli.core.choices import group_letter
from mha_cli.core.config import ExecutionPath
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.summary import join_words
from mha_cli.operations.compare import Comparison
from mha_cli.operations.explain import Status
from mha_cli.operations.explore import Exploration
from mha_cli.output.tables import STATUS_MARK, compared_row, titled_table


def _axes_label(config_axes: tuple[int, ...] | None) -> str:
    return "--axes none" if config_axes is None else "--axes " + ",".join(map(str, config_axes))


def render_compare(comparison: Comparison, console: Console) -> None:
    """One column per configuration, a row per shape, equation and count; differences marked."""
    results = comparison.results
    table = titled_table("Compare", "", *(_axes_label(r.mha.config.attention_axes) for r in results), "")
    derivations = [result.mha for result in results]

    def row(label: str, values: list[str]) -> None:
        compared_row(table, label, values)

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
        [" ".join(STATUS_MARK[check.status][0] for check in result.checks) for result in results],
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
            return Text(STATUS_MARK[status][0], style=STATUS_MARK[status][1])
    return Text(STATUS_MARK[Status.PASSED][0], style=STATUS_MARK[Status.PASSED][1])


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
    table = titled_table("", *(headers[i] for i in keep))
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
