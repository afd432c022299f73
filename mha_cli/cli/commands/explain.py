"""``mha-explain explain``: one configuration, derived, run, checked and shown (the default command)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from mha_cli.cli.options import (
    DEFAULT_SCREEN,
    INPUTS,
    LAYER_OPTION_NAMES,
    OUTPUT,
    RUN,
    AnyBackendOption,
    DebugOption,
    EveryKeras,
    JsonOption,
    MaxMemoryOption,
    Screen,
    converter,
    layer_options,
    screen_options,
)
from mha_cli.cli.process import fail, guarded, saved, say_error
from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.core.grammar import parse_position, quoted


@screen_options
@layer_options(shape_optional=True, every_keras=True)
def explain_command(
    ctx: typer.Context,
    config: MHAConfig | EveryKeras | None,
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
    jsonl: Annotated[
        str | None,
        typer.Option(
            "--jsonl",
            metavar="FILE",
            help="Explain one configuration per line of FILE (- for stdin): a JSON object with a case "
            'file\'s keys, e.g. {"shape": [10, 16], "axes": 1}; one explain JSON document per line '
            "out, in order, each as soon as it is done (with --get: one line of values).",
            rich_help_panel=INPUTS,
        ),
    ] = None,
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
    if jsonl is not None:
        forms = {
            "--json": json_output,
            "--code": code,
            "--picture": picture,
            "--at": at is not None,
            "--svg": svg is not None,
            "--html": html is not None,
            "--brief": brief,
            "--verbose": verbose,
            "--backend all": backend == "all",
        }
        form = next((option for option, present in forms.items() if present), None)
        if form is not None:
            fail(
                ExitCode.BAD_INPUT,
                f"--jsonl and {form}: --jsonl prints one JSON document per line (or, with --get, one "
                f"line of values); leave out {form}",
            )
        layer = next((o for name, o in LAYER_OPTION_NAMES.items() if _from_command_line(ctx, name)), None)
        if layer is not None:
            fail(
                ExitCode.BAD_INPUT,
                f"--jsonl and {layer}: --jsonl takes each configuration from its line; give the layer's "
                'arguments there, e.g. {"shape": [10, 16], "num_heads": 4}',
            )
        _many(jsonl, backend, not no_run, max_memory, verify_small, graph, get or [], debug)
        return
    if config is None:
        fail(ExitCode.BAD_INPUT, "Missing option '--shape'. (see mha-explain explain --help)")
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
    if isinstance(config, EveryKeras):
        refused = {
            "--no-run": no_run,
            "--get": bool(get),
            "--code": code,
            "--picture": picture or at is not None,
            "--svg": svg is not None,
            "--html": html is not None,
        }
        given = next((option for option, present in refused.items() if present), None)
        if given is not None:
            fail(
                ExitCode.BAD_INPUT,
                f"--keras all and {given}: --keras all runs both Kerases and prints them side by side "
                f"(tables or --json); run {given} with --keras 3 or --keras 2",
            )
        if backend != "tensorflow" and _from_command_line(ctx, "backend"):
            fail(
                ExitCode.BAD_INPUT,
                f"--keras all and --backend {backend}: Keras 2 runs only on TensorFlow, so both run there; "
                "leave out --backend",
            )
        _both_kerases(config.base, max_memory, json_output, screen, debug)
        return
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


def _both_kerases(config: MHAConfig, max_memory: int, json_output: bool, screen: Screen, debug: bool) -> None:
    """--keras all: Keras 3 and Keras 2 on identical weights, every difference named."""
    from mha_cli.operations.majors import both_kerases

    found = guarded(lambda: both_kerases(config, max_memory=max_memory), debug)
    if json_output:
        from mha_cli.output import document

        typer.echo(document.dumps(document.majors_document(found)))
    else:
        from mha_cli.output.render import make_console, render_majors

        render_majors(found, make_console(width=screen.width, color=screen.color))
    if found.failures:
        fail(ExitCode.CHECK_FAILED, f"--keras all: {found.failures[0]}")


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _many(
    path: str,
    backend: str,
    execute: bool,
    max_memory: int,
    verify_small: bool,
    graph: bool,
    get: list[str],
    debug: bool,
) -> None:
    """--jsonl: answer each line as it comes, flushed; the exit code is the worst line's."""
    from mha_cli.operations.many import answer_lines
    from mha_cli.output import document

    source = "stdin" if path == "-" else path
    lines = _lines(path)
    worst = ExitCode.OK
    answers = answer_lines(
        lines, backend, execute=execute, max_memory=max_memory, verify_small=verify_small, graph=graph
    )
    while True:
        answer = guarded(lambda: next(answers, None), debug)
        if answer is None:
            break
        worst = max(worst, answer.exit_code)
        if answer.result is None:
            where = f"{source}:{answer.line}" + ("" if answer.name is None else f" ({answer.name})")
            if get:
                say_error(f"--jsonl {where}: {answer.problem}")
                typer.echo("")  # one output line per input line, whatever happened
            else:
                typer.echo(document.line_form(document.line_error_document(answer)))
        else:
            found = document.to_document(answer.result)
            if get:
                values = []
                for wanted in get:
                    try:
                        values.append(document.line_value(document.get_path(found, wanted)))
                    except ConfigError as error:  # a path some documents have (shapes.gate), not this one
                        if wanted.split(".")[0] not in found:  # no document has it: a typo, stop
                            fail(ExitCode.BAD_INPUT, str(error))
                        say_error(f"--jsonl {source}:{answer.line}: {error}")
                        worst = max(worst, ExitCode.BAD_INPUT)
                        values.append("")
                typer.echo("\t".join(values))
            else:
                typer.echo(document.line_form(found))
            for check in answer.result.failed:
                say_error(f"--jsonl {source}:{answer.line}: check failed: {check.name}")
        sys.stdout.flush()
    if worst:
        raise typer.Exit(int(worst))


def _lines(path: str) -> Iterator[str]:
    """The lines of FILE or stdin, read as they come; bytes that are not UTF-8 become U+FFFD.

    The file is opened here, before the first line is asked for: a path that
    cannot be read is the user's mistake (exit 2), said before anything else.
    """
    if path == "-":
        return _decoded(sys.stdin.buffer, close=False)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - _decoded closes it after the last line
    except OSError as error:
        fail(ExitCode.BAD_INPUT, f"--jsonl {quoted(path)}: cannot read it: {error.strerror or error}")
    return _decoded(stream, close=True)


def _decoded(stream: BinaryIO, *, close: bool) -> Iterator[str]:
    try:
        for raw in stream:
            yield raw.decode("utf-8", errors="replace")
    finally:
        if close:
            stream.close()
