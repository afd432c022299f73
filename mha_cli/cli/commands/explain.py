"""``mha-explain explain``: one configuration, derived, run, checked and shown (the default command)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mha_cli.cli.commands.jsonl import explain_lines
from mha_cli.cli.exclusions import Excludes, Given, OneOf, Rule, refuse
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
from mha_cli.cli.process import fail, guarded, saved
from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ExitCode
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import parse_position

if TYPE_CHECKING:
    from mha_cli.operations.dense import DenseResult
    from mha_cli.operations.explain import ExplainResult
    from mha_cli.operations.picture import Picture


@screen_options
@layer_options(shape_optional=True, every_keras=True, kinds=True)
def explain_command(
    ctx: typer.Context,
    config: MHAConfig | GQAConfig | DenseConfig | EveryKeras | None,
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
            help="Print the headline only: the call, shapes, axes, masks, verdict, and what other "
            "options asked for (--at's picture, --graph's call convention).",
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
    exports = {"--svg": svg, "--html": html}
    backend_given = _from_command_line(ctx, "backend")
    given: Given = {
        "--jsonl": jsonl is not None,
        "--keras all": isinstance(config, EveryKeras),
        "--layer gqa": isinstance(config, GQAConfig),
        "--layer dot": isinstance(config, DenseConfig) and config.kind == "dot",
        "--layer additive": isinstance(config, DenseConfig) and config.kind == "additive",
        "--verify-small": verify_small,
        "--json": json_output,
        "--get": bool(get),
        "--code": code,
        "--picture": picture,
        "--at": at is not None,
        "--svg": svg is not None,
        "--html": html is not None,
        "--brief": brief,
        "--verbose": verbose,
        "--graph": graph,
        "--no-run": no_run,
        "--backend all": backend == "all",
        # named with its value: --keras all refuses any backend but TensorFlow, when the user gave it
        "--backend": f"--backend {backend}" if backend != "tensorflow" and backend_given else False,
        **{flag: _from_command_line(ctx, name) for name, flag in LAYER_OPTION_NAMES.items()},
    }
    refuse(RULES, given)
    if jsonl is not None:
        explain_lines(jsonl, backend, not no_run, max_memory, verify_small, graph, get or [], debug)
        return
    if config is None:
        fail(ExitCode.BAD_INPUT, "Missing option '--shape'. (see mha-explain explain --help)")
    for name, path in exports.items():
        if path is not None and not path.parent.is_dir():
            fail(ExitCode.BAD_INPUT, f"{name} {path}: no directory {path.parent} to save it in")
    if isinstance(config, EveryKeras):
        _both_kerases(config.base, max_memory, json_output, screen, debug)
        return
    if isinstance(config, DenseConfig):
        _dense(
            config,
            backend,
            not no_run,
            max_memory,
            json_output,
            get or [],
            brief,
            verbose,
            screen,
            exports,
            debug,
        )
        return
    if backend == "all":
        _all_backends(config, max_memory, json_output, screen, debug)
        return
    from mha_cli.core.validate import batch_hint
    from mha_cli.operations.explain import explain

    hint = batch_hint(config.query_shape)
    if hint is not None:  # before the run, which may take seconds to fail on a shape nobody meant
        typer.echo(f"mha-explain: note: {hint}", err=True)
    if get and not no_run:  # a typo in a --get path is found before the run, not after it
        from mha_cli.output.documents import precheck_path
        from mha_cli.output.documents.explain import to_document as preview_document

        preview = guarded(lambda: preview_document(explain(config, backend, execute=False)), debug)
        for wanted in get:
            guarded(partial(precheck_path, preview, wanted), debug)
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

    from mha_cli.output import documents
    from mha_cli.output.documents.explain import to_document

    if get:
        answer = to_document(result, drawn)
        for wanted in get:  # every path is checked before anything is printed
            guarded(partial(documents.get_path, answer, wanted), debug)
        for wanted in get:
            typer.echo(documents.shell_form(documents.get_path(answer, wanted)))
    elif code:
        from mha_cli.output.code import snippet

        typer.echo(snippet(result.derivation), nl=False)
    else:
        screen.answer(
            json_output,
            partial(to_document, result, drawn),
            partial(_tables, result, drawn, brief, verbose),
        )
        if not json_output and any(exports.values()):
            _export(result, drawn, brief, verbose, exports, debug)
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        fail(
            ExitCode.CHECK_FAILED,
            f"check failed: {names}; the real layer and the derivation disagree (see Verification)",
        )


_ONE_LINE_PER_LINE = (
    "{mode} and {option}: --jsonl prints one JSON document per line (or, with --get, one line of values); "
    "leave out {option}"
)
_BOTH_KERASES = (
    "{mode} and {option}: --keras all runs both Kerases and prints them side by side (tables or --json); "
    "run {option} with --keras 3 or --keras 2"
)
#: Which options explain refuses together, in the order they are checked.
RULES: tuple[Rule, ...] = (
    Excludes(
        "--jsonl",
        ("--json", "--code", "--picture", "--at", "--svg", "--html", "--brief", "--verbose", "--backend all"),
        _ONE_LINE_PER_LINE,
    ),
    Excludes(
        "--jsonl",
        tuple(LAYER_OPTION_NAMES.values()),
        "{mode} and {option}: --jsonl takes each configuration from its line; give the layer's arguments "
        'there, e.g. {{"shape": [10, 16], "num_heads": 4}}',
    ),
    OneOf(("--json", "--get", "--code"), "each prints the whole answer in its own form; pick one"),
    *(
        Excludes(
            export,
            ("--json", "--get", "--code"),
            "{mode} saves the tables; it cannot be combined with {option}",
        )
        for export in ("--svg", "--html")
    ),
    Excludes(
        "--layer gqa",
        ("--graph",),
        "{mode} and {option}: --graph records MultiHeadAttention's call beside Attention's; "
        "GroupQueryAttention is called the same way, layer(query, value, key=None, ...), and saved as "
        "GroupedQueryAttention: leave out {option}",
    ),
    *(
        Excludes(
            f"--layer {kind}",
            ("--graph", "--code", "--picture", "--at", "--verify-small", "--keras all", "--backend all"),
            "{mode} and {option}: {option} is MultiHeadAttention's and GroupQueryAttention's, not yet "
            "Attention's or AdditiveAttention's; leave out {option}",
        )
        for kind in ("dot", "additive")
    ),
    Excludes(
        "--graph", ("--no-run",), "{mode} builds a model around the real layer; leave out {option} to use it"
    ),
    Excludes(
        "--keras all", ("--no-run", "--get", "--code", "--picture", "--at", "--svg", "--html"), _BOTH_KERASES
    ),
    Excludes(
        "--backend all",
        ("--no-run", "--get", "--code", "--picture", "--at", "--svg", "--html", "--graph"),
        "{mode} and {option}: --backend all runs every backend and prints them side by side (tables or "
        "--json); run {option} with one --backend",
    ),
    Excludes(
        "--keras all",
        ("--backend",),
        "{mode} and {option}: Keras 2 runs only on TensorFlow, so both run there; leave out --backend",
    ),
)


def _tables(result: ExplainResult, drawn: Picture | None, brief: bool, verbose: bool, console: Any) -> None:
    from mha_cli.output.explain import render  # rich: only when tables are printed, not for --json

    render(result, console, drawn, brief=brief, verbose=verbose)


def _export(
    result: ExplainResult,
    drawn: Picture | None,
    brief: bool,
    verbose: bool,
    exports: dict[str, Path | None],
    debug: bool,
) -> None:
    """--svg and --html: the same tables, laid out at a fixed width, whatever this terminal's."""
    from mha_cli.output.explain import render

    _save_exports(
        result, partial(render, result, picture=drawn, brief=brief, verbose=verbose), exports, debug
    )


