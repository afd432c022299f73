"""check and record: case files' verdicts and what record changed, as tables, a progress bar and JSON."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.text import Text

from mha_cli.core.cases import show
from mha_cli.operations.check import CaseStatus, CheckReport, Progress
from mha_cli.operations.record import GONE, RecordReport
from mha_cli.output.tables import titled_table

_CASE_MARK = {
    CaseStatus.PASSED: ("PASS", "green"),
    CaseStatus.FAILED: ("FAIL", "bold red"),
    CaseStatus.ERROR: ("ERROR", "bold red"),
    CaseStatus.UNRECORDED: ("NEW", "yellow"),
}


def render_check(report: CheckReport, console: Console, *, strict: bool = False) -> None:
    """One row per case, with a row per differing field; then the totals."""
    for file in report.files:
        if not file.results and file.error is None:
            continue  # -k selected none of its cases
        table = titled_table(str(file.path), "case", "status", "line", "details")
        note = report.version_note(file)
        if note is not None:
            table.caption = f"note: {note}"
            table.caption_justify = "left"
        if file.error is not None:
            table.add_row("(file)", Text("ERROR", style="bold red"), "", file.error)
        for result in file.results:
            mark, style = _CASE_MARK[result.status]
            if strict and result.status is CaseStatus.UNRECORDED:
                style = "bold red"
            lines = result.explanation()
            if result.status is CaseStatus.PASSED and result.case is not None and result.case.expect:
                lines.append(f"as expected: {', '.join(result.case.expect)}")
            if result.not_executed_reason is not None and result.status is not CaseStatus.ERROR:
                lines.append(f"not executed: {result.not_executed_reason}")
            table.add_row(result.name, Text(mark, style=style), str(result.line), lines[0] if lines else "")
            for line in lines[1:]:
                table.add_row("", "", "", line)
        console.print(table)
    label = {CaseStatus.ERROR: "error(s)", CaseStatus.UNRECORDED: "without expectations"}
    counts = ", ".join(
        f"{report.count(status)} {label.get(status, status.value)}"
        for status in CaseStatus
        if report.count(status)
    )
    bad_files = sum(file.error is not None for file in report.files)
    unreadable = f", {bad_files} unreadable file(s)" if bad_files else ""
    ran_on = f"Keras {report.keras_version} on {report.backend}" if report.keras_version else report.backend
    console.print(
        f"{len(report.results)} case(s) in {len(report.files)} file(s): {counts or 'none'}{unreadable} "
        f"({ran_on}, {report.seconds:.1f} s)"
    )


def render_record(report: RecordReport, console: Console) -> None:
    """Per file: what was added, replaced, kept and left out, and why."""
    verb = "would write" if report.dry_run else "wrote"
    for outcome in report.outcomes:
        if outcome.error is not None:
            console.print(Text(outcome.error, style="bold red"))
            continue
        counts = [
            f"{len(outcome.added)} new expect block(s)",
            f"{len(outcome.updated)} expectation(s) replaced",
            f"{len(outcome.unchanged)} unchanged",
        ]
        if outcome.kept:
            counts.append(f"{len(outcome.kept)} differing, kept")
        if outcome.not_recorded:
            counts.append(f"{len(outcome.not_recorded)} not recorded")
        done = verb if outcome.added or outcome.updated else "left as it was"
        console.print(f"{outcome.path}: {done}: {', '.join(counts)}", style="bold")
        for name in outcome.added:
            console.print(f"  added    {name}")
        for change in outcome.updated:
            console.print(
                f"  replaced {change.case}: {change.field} {show(change.old)} -> {show(change.new)}"
            )
        for change in outcome.kept:
            if change.field == GONE:
                said = "pinned in the file but gone from the model (rerun with --update to remove it)"
            else:
                said = (
                    f"{change.field} is {show(change.old)} in the file, {outcome.source} gives "
                    f"{show(change.new)} (rerun with --update to replace it)"
                )
            console.print(Text(f"  kept     {change.case}: {said}", style="yellow"))
        for name, why in outcome.not_recorded:
            console.print(Text(f"  skipped  {name}: {why}", style="red"))
    ran_on = f"Keras {report.keras_version} on {report.backend}" if report.keras_version else report.backend
    console.print(f"recorded with {ran_on}")


@contextmanager
def progress_bar(stream: TextIO) -> Iterator[Progress | None]:
    """A progress bar on ``stream`` when it is a terminal; None (silence) otherwise."""
    if not stream.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
    ) as bar:
        task = bar.add_task("checking", total=None)

        def advance(done: int, total: int, case_id: str) -> None:
            bar.update(task, completed=done, total=total, description=case_id)

        yield advance
