"""``explain --jsonl FILE|-``: one configuration per line in, one answer per line out, as each is done."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import BinaryIO

import typer

from mha_cli.cli.process import fail, guarded, say_error
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.core.grammar import quoted


def explain_lines(
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
    from mha_cli.output import documents
    from mha_cli.output.documents.explain import line_error_document, to_document

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
                typer.echo(documents.line_form(line_error_document(answer)))
        else:
            # Which input line it answers: its number, and the name the line gave (or None).
            found = {**to_document(answer.result), "line": answer.line, "name": answer.name}
            if get:
                values = []
                for wanted in get:
                    try:
                        values.append(documents.line_value(documents.get_path(found, wanted)))
                    except ConfigError as error:  # a path some documents have (shapes.gate), not this one
                        if wanted.split(".")[0] not in found:  # no document has it: a typo, stop
                            fail(ExitCode.BAD_INPUT, str(error))
                        say_error(f"--jsonl {source}:{answer.line}: {error}")
                        worst = max(worst, ExitCode.BAD_INPUT)
                        values.append("")
                typer.echo("\t".join(values))
            else:
                typer.echo(documents.line_form(found))
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
