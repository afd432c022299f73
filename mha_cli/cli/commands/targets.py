"""``mha-explain targets``: which converter takes what this layer uses (cited rules, before you try)."""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated

import typer

from mha_cli.cli.options import DEFAULT_SCREEN, DebugOption, JsonOption, Screen, layer_options, screen_options
from mha_cli.cli.process import fail, guarded
from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ExitCode
from mha_cli.core.gqa import GQAConfig

#: --timeout, for targets --run and scan --targets --run.
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", metavar="SECONDS", help="With --run: stop a conversion after this long."),
]


def checked_targets(target: list[str] | None, run: bool, timeout: float) -> tuple[str, ...]:
    """--target's names, --timeout and --run checked (one line and exit 2 for a mistake); the targets
    --run converts (RUNNABLE, or those of them named), empty without --run."""
    from mha_cli.core.targets import load_rules

    if not (math.isfinite(timeout) and timeout > 0):
        fail(ExitCode.BAD_INPUT, f"--timeout {timeout:g}: give a number of seconds above 0, e.g. 300")
    known = [t.name for t in load_rules()[0]]
    for name in target or []:
        if name not in known:
            fail(ExitCode.BAD_INPUT, f"--target {name}: unknown target; choose one of {', '.join(known)}")
    if not run:
        return ()
    from mha_cli.operations.roundtrip import RUNNABLE

    runnable = tuple(name for name in RUNNABLE if not target or name in target)
    if not runnable:
        fail(
            ExitCode.BAD_INPUT,
            f"--run: none of the targets named converts here; --run covers {', '.join(RUNNABLE)} "
            "(add --target for one, or leave --target out)",
        )
    return runnable


@screen_options
@layer_options(kinds=True)
def targets_command(
    config: MHAConfig | GQAConfig | DenseConfig,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="NAME",
            help="Only this target (give it again for more); exit 1 when one of them refuses the layer.",
        ),
    ] = None,
    scores: Annotated[bool, typer.Option("--scores", help="The model returns the attention scores.")] = False,
    dynamic: Annotated[
        bool, typer.Option("--dynamic", help="Sequence lengths are known only at run time.")
    ] = False,
    run: Annotated[
        bool,
        typer.Option(
            "--run",
            help="Also convert the layer for real where the target installs here (ONNX through Keras's "
            "export and ONNX Runtime, with the targets extra; LiteRT float through TensorFlow) and compare "
            "with Keras; exit 1 when one fails or differs.",
        ),
    ] = False,
    timeout: TimeoutOption = 300.0,
    json_output: JsonOption = False,
    screen: Screen = DEFAULT_SCREEN,
    debug: DebugOption = False,
) -> None:
    """Which converter takes this layer: frugally-deep, hls4ml, coremltools, LiteRT, ONNX, keras2c, nobuco.

    A row per target: supported, refused (its own rule, with the file and version it was read
    from) or unknown, for what this configuration uses (attended axes, rank, masks, causal,
    output_shape, widths, value_dim, bias, gate, returned scores, dropout, dynamic lengths, dtype).
    From the shape algebra alone: nothing is converted or run.
    With --run, ONNX and LiteRT convert the layer for real and their output is compared with Keras's.
    Exit codes: 0 answer, 1 a --target named refuses the layer or a round trip fails, 2 bad input.
    """
    if isinstance(config, DenseConfig):
        fail(
            ExitCode.BAD_INPUT,
            f"--layer {config.kind}: targets covers MultiHeadAttention and GroupQueryAttention",
        )
    from mha_cli.core.kinds import derive_any
    from mha_cli.core.targets import REFUSED, features_of, targets_table

    runnable = checked_targets(target, run, timeout)
    derivation = guarded(lambda: derive_any(config), debug)
    table = targets_table(features_of(derivation, scores=scores, dynamic=dynamic), tuple(target or ()))
    layer = derivation.kind
    from mha_cli.core.grammar import format_shape
    from mha_cli.output.targets import render_targets, targets_document

    trips = None
    if run:
        from mha_cli.cli.roundtrip_worker import COMMAND
        from mha_cli.operations.roundtrip import round_trips

        trips = guarded(lambda: round_trips(config, runnable, COMMAND, timeout=timeout), debug)
    name = {"mha": "MultiHeadAttention", "gqa": "GroupQueryAttention"}[layer]
    heading = f"Converters for {name} on query {format_shape(derivation.inputs['query'].shape)}"
    screen.answer(
        json_output,
        partial(targets_document, table, layer, trips),
        partial(render_targets, table, heading=heading, trips=trips),
    )
    failed = [trip for trip in trips or () if trip.failed]
    if failed:
        first = failed[0]
        fail(ExitCode.CHECK_FAILED, f"--run: {first.target}: {first.status}: {first.detail}")
    refused = [t.name for t in table.targets if target and table.verdict(t.name) == REFUSED]
    if refused:
        fail(ExitCode.CHECK_FAILED, f"--target: {', '.join(refused)} refuses this layer (see the table)")
