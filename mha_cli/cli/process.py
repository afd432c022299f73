"""Process plumbing: the one error line, exit codes, a closed stdout, and leaving without teardown.

Exit codes (:class:`mha_cli.core.errors.ExitCode`): 0 answer, 1 a check failed
(or a bug), 2 bad input, 3 environment problem (e.g. a backend that is not
installed), 130 interrupted, 141 stdout closed before the answer was written.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import NoReturn, TypeVar

import typer

from mha_cli.cli.options import as_typed
from mha_cli.core.errors import ConfigError, EnvironmentProblem, ExitCode, InternalError

T = TypeVar("T")

PROGRAM = "mha-explain"
INTERRUPTED_LINE = f"{PROGRAM}: interrupted"


def say_error(message: str) -> None:
    """The one error line every failure prints on stderr."""
    typer.echo(f"{PROGRAM}: error: {message}", err=True)


def say_note(message: str) -> None:
    """A line on stderr that is not an error: what a command did beside its answer."""
    typer.echo(f"{PROGRAM}: {message}", err=True)


def say_interrupted() -> None:
    """The one line for Ctrl-C (main() then ignores any further one while the process winds down)."""
    typer.echo(INTERRUPTED_LINE, err=True)


def fail(code: ExitCode, message: str) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    say_error(message)
    raise typer.Exit(int(code))


def unwritable_stdout(error: OSError) -> ExitCode:
    """Say once that the answer could not be written; stdout then goes to /dev/null.

    Python flushes stdout again at exit, which would fail again (a traceback).
    """
    if not isinstance(error, BrokenPipeError):  # a reader that went away is not told
        say_error(f"cannot write the answer to stdout: {error.strerror or error}")
    with suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.BROKEN_PIPE if isinstance(error, BrokenPipeError) else ExitCode.ENVIRONMENT


def stdout_closed() -> bool:
    """Whether Click met a closed stdout (EPIPE): it then wraps stdout to silence the final flush."""
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"


def saved(option: str, path: Path, save: Callable[[], None]) -> None:
    """Run ``save``, which writes ``path``; a failure is the user's path, not our bug."""
    try:
        save()
    except OSError as error:
        raise ConfigError(option, str(path), f"cannot write it: {error.strerror or error}") from None


def guarded(action: Callable[[], T], debug: bool) -> T:
    """Run ``action``, turning each kind of failure into its exit code."""
    try:
        return action()
    except ConfigError as error:
        fail(ExitCode.BAD_INPUT, as_typed(error))
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
        code = unwritable_stdout(error)
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