def _save_exports(
    result: ExplainResult | DenseResult, tables: Any, exports: dict[str, Path | None], debug: bool
) -> None:
    """The tables recorded once at the export width, then saved by each of --svg and --html; after a
    forward pass, --html puts the interactive heatmap of the real scores above them."""
    from mha_cli.output.tables import export, export_console

    recorded = export_console()
    tables(recorded)
    title = "mha-explain " + " ".join(sys.argv[1:])
    for option, path in exports.items():
        if path is None:
            continue
        save = partial(export, recorded, option, path, title)
        if option == "--html" and result.executed:
            save = partial(_heatmap_page, result, recorded, path)
        guarded(partial(saved, option, path, save), debug)


def _heatmap_page(result: ExplainResult | DenseResult, recorded: Any, path: Path) -> None:
    """--html after a forward pass: the heatmap of the real scores above the recorded tables; the tables
    alone, with a note on stderr, where the scores are too many to draw."""
    from mha_cli.core.errors import ConfigError
    from mha_cli.operations.heatmap import heatmap
    from mha_cli.output.heatmap import page, tables_page
    from mha_cli.output.tables import html_fragment

    tables = html_fragment(recorded)
    try:
        found = heatmap(result)
    except ConfigError as error:
        typer.echo(f"mha-explain: note: --html: no heatmap: {error.problem}", err=True)
        path.write_text(tables_page(tables), encoding="utf-8")
        return
    path.write_text(page(found, tables), encoding="utf-8")


