"""``mha-explain explain``: one configuration, derived, run, checked and shown (the default command)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from mha_cli.cli.options import (
    DEFAULT_SCREEN,
    OUTPUT,
    RUN,
    AnyBackendOption,
    DebugOption,
    JsonOption,
    MaxMemoryOption,
    Screen,
    converter,
    layer_options,
    screen_options,
)
from mha_cli.cli.process import fail, guarded, saved
from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ExitCode
from mha_cli.core.grammar import parse_position


@screen_options
@layer_options()
def explain_command(
    config: MHAConfig,
    backend: AnyBackendOption = "tensorflow",
    no_run: Annotated[
        bool,
        typer.Option(
            "--no-run", help="Answer from the shape algebra alone: no Keras, no checks.", rich_help_panel=RUN
        ),
    ] = False,
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    verify_small: Annotated[
        bool,
        typer.Option(
            "--verify-small",
            help="When --max-memory skips the forward pass, run and check the same layer with every "
            "axis but the features shrunk to at most 4 positions.",
            rich_help_panel=RUN,
        ),
    ] = False,
    json_output: JsonOption = False,
    get: Annotated[
        list[str] | None,
        typer.Option(
            "--get",
            metavar="PATH",
            help="Print one value of the JSON document, e.g. shapes.attention_scores; give it several "
            "times for one value per line, in order.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    picture: Annotated[
        bool,
        typer.Option(
            "--picture",
            help="Draw which key positions one query position attends to (see --at).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    at: Annotated[
        Any,
        typer.Option(
            "--at",
            metavar="POSITION",
            parser=converter(parse_position, "--at"),
            help="The query position for --picture, e.g. 5,10 [default: the centre]; implies --picture.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    svg: Annotated[
        Path | None,
        typer.Option(
            "--svg", metavar="PATH", help="Also save the tables (and picture) as SVG.", rich_help_panel=OUTPUT
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="PATH",
            help="Also save the tables (and picture) as HTML.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    graph: Annotated[
        bool,
        typer.Option(
            "--graph",
            help="Show how a functional model records the call (Model.get_config()), beside Attention.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    code: Annotated[
        bool,
        typer.Option(
            "--code",
            help="Print a runnable Keras script that builds this layer and prints both shapes.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    screen: Screen = DEFAULT_SCREEN,
    brief: Annotated[
        bool,
        typer.Option(
            "--brief",
            help="Print the headline only: the call, shapes, axes, verdict.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Give each check's whole explanation, not its short line.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Explain one keras.layers.MultiHeadAttention configuration from a real forward pass.

    Prints the role of every axis, every shape, the einsum equations Keras uses,
    the weights and costs, and checks all of it against the real layer.
    Exit codes: 0 answer, 1 a check failed, 2 bad input, 3 environment problem.
    This is the default command: mha-explain --shape ... runs it.
    """
    outputs = [name for name, given in (("--json", json_output), ("--get", get), ("--code", code)) if given]
    if len(outputs) > 1:
        fail(
            ExitCode.BAD_INPUT,
            f"{' and '.join(outputs)}: each prints the whole answer in its own form; pick one",
        )
    exports = [name for name, path in (("--svg", svg), ("--html", html)) if path is not None]
    if exports and outputs:
        fail(ExitCode.BAD_INPUT, f"{exports[0]} saves the tables; it cannot be combined with {outputs[0]}")
    for name, path in (("--svg", svg), ("--html", html)):
        if path is not None and not path.parent.is_dir():
            fail(ExitCode.BAD_INPUT, f"{name} {path}: no directory {path.parent} to save it in")
    if graph and no_run:
        fail(ExitCode.BAD_INPUT, "--graph builds a model around the real layer; leave out --no-run to use it")
    if backend == "all":
        _all_backends(config, max_memory, json_output, screen, debug)
        return
    from mha_cli.operations.explain import explain

    result = guarded(
        lambda: explain(
            config,
            backend,
            execute=not no_run,
            max_memory=max_memory,
            verify_small=verify_small,
            observe_path=True,
            graph=graph,
        ),
        debug,
    )
    drawn = None
    if picture or at is not None:
        from mha_cli.operations.picture import attention_picture

        drawn = guarded(lambda: attention_picture(result, at), debug)

    from mha_cli.output import document

    if get:
        answer = document.to_document(result, drawn)
        for wanted in get:  # every path is checked before anything is printed
            guarded(partial(document.get_path, answer, wanted), debug)
        for wanted in get:
            typer.echo(document.shell_form(document.get_path(answer, wanted)))
    elif code:
        from mha_cli.output.code import snippet

        typer.echo(snippet(result.derivation), nl=False)
    elif json_output:
        typer.echo(document.dumps(document.to_document(result, drawn)))
    else:
        from mha_cli.output.render import export, export_console, make_console, render

        shown = {"brief": brief, "verbose": verbose}
        render(result, make_console(width=screen.width, color=screen.color), drawn, **shown)
        if exports:  # laid out at a fixed width, whatever this terminal's
            recorded = export_console()
            render(result, recorded, drawn, **shown)
            title = "mha-explain " + " ".join(sys.argv[1:])
            for option, path in (("--svg", svg), ("--html", html)):
                if path is not None:
                    save = partial(export, recorded, option, path, title)
                    guarded(partial(saved, option, path, save), debug)
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        fail(
            ExitCode.CHECK_FAILED,
            f"check failed: {names}; the real layer and the derivation disagree (see Verification)",
        )


def _all_backends(config: MHAConfig, max_memory: int, json_output: bool, screen: Screen, debug: bool) -> None:
    """--backend all: the same configuration on every installed backend, side by side."""
    from mha_cli.cli.worker import COMMAND
    from mha_cli.operations.backends import run_on_backends

    found = guarded(lambda: run_on_backends(config, COMMAND, max_memory=max_memory), debug)
    if json_output:
        from mha_cli.output import document

        typer.echo(document.dumps(document.backends_document(found)))
    else:
        from mha_cli.output.render import make_console, render_backends

        render_backends(found, make_console(width=screen.width, color=screen.color))
    if not found.ran:
        first = found.runs[0]
        fail(ExitCode.ENVIRONMENT, f"--backend all: no backend could run; {first.backend}: {first.problem}")
    if found.failed:
        fail(
            ExitCode.CHECK_FAILED,
            f"check failed on {', '.join(found.failed)} (run --backend {found.failed[0]} for details)",
        )
