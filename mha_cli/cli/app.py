"""The mha-explain command line: parse, call the core, render, map errors to exit codes.

Exit codes: 0 answer, 1 a check failed (or a bug), 2 bad input, 3 environment
problem (e.g. a backend that is not installed), 130 interrupted, 141 stdout
closed before the answer was written.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from mha_cli import __version__
from mha_cli.core.config import BACKENDS, DTYPES
from mha_cli.core.errors import ConfigError, EnvironmentProblem, ExitCode, InternalError
from mha_cli.core.grammar import (
    parse_axes,
    parse_bytes,
    parse_int,
    parse_mask_shape,
    parse_names,
    parse_position,
    parse_shape,
)

T = TypeVar("T")


def say_error(message: str) -> None:
    """The one error line every failure prints on stderr."""
    typer.echo(f"mha-explain: error: {message}", err=True)


INTERRUPTED_LINE = "mha-explain: interrupted"


def say_interrupted() -> None:
    """The one line for Ctrl-C (main() then ignores any further one while the process winds down)."""
    typer.echo(INTERRUPTED_LINE, err=True)


def fail(code: ExitCode, message: str) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    say_error(message)
    raise typer.Exit(int(code))


def _unwritable_stdout(error: OSError) -> ExitCode:
    """Say once that the answer could not be written; stdout then goes to /dev/null.

    Python flushes stdout again at exit, which would fail again (a traceback).
    """
    if not isinstance(error, BrokenPipeError):  # a reader that went away is not told
        say_error(f"cannot write the answer to stdout: {error.strerror or error}")
    with suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.BROKEN_PIPE if isinstance(error, BrokenPipeError) else ExitCode.ENVIRONMENT


def _stdout_closed() -> bool:
    """Whether Click met a closed stdout (EPIPE): it then wraps stdout to silence the final flush."""
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"


def _is_click_error(error: Exception) -> bool:
    # Typer >= 0.26 vendors click as the private typer._click; older Typers use
    # click itself. Both raise a ClickException subclass for usage errors.
    return any(cls.__name__ == "ClickException" for cls in type(error).__mro__)


#: Options the group itself answers; anything else starting with "-" is explain's.
_GROUP_OPTIONS = frozenset({"--help", "-h", "--version", "--install-completion", "--show-completion"})


class ExplainByDefault(TyperGroup):
    """``mha-explain --shape ...`` means ``mha-explain explain --shape ...``.

    Usage errors, from the group or any command, become one line on stderr
    with exit 2, never a rich panel.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in _GROUP_OPTIONS):
            args = ["explain", *args]
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            if code == ExitCode.INTERRUPTED:  # Typer turns a KeyboardInterrupt into a silent Exit(130)
                say_interrupted()
        except SystemExit:
            if not _stdout_closed():
                raise
            code = ExitCode.BROKEN_PIPE  # Click says 1, which here means a failed check
        except (typer.Abort, KeyboardInterrupt):
            say_interrupted()
            code = ExitCode.INTERRUPTED
        except OSError as error:  # writing the answer: every other OSError is mapped where it happens
            code = _unwritable_stdout(error)
        except Exception as error:
            if not _is_click_error(error):
                raise
            message = error.format_message()  # type: ignore[attr-defined]
            context = getattr(error, "ctx", None)
            # The program's own name, whatever the caller named it (CliRunner says "root").
            command = [] if context is None else context.command_path.split()[1:]
            where = " ".join(["mha-explain", *command])
            say_error(f"{message} (see {where} --help)")
            code = ExitCode.BAD_INPUT
        if not standalone_mode:
            return code
        sys.exit(int(code or 0))


def _parser(parse: Callable[[str, str], T], option: str) -> Callable[[str], T]:
    """Adapt one of mha_cli.core.grammar's parsers to typer, keeping its message."""

    def convert(text: str) -> T:
        if not isinstance(text, str):  # typer passes defaults through as-is
            return text
        try:
            return parse(option, text)
        except ConfigError as error:
            raise typer.BadParameter(f"{error.value}: {error.problem}") from None

    return convert


