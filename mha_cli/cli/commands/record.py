"""``mha-explain record``: expectations written into case files from real forward passes."""

from __future__ import annotations

import sys
from functools import partial
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
from mha_cli.cli.process import fail, guarded
from mha_cli.core.errors import ExitCode


@screen_options
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
    screen: Screen = DEFAULT_SCREEN,
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
    from mha_cli.output import check as shown
    from mha_cli.output.documents.check import record_document

    with shown.progress_bar(sys.stderr) as progress:
        report = guarded(
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
    screen.answer(json_output, partial(record_document, report), partial(shown.render_record, report))
    code = report.exit_code()
    if code is not ExitCode.OK:
        problems = report.problems()
        fail(code, f"{len(problems)} problem(s) recording; first: {problems[0]}")
