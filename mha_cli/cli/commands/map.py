"""``mha-explain map``: how one layer's weights move between Keras and PyTorch, and (--check) proof."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from mha_cli.cli.options import (
    DEFAULT_SCREEN,
    OUTPUT,
    RUN,
    BackendOption,
    DebugOption,
    MaxMemoryOption,
    Screen,
    layer_options,
    screen_options,
)
from mha_cli.cli.process import fail, guarded
from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ExitCode
from mha_cli.core.gqa import GQAConfig

_TARGET = "torch|linear"


@screen_options
@layer_options(kinds=True)
def map_command(
    config: MHAConfig | GQAConfig | DenseConfig,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar=_TARGET,
            help="Keras weights into PyTorch: torch (torch.nn.MultiheadAttention) or linear (q_proj, "
            "k_proj, v_proj, o_proj Linear layers, any widths). --layer gqa: four Linear layers either "
            "way, attending through scaled_dot_product_attention(..., enable_gqa=True) (torch) or with "
            "the key/value repeat spelled out (linear).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar=_TARGET,
            help="PyTorch weights into the Keras layer, by the same formulas reversed.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Run the real Keras layer and the mapped PyTorch module on the same inputs and masks; "
            "exit 1 when outputs or any head's attention weights differ above the dtype's tolerance.",
            rich_help_panel=RUN,
        ),
    ] = False,
    code: Annotated[
        bool,
        typer.Option(
            "--code", help="Print only the runnable Python script of the map.", rich_help_panel=OUTPUT
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the map (and check) as JSON.", rich_help_panel=OUTPUT)
    ] = False,
    backend: BackendOption = "tensorflow",
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    screen: Screen = DEFAULT_SCREEN,
    debug: DebugOption = False,
) -> None:
    """Map one layer's weights between Keras and PyTorch, as formulas and as a script.

    --to torch gives torch.nn.MultiheadAttention's in_proj_weight, in_proj_bias,
    out_proj.weight and out_proj.bias (or q_proj_weight, ... when key and value
    widths differ) from the Keras kernels and biases; --to linear the separate
    q/k/v/o Linear layers most checkpoints use; --from the reverse. With
    --layer gqa, GroupQueryAttention's weights into Llama-style q/k/v/o Linear
    layers. The masks and the call are translated too. A configuration PyTorch cannot express is
    exit 2, with the reason and what would work. Exit codes: 0 map (and check
    passed), 1 the check found a difference above tolerance, 2 bad input or no
    map, 3 environment (e.g. --check without torch installed).
    """
    if isinstance(config, DenseConfig):
        fail(
            ExitCode.BAD_INPUT,
            f"--layer {config.kind}: map maps MultiHeadAttention's and GroupQueryAttention's projections; "
            "Attention and AdditiveAttention have none (their weights: at most scale, concat_score_weight)",
        )
    if (to is None) == (source is None):
        fail(
            ExitCode.BAD_INPUT,
            "map: give one of --to torch|linear (Keras into PyTorch) and --from torch|linear",
        )
    direction, target = ("to", to) if to is not None else ("from", source)
    assert target is not None
    if code and json_output:
        fail(ExitCode.BAD_INPUT, "--code and --json: each prints the whole answer in its own form; pick one")
    from mha_cli.operations.porting import weight_map

    result = guarded(
        lambda: weight_map(config, target, direction, check=check, backend=backend, max_memory=max_memory),
        debug,
    )
    if code:
        from mha_cli.output.code import layout_source, map_script

        layout = layout_source(result.map) if result.map.four_linear and direction == "to" else None
        typer.echo(map_script(result.derivation, result.map, layout), nl=False)
    else:
        from mha_cli.output import map as shown
        from mha_cli.output.documents.map import map_document

        screen.answer(json_output, partial(map_document, result), partial(shown.render_map, result))
    if result.failures:
        fail(ExitCode.CHECK_FAILED, f"map --check: {result.failures[0]}")