def _positive(option: str) -> Callable[[str], int]:
    return _parser(lambda opt, text: parse_int(opt, text, minimum=1), option)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("keras")  # metadata only: --version must not import Keras
        except PackageNotFoundError:
            installed = "not installed"
        typer.echo(f"mha-explain {__version__} (Keras {installed})")
        raise typer.Exit()


def _choice(option: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return convert


def _dropout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number; expected a rate in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"{text}: a dropout rate must be in [0, 1)")
    return value


# Options every command that runs the layer shares.
def _backend_option(choices: tuple[str, ...], help_text: str) -> Any:
    return typer.Option(
        "--backend",
        metavar="|".join(choices),
        parser=_choice("--backend", choices),
        envvar="KERAS_BACKEND",
        show_envvar=True,
        help=help_text,
    )


BackendOption = Annotated[str, _backend_option(BACKENDS, "Keras backend.")]
AnyBackendOption = Annotated[
    str,
    _backend_option(
        (*BACKENDS, "all"), "Keras backend; all: every installed one, each in its own process, compared."
    ),
]
MaxMemoryOption = Annotated[
    int,
    typer.Option(
        "--max-memory",
        metavar="SIZE",
        parser=_parser(parse_bytes, "--max-memory"),
        help="Skip the forward pass when it would need more (e.g. 512MiB).",
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks and the backend's captured log output.")
]
ReportJsonOption = Annotated[
    bool, typer.Option("--json", help="Print the report as one JSON document (schema in the README).")
]
CaseFilesArgument = Annotated[
    list[Path],
    typer.Argument(
        metavar="FILE",
        help="Case files (.toml or .json), or directories holding *.mha.toml / *.mha.json.",
        show_default=False,
    ),
]
SelectOption = Annotated[
    str | None,
    typer.Option(
        "-k",
        metavar="PATTERN",
        help="Only the cases whose file::name contains PATTERN, in any case (a glob if it has * ? or [).",
    ),
]


# The layer's arguments, shared by explain and compare.
ShapeOption = Annotated[
    Any,
    typer.Option(
        "--shape",
        metavar="SHAPE",
        parser=_parser(parse_shape, "--shape"),
        help="Query shape without the batch axis, e.g. 32,64,4. Self-attention unless --value-shape.",
    ),
]
_AXES_HELP = "attention_axes: 1, 1,2, -2, (1,), [1, 2] or none (all axes but batch, heads, features)."
NumHeadsOption = Annotated[
    int | None,
    typer.Option(
        "--num-heads", metavar="INT", parser=_positive("--num-heads"), help="num_heads [default: 2]."
    ),
]
KeyDimOption = Annotated[
    int | None,
    typer.Option(
        "--key-dim",
        metavar="INT",
        parser=_positive("--key-dim"),
        help="key_dim [default: query features // num_heads, at least 1].",
    ),
]
ValueDimOption = Annotated[
    int | None,
    typer.Option(
        "--value-dim", metavar="INT", parser=_positive("--value-dim"), help="value_dim [default: key_dim]."
    ),
]
ValueShapeOption = Annotated[
    Any,
    typer.Option(
        "--value-shape",
        metavar="SHAPE",
        parser=_parser(parse_shape, "--value-shape"),
        help="Value shape without batch (cross-attention) [default: --shape].",
    ),
]
KeyShapeOption = Annotated[
    Any,
    typer.Option(
        "--key-shape",
        metavar="SHAPE",
        parser=_parser(parse_shape, "--key-shape"),
        help="Key shape without batch [default: --value-shape].",
    ),
]
OutputShapeOption = Annotated[
    Any,
    typer.Option(
        "--output-shape",
        metavar="SHAPE",
        parser=_parser(parse_shape, "--output-shape"),
        help="output_shape: an int or a tuple such as 3,2 [default: the query's feature size].",
    ),
]
BiasOption = Annotated[bool, typer.Option("--bias/--no-bias", help="use_bias.")]
GateOption = Annotated[bool, typer.Option("--gate", help="use_gate (Keras >= 3.14).")]
DropoutOption = Annotated[
    float,
    typer.Option(
        "--dropout", metavar="RATE", parser=_dropout, help="dropout (inference pass: no effect on shapes)."
    ),
]
DtypeOption = Annotated[
    str,
    typer.Option("--dtype", metavar="|".join(DTYPES), parser=_choice("--dtype", DTYPES), help="Layer dtype."),
]
BatchOption = Annotated[
    int,
    typer.Option(
        "--batch", metavar="INT", parser=_positive("--batch"), help="Concrete batch size of the forward pass."
    ),
]
SeedOption = Annotated[
    int,
    typer.Option(
        "--seed",
        metavar="INT",
        parser=_parser(lambda o, t: parse_int(o, t, minimum=0), "--seed"),
        help="Seed for weights and inputs.",
    ),
]
AxisNamesOption = Annotated[
    Any,
    typer.Option(
        "--axis-names",
        metavar="NAMES",
        parser=_parser(parse_names, "--axis-names"),
        help="Names for the axes between batch and features, e.g. height,width.",
    ),
]

MaskShapeOption = Annotated[
    Any,
    typer.Option(
        "--mask-shape",
        metavar="SHAPE",
        parser=_parser(parse_mask_shape, "--mask-shape"),
        help="Call with an attention_mask of this shape, batch included (None,10,10 or 10,10); "
        "checked by running the layer with a random mask.",
    ),
]
CausalOption = Annotated[bool, typer.Option("--causal", help="Call with use_causal_mask=True.")]
SlidingWindowOption = Annotated[
    int | None,
    typer.Option(
        "--sliding-window",
        metavar="INT",
        parser=_positive("--sliding-window"),
        help="sliding_window (Keras >= 3.15): attend within INT-1 positions either side.",
    ),
]


app = typer.Typer(
    cls=ExplainByDefault,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def mha_explain(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Explain keras.layers.MultiHeadAttention from a real forward pass, and pin its shapes in CI.

    explain is the default command, so these two are the same:

    \b
        mha-explain --shape 32,64,4 --axes 1
        mha-explain explain --shape 32,64,4 --axes 1

    Exit codes: 0 answer, 1 a check failed or a case differs, 2 bad input,
    3 environment problem, 130 interrupted, 141 stdout closed before the answer.
    """


@app.command("explain")
def explain_command(
    shape: ShapeOption,
    axes: Annotated[
        Any, typer.Option("--axes", metavar="AXES", parser=_parser(parse_axes, "--axes"), help=_AXES_HELP)
    ] = "none",
    num_heads: NumHeadsOption = None,
    key_dim: KeyDimOption = None,
    value_dim: ValueDimOption = None,
    value_shape: ValueShapeOption = None,
    key_shape: KeyShapeOption = None,
    output_shape: OutputShapeOption = None,
    bias: BiasOption = True,
    gate: GateOption = False,
    dropout: DropoutOption = 0.0,
    dtype: DtypeOption = "float32",
    batch: BatchOption = 2,
    seed: SeedOption = 0,
    axis_names: AxisNamesOption = None,
    mask_shape: MaskShapeOption = None,
    causal: CausalOption = False,
    sliding_window: SlidingWindowOption = None,
    backend: AnyBackendOption = "tensorflow",
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Answer from the shape algebra alone: no Keras, no checks.")
    ] = False,
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    verify_small: Annotated[
        bool,
        typer.Option(
            "--verify-small",
            help="When --max-memory skips the forward pass, run and check the same layer with every "
            "axis but the features shrunk to at most 4 positions.",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema in the README).")
    ] = False,
    get: Annotated[
        str | None,
        typer.Option(
            "--get",
            metavar="PATH",
            help="Print one value of the JSON document, e.g. shapes.attention_scores.",
        ),
    ] = None,
    picture: Annotated[
        bool,
        typer.Option("--picture", help="Draw which key positions one query position attends to (see --at)."),
    ] = False,
    at: Annotated[
        Any,
        typer.Option(
            "--at",
            metavar="POSITION",
            parser=_parser(parse_position, "--at"),
            help="The query position for --picture, e.g. 5,10 [default: the centre]; implies --picture.",
        ),
    ] = None,
    svg: Annotated[
        Path | None, typer.Option("--svg", metavar="PATH", help="Also save the tables (and picture) as SVG.")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="PATH", help="Also save the tables (and picture) as HTML."),
    ] = None,
    graph: Annotated[
        bool,
        typer.Option(
            "--graph",
            help="Show how a functional model records the call (Model.get_config()), beside Attention.",
        ),
    ] = False,
    code: Annotated[
        bool,
        typer.Option(
            "--code", help="Print a runnable Keras script that builds this layer and prints both shapes."
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
    from mha_cli.core.config import MHAConfig

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
    config = MHAConfig(
        query_shape=shape,
        value_shape=value_shape,
        key_shape=key_shape,
        num_heads=num_heads,
        key_dim=key_dim,
        value_dim=value_dim,
        output_shape=output_shape,
        attention_axes=axes,
        use_bias=bias,
        use_gate=gate,
        dropout=dropout,
        dtype=dtype,
        batch=batch,
        seed=seed,
        axis_names=axis_names,
        mask_shape=mask_shape,
        causal=causal,
        sliding_window=sliding_window,
    )
    if backend == "all":
        _all_backends(config, max_memory, json_output, debug)
        return
    from mha_cli.operations.explain import explain

    result = _guarded(
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

    from mha_cli.output import document

    drawn = None
    if picture or at is not None:
        from mha_cli.operations.picture import attention_picture

        drawn = _guarded(lambda: attention_picture(result, at), debug)
    if get is not None:
        value = _guarded(lambda: document.get_path(document.to_document(result, drawn), get), debug)
        typer.echo(document.shell_form(value))
    elif code:
        from mha_cli.output.code import snippet

        typer.echo(snippet(result.derivation), nl=False)
    elif json_output:
        typer.echo(document.dumps(document.to_document(result, drawn)))
    else:
        from mha_cli.output.render import export, make_console, render

        console = make_console(record=bool(exports))
        render(result, console, drawn)
        title = "mha-explain " + " ".join(sys.argv[1:])
        for option, path in (("--svg", svg), ("--html", html)):
            if path is not None:
                save = partial(export, console, option, path, title)
                _guarded(partial(_saved, option, path, save), debug)
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        fail(
            ExitCode.CHECK_FAILED,
            f"check failed: {names}; the real layer and the derivation disagree (see Verification)",
        )


@app.command("compare")
def compare_command(
    shape: ShapeOption,
    axes: Annotated[
        list[Any],
        typer.Option(
            "--axes",
            metavar="AXES",
            parser=_parser(parse_axes, "--axes"),
            help="Give it twice or more, one per configuration: " + _AXES_HELP,
            show_default=False,
        ),
    ],
    num_heads: NumHeadsOption = None,
    key_dim: KeyDimOption = None,
    value_dim: ValueDimOption = None,
    value_shape: ValueShapeOption = None,
    key_shape: KeyShapeOption = None,
    output_shape: OutputShapeOption = None,
    bias: BiasOption = True,
    gate: GateOption = False,
    dropout: DropoutOption = 0.0,
    dtype: DtypeOption = "float32",
    batch: BatchOption = 2,
    seed: SeedOption = 0,
    axis_names: AxisNamesOption = None,
    mask_shape: MaskShapeOption = None,
    causal: CausalOption = False,
    sliding_window: SlidingWindowOption = None,
    backend: BackendOption = "tensorflow",
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Compare from the shape algebra alone: no Keras, no outputs.")
    ] = False,
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema in the README).")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Compare attention_axes choices side by side, from real forward passes.

    One column per --axes; every shape, equation and count, with the rows that
    differ marked. The configurations get identical weights and inputs, so the
    answer to "do they compute the same thing?" is their outputs' max |difference|.
    Exit codes: 0 answer (equal or not), 1 a check failed, 2 bad input, 3 environment.
    """
    from dataclasses import replace

    from mha_cli.core.config import MHAConfig
    from mha_cli.operations.compare import compare

    if len(axes) < 2:
        fail(ExitCode.BAD_INPUT, "--axes: give two or more to compare, e.g. --axes 1 --axes none")
    base = MHAConfig(
        query_shape=shape,
        value_shape=value_shape,
        key_shape=key_shape,
        num_heads=num_heads,
        key_dim=key_dim,
        value_dim=value_dim,
        output_shape=output_shape,
        use_bias=bias,
        use_gate=gate,
        dropout=dropout,
        dtype=dtype,
        batch=batch,
        seed=seed,
        axis_names=axis_names,
        mask_shape=mask_shape,
        causal=causal,
        sliding_window=sliding_window,
    )
    configs = [replace(base, attention_axes=given) for given in axes]
    comparison = _guarded(lambda: compare(configs, backend, execute=not no_run, max_memory=max_memory), debug)
    if json_output:
        from mha_cli.output import document

        typer.echo(document.dumps(document.compare_document(comparison)))
    else:
        from mha_cli.output.render import make_console, render_compare

        render_compare(comparison, make_console())
    failed = [check.name for result in comparison.results for check in result.failed]
    if failed:
        fail(
            ExitCode.CHECK_FAILED, f"check failed: {', '.join(sorted(set(failed)))} (see the explain output)"
        )


@app.command("check")
def check_command(
    files: CaseFilesArgument,
    select: SelectOption = None,
    json_output: ReportJsonOption = False,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", metavar="PATH", help="Also write the report as JUnit XML to PATH."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail cases that have no expect block (exit 1).")
    ] = False,
    backend: BackendOption = "tensorflow",
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    debug: DebugOption = False,
) -> None:
    """Check case files against the real layer, all in one process.

    Every case runs a real forward pass with the same verifications as explain,
    and its expect block is compared field by field. Exit codes: 0 all passed,
    1 a case differs or a verification failed, 2 an invalid file or case
    (file:line; every other file is still checked), 3 environment problem.
    """
    from mha_cli.operations.check import check_files
    from mha_cli.output.render import progress_bar

    if junit is not None and not junit.parent.is_dir():
        fail(ExitCode.BAD_INPUT, f"--junit {junit}: no directory {junit.parent} to write it in")
    with progress_bar(sys.stderr) as progress:
        report = _guarded(
            lambda: check_files(files, backend, pattern=select, max_memory=max_memory, progress=progress),
            debug,
        )
    if json_output:
        from mha_cli.output import document

        typer.echo(document.dumps(document.check_document(report, strict=strict)))
    else:
        from mha_cli.output.render import make_console, render_check

        render_check(report, make_console(), strict=strict)
    if junit is not None:
        from mha_cli.core.files import write_atomically
        from mha_cli.output.junit import junit_xml

        xml = junit_xml(report, strict=strict)
        _guarded(partial(_saved, "--junit", junit, partial(write_atomically, junit, xml)), debug)
    code = report.exit_code(strict=strict)
    if code is not ExitCode.OK:
        problems = report.problems(strict=strict)
        fail(code, f"{len(problems)} problem(s) in the cases checked; first: {problems[0]}")


@app.command("record")
def record_command(
    files: CaseFilesArgument,
    update: Annotated[
        bool,
        typer.Option(
            "--update", help="Replace expectations that differ from the real layer (and print them)."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")
    ] = False,
    select: SelectOption = None,
    json_output: ReportJsonOption = False,
    backend: BackendOption = "tensorflow",
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    debug: DebugOption = False,
) -> None:
    """Fill in missing expect blocks from real forward passes.

    Keeps the file's comments, order and formatting, writes it atomically, and
    records the Keras version and backend in its [recorded] table. An existing
    expectation is never changed without --update. Exit codes: 0 done, 1 an
    expectation differs (kept) or a case could not be recorded, 2 an invalid
    file or case, 3 environment problem.
    """
    from mha_cli.operations.record import record_files
    from mha_cli.output.render import make_console, progress_bar, render_record

    with progress_bar(sys.stderr) as progress:
        report = _guarded(
            lambda: record_files(
                files,
                backend,
                update=update,
                dry_run=dry_run,
                pattern=select,
                max_memory=max_memory,
                progress=progress,
            ),
            debug,
        )
    if json_output:
        from mha_cli.output import document

        typer.echo(document.dumps(document.record_document(report)))
    else:
        render_record(report, make_console())
    code = report.exit_code()
    if code is not ExitCode.OK:
        problems = report.problems()
        fail(code, f"{len(problems)} problem(s) recording; first: {problems[0]}")


def _all_backends(config: Any, max_memory: int, json_output: bool, debug: bool) -> None:
    """--backend all: the same configuration on every installed backend, side by side."""
    from mha_cli.operations.backends import run_on_backends
    from mha_cli.output import document

    runs = _guarded(lambda: run_on_backends(config, max_memory=max_memory), debug)
    if json_output:
        typer.echo(document.dumps(document.backends_document(runs)))
    else:
        from mha_cli.output.render import make_console, render_backends

        render_backends(runs, make_console())
    documents = {run.backend: run.document for run in runs if run.document is not None}
    if not documents:
        fail(
            ExitCode.ENVIRONMENT, f"--backend all: no backend could run; {runs[0].backend}: {runs[0].problem}"
        )
    failed = [
        backend
        for backend, doc in documents.items()
        if any(check["status"] == "failed" for check in doc["checks"].values())
    ]
    if failed:
        fail(
            ExitCode.CHECK_FAILED,
            f"check failed on {', '.join(failed)} (run --backend {failed[0]} for details)",
        )


def _saved(option: str, path: Path, save: Callable[[], None]) -> None:
    """Run ``save``, which writes ``path``; a failure is the user's path, not our bug."""
    try:
        save()
    except OSError as error:
        raise ConfigError(option, str(path), f"cannot write it: {error.strerror or error}") from None


def _guarded(action: Callable[[], T], debug: bool) -> T:
    """Run ``action``, turning each kind of failure into its exit code."""
    try:
        return action()
    except ConfigError as error:
        fail(ExitCode.BAD_INPUT, str(error))
    except EnvironmentProblem as error:
        fail(ExitCode.ENVIRONMENT, str(error))
    except Exception as error:
        if debug:
            from mha_cli.runtime.quiet import captured

            typer.echo("".join(captured), err=True)
            traceback.print_exc()
        kind = (
            "internal error"
            if isinstance(error, InternalError)
            else f"internal error: {type(error).__name__}"
        )
        fail(
            ExitCode.CHECK_FAILED,
            f"{kind}: {error} (a bug in mha-explain; rerun with --debug for the traceback)",
        )


def main() -> None:
    """Console-script entry point.

    The group turns Ctrl-C into exit 130 with one line; this catches one that
    lands outside it (while Typer starts or returns), so none ends in a traceback.
    It never returns: it ends the process through leave().
    """
    code: int | str | None = None
    try:
        app(prog_name="mha-explain")
    except SystemExit as leaving:
        code = leaving.code
    except KeyboardInterrupt:
        say_interrupted()
        code = int(ExitCode.INTERRUPTED)
    finally:
        # The answer (or the interrupted line) is out: a Ctrl-C while Python
        # shuts down must not change the exit code or print a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    leave(code)


def leave(code: int | str | None) -> NoReturn:
    """Exit with ``code``, without the interpreter's teardown once a backend is loaded.

    With TensorFlow imported, Python's finalization (freeing every module and
    object, TensorFlow's C++ destructors) takes about 1 s after the answer is
    written: a quarter of a run, spent on memory the OS frees anyway. This does
    what a normal exit does that matters (the atexit handlers, which also remove
    temporary directories, and flushing stdout and stderr), then ends the
    process. Every file mha-explain writes is closed before this point.
    """
    try:
        sys.stdout.flush()  # the end of the answer may still be in the buffer
    except OSError as error:
        code = _unwritable_stdout(error)
    except ValueError:  # closed
        pass
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # what Python runs at exit, before teardown
    if isinstance(code, str) or "keras" not in sys.modules or run_exit_handlers is None:
        sys.exit(code)  # nothing heavy to skip, or a message to print: Python's own exit
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)
