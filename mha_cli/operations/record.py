"""Fill in case files' expect blocks from real forward passes.

The file is edited, not regenerated: TOML through tomlkit, which keeps comments,
order and formatting; JSON keeps its key order and indentation. Each file is
written once, atomically, after all its cases have run, so an error or an
interrupt part-way leaves it as it was. An existing expectation is replaced
only with ``update``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mha_cli.core.cases import SHAPE_FIELDS, CaseFileError, ModelCase, model_problem, observed, show
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.core.files import write_atomically
from mha_cli.core.version import __version__
from mha_cli.operations.check import (
    MODEL,
    CaseResult,
    CaseStatus,
    Progress,
    keras_version_of,
    run_case,
    select,
)
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY

#: What record writes into a new expect block (those the configuration has).
RECORDED_FIELDS = (*SHAPE_FIELDS, "params")


@dataclass(frozen=True)
class Change:
    case: str
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class RecordOutcome:
    path: Path
    #: Cases that had no expect block and now have one.
    added: tuple[str, ...] = ()
    #: Expectations replaced (``update``) or, without it, left differing.
    updated: tuple[Change, ...] = ()
    kept: tuple[Change, ...] = ()
    #: Cases whose expectations already hold.
    unchanged: tuple[str, ...] = ()
    #: (case, why) for cases that were not recorded: invalid, failed a check, not run.
    not_recorded: tuple[tuple[str, str], ...] = ()
    invalid: bool = False
    #: What the new values come from: the real layer (cases), or the model (a [model] file's calls).
    source: str = "the real layer"
    #: The file could not be read, or could not be written (then it is unchanged).
    error: str | None = None
    written: bool = False

    def kept_line(self, change: Change) -> str:
        """A difference record left in the file (without --update), in words."""
        if change.field == GONE:
            gone = "is pinned in the file but gone from the model; kept (--update removes it)"
            return f"call {change.case!r} {gone}"
        what = "call" if self.source == MODEL else "case"
        return (
            f"{what} {change.case!r}: {change.field} is {show(change.old)} in the file, {self.source} gives "
            f"{show(change.new)}; kept (--update replaces it)"
        )


#: Change.field for a pinned call the model no longer makes.
GONE = "call"


@dataclass(frozen=True)
class RecordReport:
    outcomes: tuple[RecordOutcome, ...]
    backend: str
    keras_version: str | None
    dry_run: bool

    def problems(self) -> list[str]:
        """One line per problem: unreadable or unwritable files, then kept differences, then skipped cases."""
        lines = [outcome.error for outcome in self.outcomes if outcome.error is not None]
        for outcome in self.outcomes:
            lines.extend(f"{outcome.path}: {outcome.kept_line(change)}" for change in outcome.kept)
        for outcome in self.outcomes:
            lines.extend(f"not recorded: {why}" for _, why in outcome.not_recorded)
        return lines

    def exit_code(self) -> ExitCode:
        """2 for an invalid file or case, 1 when something was left unrecorded or differing, else 0."""
        if any(outcome.error or outcome.invalid for outcome in self.outcomes):
            return ExitCode.BAD_INPUT
        if any(outcome.kept or outcome.not_recorded for outcome in self.outcomes):
            return ExitCode.CHECK_FAILED
        return ExitCode.OK


def record_files(
    paths: Sequence[Path],
    backend: str,
    *,
    update: bool = False,
    dry_run: bool = False,
    pattern: str | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: Progress | None = None,
) -> RecordReport:
    """Run the selected cases file by file, then write each file's new expectations."""
    selected = select(paths, pattern)
    total = sum(file.runs for file in selected)
    done = 0
    outcomes = []
    keras_version = None
    for file in selected:
        if file.case_file is None:
            outcomes.append(RecordOutcome(file.path, error=file.error))
            continue
        if file.case_file.model is not None:
            if progress is not None:
                progress(done, total, f"{file.path}::[model]")
            outcome, calls, ran_on = _record_model(
                file.path, file.case_file.model, backend, update, max_memory
            )
            keras_version = ran_on or keras_version
            if calls is not None and not dry_run:
                assert ran_on is not None
                text = _edit_calls(file.path, file.case_file.format, calls, _recorded_table(ran_on, backend))
                outcome = _written(outcome, file.path, text)
            outcomes.append(outcome)
            continue
        results: list[CaseResult] = []
        for case in file.cases:
            if progress is not None:
                progress(done, total, case.id)
            results.append(run_case(case, backend, max_memory=max_memory))
            done += 1
        keras_version = keras_version_of(results) or keras_version
        outcome, edits = _record_file(file.path, results, list(file.problems), update=update)
        if edits and not dry_run:
            assert keras_version is not None  # something was recorded, so a case ran
            text = _edit(file.path, file.case_file.format, edits, keras_version, backend)
            outcome = _written(outcome, file.path, text)
        outcomes.append(outcome)
    return RecordReport(tuple(outcomes), backend, keras_version, dry_run)


