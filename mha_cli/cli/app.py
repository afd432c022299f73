"""The mha-explain command line: the Typer app, its commands, and how a run begins and ends.

Each command lives in :mod:`mha_cli.cli.commands`; the options they share in
:mod:`mha_cli.cli.options`; exit codes and the error line in
:mod:`mha_cli.cli.process`.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from mha_cli.cli import options
from mha_cli.cli.commands.check import check_command
from mha_cli.cli.commands.compare import compare_command
from mha_cli.cli.commands.explain import explain_command
from mha_cli.cli.commands.map import map_command
from mha_cli.cli.commands.record import record_command
from mha_cli.cli.commands.scan import scan_command
from mha_cli.cli.commands.targets import targets_command
from mha_cli.cli.commands.vectors import vectors_command
from mha_cli.cli.commands.why import why_command
from mha_cli.cli.process import PROGRAM, leave, say_error, say_interrupted, stdout_closed, unwritable_stdout
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.core.version import __version__


def _is_click_error(error: Exception) -> bool:
    # Typer >= 0.26 vendors click as the private typer._click; older Typers use
    # click itself. Both raise a ClickException subclass for usage errors.
    return any(cls.__name__ == "ClickException" for cls in type(error).__mro__)


def _usage_error_line(error: Exception) -> str:
    """A refused value is the core's own line (the option, the value as typed, what is right);
    any other usage error is Click's message and where to look."""
    if isinstance(error, options.BadValue):
        return str(error.error)
    message = error.format_message()  # type: ignore[attr-defined]
    context = getattr(error, "ctx", None)
    # The program's own name, whatever the caller named it (CliRunner says "root").
    command = [] if context is None else context.command_path.split()[1:]
    return f"{message} (see {' '.join([PROGRAM, *command])} --help)"


class GroupedCommand(TyperCommand):
    """A command whose --help lists its options in sections (the options' ``rich_help_panel``),
    and which refuses a single-valued option given twice instead of keeping the last."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                title = "Arguments"
            else:
                title = getattr(param, "rich_help_panel", None) or "Options"
            sections.setdefault(title, []).append(record)
        order = ["Arguments", options.LAYER, options.INPUTS, options.RUN, options.OUTPUT, "Options"]
        for title in sorted(sections, key=lambda title: order.index(title) if title in order else len(order)):
            with formatter.section(title):
                formatter.write_dl(sections[title])

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        single = {
            name: param
            for param in self.get_params(ctx)
            if param.param_type_name == "option"
            and not getattr(param, "multiple", False)
            and not getattr(param, "is_flag", False)
            for name in param.opts
        }
        given: dict[str, list[str]] = {}
        for index, word in enumerate(args):
            name, _, attached = word.partition("=")
            if name in single and index + 1 <= len(args):
                value = attached or (args[index + 1] if index + 1 < len(args) else "")
                given.setdefault(single[name].opts[0], []).append(value)
            if word == "--":
                break
        for option, values in given.items():
            if len(values) > 1:
                hint = (
                    f"; to put several side by side, use mha-explain compare {option} {values[0]} "
                    f"{option} {values[1]}"
                    if option == "--axes" and self.name == "explain"
                    else ""
                )
                raise options.BadValue(
                    ConfigError(
                        option, None, f"given {len(values)} times ({', '.join(values)}); give it once{hint}"
                    )
                )
        return super().parse_args(ctx, args)


#: What bare ``mha-explain`` prints: how to start (exit 2, as for any incomplete command line).
FIRST_CONTACT = f"""\
usage: {PROGRAM} --shape SHAPE [OPTIONS]   explain one MultiHeadAttention configuration
       {PROGRAM} COMMAND [ARGS]...         compare, check, record or scan

  {PROGRAM} --shape 32,64,4 --axes 1
      an image: attention along its height only, and what each scores axis is
  {PROGRAM} compare --shape 10,16 --axes 1 --axes none
      a sentence: is attention_axes=(1,) the same as None? (yes: equal outputs)
  {PROGRAM} scan model.keras
      every MultiHeadAttention call in your model, on its own weights

{PROGRAM} --help lists the commands; {PROGRAM} explain --help every option.
"""

#: Options the group itself answers; anything else starting with "-" is explain's.
_GROUP_OPTIONS = frozenset({"--help", "-h", "--version", "--install-completion", "--show-completion"})


class ExplainByDefault(TyperGroup):
    """``mha-explain --shape ...`` means ``mha-explain explain --shape ...``.

    Usage errors, from the group or any command, become one line on stderr
    with exit 2, never a rich panel.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # bare mha-explain (completion asks with no args too)
            typer.echo(FIRST_CONTACT, err=True, nl=False)
            raise typer.Exit(int(ExitCode.BAD_INPUT))
        if args and args[0].startswith("-") and args[0] not in _GROUP_OPTIONS:
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
        options.typed.clear()  # one invocation's typed values (several run in one test process)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            if code == ExitCode.INTERRUPTED:  # Typer turns a KeyboardInterrupt into a silent Exit(130)
                say_interrupted()
        except SystemExit:
            if not stdout_closed():
                raise
            code = ExitCode.BROKEN_PIPE  # Click says 1, which here means a failed check
        except (typer.Abort, KeyboardInterrupt):
            say_interrupted()
            code = ExitCode.INTERRUPTED
        except OSError as error:  # writing the answer: every other OSError is mapped where it happens
            code = unwritable_stdout(error)
        except Exception as error:
            if not _is_click_error(error):
                raise
            say_error(_usage_error_line(error))
            code = ExitCode.BAD_INPUT
        if not standalone_mode:
            return code
        sys.exit(int(code or 0))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("keras")  # metadata only: --version must not import Keras
        except PackageNotFoundError:
            installed = "not installed"
        typer.echo(f"{PROGRAM} {__version__} (Keras {installed})")
        raise typer.Exit()


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


app.command("explain", cls=GroupedCommand)(explain_command)
app.command("compare", cls=GroupedCommand)(compare_command)
app.command("check", cls=GroupedCommand)(check_command)
app.command("record", cls=GroupedCommand)(record_command)
app.command("scan", cls=GroupedCommand)(scan_command)
app.command("vectors", cls=GroupedCommand)(vectors_command)
app.command("map", cls=GroupedCommand)(map_command)
app.command("targets", cls=GroupedCommand)(targets_command)
app.command("why", cls=GroupedCommand)(why_command)


def main() -> None:
    """Console-script entry point.

    The group turns Ctrl-C into exit 130 with one line; this catches one that
    lands outside it (while Typer starts or returns), so none ends in a traceback.
    It never returns: it ends the process through leave().
    """
    code: int | str | None = None
    try:
        app(prog_name=PROGRAM)
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
