"""``mha-explain scan``: every attention call in a model, explained on the model's own weights."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mha_cli.cli.commands.targets import TimeoutOption, checked_targets
from mha_cli.cli.options import (
    ALL_KERAS,
    DEFAULT_SCREEN,
    BackendOption,
    DebugOption,
    JsonOption,
    MaxMemoryOption,
    ScanKerasOption,
    Screen,
    converter,
    screen_options,
)
from mha_cli.cli.process import fail, guarded
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.core.grammar import parse_int

if TYPE_CHECKING:
    from mha_cli.runtime.others import OtherAttention


def _parse_input(option: str, text: str) -> Any:
    from mha_cli.core.models import parse_input  # imported when --input is given, not for --help

    return parse_input(option, text)


@screen_options
def scan_command(
    model: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL",
            help="A .keras or .h5 file from model.save(), or a .json file from model.to_json().",
            show_default=False,
        ),
    ] = None,
    build: Annotated[
        str | None,
        typer.Option(
            "--build",
            metavar="MODULE:FUNCTION",
            help="Instead of a file: import MODULE and call FUNCTION() for the model (your code runs).",
        ),
    ] = None,
    custom_objects: Annotated[
        list[str] | None,
        typer.Option(
            "--custom-objects",
            metavar="MODULE",
            help="Import MODULE first, to register the model's custom classes (repeatable; your code runs).",
        ),
    ] = None,
    inputs: Annotated[
        list[Any] | None,
        typer.Option(
            "--input",
            metavar="NAME=SHAPE[:DTYPE]",
            parser=converter(_parse_input, "--input"),
            help="Sizes the model leaves unknown (None), and dtypes, e.g. tokens=128:int32 (repeatable).",
        ),
    ] = None,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            metavar="INT",
            parser=converter(lambda o, t: parse_int(o, t, minimum=1), "--batch"),
            help="Batch size of the forward pass.",
        ),
    ] = 2,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            metavar="INT",
            parser=converter(lambda o, t: parse_int(o, t, minimum=0), "--seed"),
            help="Seed for the inputs (and the weights of a .json model, which holds none).",
        ),
    ] = 0,
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer", metavar="PATH", help="Also show everything explain shows for this layer's calls."
        ),
    ] = None,
    trust_model: Annotated[
        bool,
        typer.Option(
            "--trust-model",
            help="Let the model file run the Python code it carries (a Lambda layer); off by default.",
        ),
    ] = False,
    vectors: Annotated[
        Path | None,
        typer.Option("--vectors", metavar="DIR", help="Also write each call's test vectors under DIR."),
    ] = None,
    targets: Annotated[
        bool,
        typer.Option(
            "--targets",
            help="Also say which converter takes each attention call (the rules of mha-explain targets).",
        ),
    ] = False,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="NAME",
            help="With --targets, only this target (repeatable); exit 1 when it refuses a call.",
        ),
    ] = None,
    run: Annotated[
        bool,
        typer.Option(
            "--run",
            help="With --targets: convert each call for real, as its own layer with the model's weights, "
            "on the inputs it received (ONNX and LiteRT float, as targets --run); exit 1 when one fails.",
        ),
    ] = False,
    timeout: TimeoutOption = 300.0,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic", help="With --targets: the model's sequence lengths are known only at run time."
        ),
    ] = False,
    keras: ScanKerasOption = 3,
    backend: BackendOption = "tensorflow",
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    json_output: JsonOption = False,
    screen: Screen = DEFAULT_SCREEN,
    debug: DebugOption = False,
) -> None:
    """Explain every MultiHeadAttention and GroupQueryAttention call in a model, on its own weights.

    Finds every call of those layers and their subclasses, also inside
    custom layers and nested models, and gives each what explain gives: shapes,
    equations, the NumPy re-execution and Keras's symbolic shapes, from the
    inputs that call really received. With --targets, which converter takes
    each call (the rules of mha-explain targets), and with --run, each call
    converted for real. A model file never runs code it carries unless
    --trust-model. Exit codes: 0 answer (also: no attention layer), 1 a check
    failed (or a --target refuses a call, or a round trip fails), 2 bad input
    or an unusable model file, 3 environment problem.
    """
    from mha_cli.core.models import model_spec
    from mha_cli.operations.scan import CallResult, scan

    alone = next(
        (name for name, given in (("--target", target), ("--dynamic", dynamic), ("--run", run)) if given),
        None,
    )
    if alone is not None and not targets:
        fail(ExitCode.BAD_INPUT, f"{alone} goes with --targets: add --targets")
    runnable = checked_targets(target, run, timeout) if targets else ()

    spec = guarded(
        lambda: model_spec(
            model,
            build,
            custom_objects=tuple(custom_objects or ()),
            inputs=tuple(inputs or ()),
            batch=batch,
            seed=seed,
            trust=trust_model,
            keras=2 if keras == ALL_KERAS else keras,
        ),
        debug,
    )
    if vectors is not None:
        from mha_cli.output.vectors import prepared

        guarded(partial(prepared, "--vectors", vectors), debug)
    result = guarded(
        lambda: scan(
            spec,
            backend,
            max_memory=max_memory,
            migrate=keras == ALL_KERAS,
            intermediates=vectors is not None,
        ),
        debug,
    )
    selected: tuple[CallResult, ...] = ()
    others: tuple[OtherAttention, ...] = ()
    if layer is not None:
        selected = result.select(layer)
        others = tuple(o for o in result.other_attention if layer in (o.path, o.key))
        if not selected and not others:
            paths = (
                ", ".join(
                    dict.fromkeys(
                        [
                            *(call.call.path for call in result.calls),
                            *(o.path for o in result.other_attention),
                        ]
                    )
                )
                or "none"
            )
            guarded(
                lambda: _raise(
                    ConfigError("--layer", layer, f"no attention layer there; the paths are {paths}")
                ),
                debug,
            )
    from mha_cli.output import scan as shown
    from mha_cli.output.documents.scan import scan_document

    found = None
    trips = None
    if targets:
        from mha_cli.operations.model_targets import scan_round_trips, scan_targets

        found = scan_targets(result, tuple(target or ()), dynamic=dynamic)
        if run:
            from mha_cli.cli.roundtrip_worker import COMMAND

            trips = guarded(lambda: scan_round_trips(result, runnable, COMMAND, timeout), debug)

    def document() -> dict[str, Any]:
        written = scan_document(result)
        if found is not None:
            from mha_cli.output.targets import model_targets_document

            written["targets"] = model_targets_document(found, trips)
        return written

    def render(console: Any) -> None:
        shown.render_scan(result, console, layers=selected, others=others)
        if found is not None:
            from mha_cli.output.targets import render_model_targets

            render_model_targets(found, console, trips)

    screen.answer(json_output, document, render)
    if vectors is not None:
        from mha_cli.cli.commands.vectors import write_sets
        from mha_cli.operations.vectors import Places, scan_vectors

        sets, skipped = scan_vectors(result, Places())
        write_sets(vectors, sets, skipped, tables=None if json_output else screen, debug=debug)
    if result.failed:
        first = result.failed[0]
        fail(ExitCode.CHECK_FAILED, f"{len(result.failed)} call(s) failed a check; first: {first.call.key}")
    if result.failed_migrations:
        first_layer = result.failed_migrations[0]
        fail(
            ExitCode.CHECK_FAILED,
            f"--keras all: {first_layer.path}'s rewritten config does not reproduce Keras 2's output "
            "in Keras 3",
        )
    failed_trips = [(call, trip) for call, trip in trips or () if trip.failed]
    if failed_trips:
        call, trip = failed_trips[0]
        fail(ExitCode.CHECK_FAILED, f"--run: {call}: {trip.target}: {trip.status}: {trip.detail}")
    refused = [(t.name, found.refusing(t.name)) for t in found.targets] if found and target else []
    refused = [(name, calls) for name, calls in refused if calls]
    if refused:
        name, calls = refused[0]
        fail(
            ExitCode.CHECK_FAILED,
            f"--target {name} refuses {len(calls)} call(s); first: {calls[0]} (see the table)",
        )


def _raise(error: Exception) -> None:
    raise error
