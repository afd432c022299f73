"""``mha-explain check``: case files against the real layer, in one process."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from mha_cli.cli.options import (
    DEFAULT_SCREEN,
    BackendOption,
    CaseFilesArgument,
    DebugOption,
    MaxMemoryOption,
    ReportJsonOption,
    Screen,
    SelectOption,
    screen_options,
)
from mha_cli.cli.process import fail, guarded, saved
from mha_cli.core.errors import ExitCode


@screen_options
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
    vectors: Annotated[
        Path | None,
        typer.Option("--vectors", metavar="DIR", help="Also write each case's test vectors under DIR."),
    ] = None,
    backend: BackendOption = "tensorflow",
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    screen: Screen = DEFAULT_SCREEN,
    debug: DebugOption = False,
) -> None:
    """Check case files against the real layer, all in one process.

    Every case runs a real forward pass with the same verifications as explain,
    and its expect block is compared field by field. Exit codes: 0 all passed,
    1 a case differs or a verification failed, 2 an invalid file or case
    (file:line; every other file is still checked), 3 environment problem.
    """
    from mha_cli.operations.check import check_files
    from mha_cli.output import check as shown
    from mha_cli.output.documents.check import check_document

    if junit is not None and not junit.parent.is_dir():
        fail(ExitCode.BAD_INPUT, f"--junit {junit}: no directory {junit.parent} to write it in")
    if vectors is not None:
        from mha_cli.output.vectors import prepared

        guarded(partial(prepared, "--vectors", vectors), debug)
    with shown.progress_bar(sys.stderr) as progress:
        report = guarded(
            lambda: check_files(
                files,
                backend,
                pattern=select,
                max_memory=max_memory,
                progress=progress,
                vectors=vectors is not None,
            ),
            debug,
        )
    screen.answer(
        json_output,
        partial(check_document, report, strict=strict),
        partial(shown.render_check, report, strict=strict),
    )
    if vectors is not None:
        from mha_cli.cli.commands.vectors import write_sets
        from mha_cli.operations.vectors import Places, check_vectors

        sets, skipped = check_vectors(report, Places())
        write_sets(vectors, sets, skipped, tables=None if json_output else screen, debug=debug)
    if junit is not None:
        from mha_cli.core.files import write_atomically
        from mha_cli.output.junit import junit_xml

        xml = junit_xml(report, strict=strict)
        guarded(partial(saved, "--junit", junit, partial(write_atomically, junit, xml)), debug)
    code = report.exit_code(strict=strict)
    if code is not ExitCode.OK:
        problems = report.problems(strict=strict)
        fail(code, f"{len(problems)} problem(s) in the cases checked; first: {problems[0]}")