def _written(outcome: RecordOutcome, path: Path, text: str) -> RecordOutcome:
    """Write ``text`` over ``path`` atomically; a failure leaves the file as it was and says so."""
    try:
        write_atomically(path, text)
    except OSError as error:
        return replace(outcome, error=f"{path}: cannot write it: {error.strerror or error}; it is unchanged")
    return replace(outcome, written=True)


def _record_model(
    path: Path, model: ModelCase, backend: str, update: bool, max_memory: int
) -> tuple[RecordOutcome, dict[str, dict[str, Any]] | None, str | None]:
    """Scan the model and decide what the file's [calls] become: the report, the tables (None:
    nothing to write) and the Keras that ran."""
    from mha_cli.operations.scan import observed_call, observed_other, scan

    try:
        scanned = scan(model.spec, backend, max_memory=max_memory)
    except ConfigError as error:
        return (
            RecordOutcome(
                path,
                not_recorded=(("[model]", f"{path}: model: {model_problem(error)}"),),
                invalid=True,
                source=MODEL,
            ),
            None,
            None,
        )
    pinned = {call.key: dict(call.expect) for call in model.pinned or ()}
    calls: dict[str, dict[str, Any]] = {}
    added: list[str] = []
    unchanged: list[str] = []
    updated: list[Change] = []
    kept: list[Change] = []
    not_recorded: list[tuple[str, str]] = []

    def pin(key: str, actual: dict[str, Any]) -> None:
        """The call's table: new, unchanged, or updated (kept as pinned without --update)."""
        if key not in pinned:
            added.append(key)
            calls[key] = actual
            return
        expect = pinned[key]
        changes = [Change(key, f, expect[f], actual.get(f)) for f in expect if actual.get(f) != expect[f]]
        (updated if update else kept).extend(changes)
        if not changes:
            unchanged.append(key)
        calls[key] = {**expect, **{c.field: c.new for c in changes}} if update else expect

    for found in scanned.calls:
        key = found.call.key
        if found.error is not None or found.result is None or found.failed:
            why = found.error or (
                found.result.failed[0].detail if found.result and found.result.failed else ""
            )
            not_recorded.append((key, f"{path}: call {key!r}: not recorded: {why}"))
            if key in pinned:
                calls[key] = pinned[key]
            continue
        if found.result.not_executed_reason is not None:
            not_recorded.append((key, f"{path}: call {key!r}: not run: {found.result.not_executed_reason}"))
            if key in pinned:
                calls[key] = pinned[key]
            continue
        pin(key, observed_call(found))
    for other in scanned.other_attention:  # not explained: pinned by what scan reads of it
        pin(other.key, observed_other(other))
    for key, expect in pinned.items():
        if key in calls:
            continue
        change = Change(key, GONE, "pinned", "gone from the model")
        if update:
            updated.append(change)  # and not kept in the file
        else:
            kept.append(change)
            calls[key] = expect
    outcome = RecordOutcome(
        path,
        added=tuple(added),
        updated=tuple(updated),
        kept=tuple(kept),
        unchanged=tuple(unchanged),
        not_recorded=tuple(not_recorded),
        source=MODEL,
    )
    changed = bool(added) or bool(updated)
    return outcome, (calls if changed else None), scanned.keras_version


def _edit_calls(path: Path, fmt: str, calls: dict[str, dict[str, Any]], recorded: dict[str, str]) -> str:
    """The file with its [calls] tables set to ``calls`` (comments elsewhere kept) and [recorded]."""
    text = path.read_text(encoding="utf-8")
    if fmt == "json":
        document = json.loads(text)
        document["calls"] = calls
        document["recorded"] = recorded
        return _json_like(text, document)
    import tomlkit

    document = tomlkit.parse(text)
    table = document.get("calls")
    if table is None:
        table = tomlkit.table(is_super_table=True)
        table.comment("written by mha-explain record: one table per attention call, by layer path")
        document.add("calls", table)
    for key in list(table):
        if key not in calls:
            del table[key]
    for key, values in calls.items():
        if key in table:
            for field, value in values.items():
                if table[key].get(field) != value:
                    table[key][field] = value
        else:
            entry = tomlkit.table()
            entry.update(values)
            table.add(key, entry)
    _set_recorded(document, recorded)
    return tomlkit.dumps(document)


def _set_recorded(document: Any, recorded: dict[str, str]) -> None:
    """Update the TOML document's [recorded] table, or add it (with a comment saying what it is)."""
    import tomlkit

    if "recorded" in document:
        document["recorded"].update(recorded)
        return
    table = tomlkit.table()
    table.update(recorded)
    table.comment("written by mha-explain record: the Keras that produced the expectations")
    document.add("recorded", table)