def _dense(
    config: DenseConfig,
    backend: str,
    execute: bool,
    max_memory: int,
    json_output: bool,
    get: list[str],
    brief: bool,
    verbose: bool,
    screen: Screen,
    exports: dict[str, Path | None],
    debug: bool,
) -> None:
    """--layer dot|additive: keras.layers.Attention or AdditiveAttention, derived, run and checked."""
    from mha_cli.operations.dense import explain_dense
    from mha_cli.output import documents
    from mha_cli.output.documents.dense import dense_document

    if get and execute:  # a typo in a --get path is found before the run, not after it
        preview = dense_document(guarded(lambda: explain_dense(config, backend, execute=False), debug))
        for wanted in get:
            guarded(partial(documents.precheck_path, preview, wanted), debug)
    result = guarded(lambda: explain_dense(config, backend, execute=execute, max_memory=max_memory), debug)
    if get:
        answer = dense_document(result)
        for wanted in get:
            typer.echo(documents.shell_form(guarded(partial(documents.get_path, answer, wanted), debug)))
    else:

        def tables(console: Any) -> None:
            from mha_cli.output.dense import render

            render(result, console, brief=brief, verbose=verbose)

        screen.answer(json_output, partial(dense_document, result), tables)
        if not json_output and any(exports.values()):
            _save_exports(result, tables, exports, debug)
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        fail(
            ExitCode.CHECK_FAILED,
            f"check failed: {names}; the real layer and the derivation disagree (see Verification)",
        )


def _all_backends(
    config: MHAConfig | GQAConfig, max_memory: int, json_output: bool, screen: Screen, debug: bool
) -> None:
    """--backend all: the same configuration on every installed backend, side by side."""
    from mha_cli.cli.worker import COMMAND
    from mha_cli.operations.backends import run_on_backends

    found = guarded(lambda: run_on_backends(config, COMMAND, max_memory=max_memory), debug)
    from mha_cli.output import backends as shown
    from mha_cli.output.documents.backends import backends_document

    screen.answer(json_output, partial(backends_document, found), partial(shown.render_backends, found))
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
    from mha_cli.output import majors as shown
    from mha_cli.output.documents.majors import majors_document

    screen.answer(json_output, partial(majors_document, found), partial(shown.render_majors, found))
    if found.failures:
        fail(ExitCode.CHECK_FAILED, f"--keras all: {found.failures[0]}")


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
