"""map: a weight map to PyTorch and back, as tables and JSON."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from mha_cli.core.grammar import format_shape
from mha_cli.operations.porting import MapResult
from mha_cli.output.tables import titled_table


def render_map(result: MapResult, console: Console) -> None:
    """The map: the module, each parameter's formula, how the call translates, and the check."""
    wmap = result.map
    target = wmap.target_name
    arrow = f"Keras {wmap.keras_class} -> {target}" if wmap.direction == "to" else f"{target} -> Keras"
    console.print(Text(arrow, style="bold"))
    console.print(Text(wmap.module))
    source = "the Keras layer's weights" if wmap.direction == "to" else "the PyTorch state_dict"
    title = f"Parameters (w: {source}, by name; NumPy)"
    table = titled_table(title, "parameter", "shape", "formula")
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
    table = titled_table(
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