def _json_like(text: str, document: Any) -> str:
    """``document`` as JSON, indented as ``text`` was."""
    indent = re.search(r"^( +)\S", text, re.MULTILINE)
    return json.dumps(document, indent=len(indent.group(1)) if indent else 2, ensure_ascii=False) + "\n"


#: By case index: the values to write, and whether they form a new expect block.
Edits = dict[int, tuple[dict[str, Any], bool]]


def _record_file(
    path: Path, results: list[CaseResult], problems: list[CaseFileError], *, update: bool
) -> tuple[RecordOutcome, Edits]:
    """Decide, case by case, what record does: the report and the edits, from one decision."""
    edits: Edits = {}
    added: list[str] = []
    unchanged: list[str] = []
    updated: list[Change] = []
    kept: list[Change] = []
    not_recorded = [(problem.case or "?", str(problem)) for problem in problems]
    for result in results:
        if result.status is CaseStatus.ERROR:
            not_recorded.append((result.name, f"{result.location}: {result.error}"))
        elif result.failed_checks:
            not_recorded.append((result.name, f"a verification failed: {result.failed_checks[0]}"))
        elif result.not_executed_reason is not None:
            not_recorded.append(
                (
                    result.name,
                    f"not run, so not recorded (expectations come from the real layer): "
                    f"{result.not_executed_reason}",
                )
            )
        else:
            case, explained = result.case, result.result
            assert case is not None and explained is not None  # run_case sets both for a case that ran
            if case.expect is None:
                added.append(result.name)
                edits[case.index] = (observed(explained.derivation, RECORDED_FIELDS), True)
            elif result.mismatches:
                changes = [Change(result.name, m.field, m.expected, m.actual) for m in result.mismatches]
                (updated if update else kept).extend(changes)
                if update:
                    fields = sorted({m.field.split(".")[0] for m in result.mismatches})
                    edits[case.index] = (observed(explained.derivation, fields), False)
            else:
                unchanged.append(result.name)
    outcome = RecordOutcome(
        path,
        added=tuple(added),
        updated=tuple(updated),
        kept=tuple(kept),
        unchanged=tuple(unchanged),
        not_recorded=tuple(not_recorded),
        invalid=bool(problems) or any(result.status is CaseStatus.ERROR for result in results),
    )
    return outcome, edits


def _recorded_table(keras_version: str, backend: str) -> dict[str, str]:
    return {"keras_version": keras_version, "backend": backend, "tool_version": __version__}


def _edit(path: Path, fmt: str, edits: Edits, keras_version: str, backend: str) -> str:
    text = path.read_text(encoding="utf-8")
    recorded = _recorded_table(keras_version, backend)
    return (_edit_toml if fmt == "toml" else _edit_json)(text, edits, recorded)


def _edit_toml(text: str, edits: Edits, recorded: dict[str, str]) -> str:
    import tomlkit
    from tomlkit.items import Table

    document = tomlkit.parse(text)
    entries = document["case"]
    for index, (values, new_block) in edits.items():
        entry = entries[index]
        if new_block and isinstance(entry, Table):
            _append_table(entry, "expect", values)
        elif new_block:  # an inline table, e.g. case = [{ name = "a", ... }]
            entry["expect"] = tomlkit.inline_table()
            entry["expect"].update(values)
        else:
            expect = entry["expect"]
            for field, value in values.items():
                if field == "equations":
                    for name in list(expect[field]):
                        expect[field][name] = value[name]
                else:
                    expect[field] = value
    _set_recorded(document, recorded)
    return tomlkit.dumps(document)


def _append_table(parent: Any, key: str, values: dict[str, Any]) -> None:
    """Add ``[case.expect]`` after the case's own keys.

    tomlkit counts the comments and blank lines that precede the next
    ``[[case]]`` as this case's trailing lines; they are moved after the new
    table, so a comment stays with the case below it.
    """
    import tomlkit

    body = parent.value.body
    trailing: list[tuple[Any, Any]] = []
    while body and body[-1][0] is None:
        trailing.insert(0, body.pop())
    table = tomlkit.table()
    table.update(values)
    parent.append(key, table)
    table.value.body.extend(trailing)


def _edit_json(text: str, edits: Edits, recorded: dict[str, str]) -> str:
    document = json.loads(text)
    for index, (values, new_block) in edits.items():
        entry = document["case"][index]
        if new_block:
            entry["expect"] = values
        else:
            for field, value in values.items():
                if field == "equations":
                    entry["expect"][field].update({name: value[name] for name in entry["expect"][field]})
                else:
                    entry["expect"][field] = value
    document["recorded"] = recorded
    return _json_like(text, document)
