"""Check case files against the real layer, all in one process.

Each case runs through :func:`mha_cli.operations.explain.explain` (the same forward pass
and verifications as the explain command); its expectations are compared with
the derivation that the real layer has just confirmed. The backend is imported
once, by the first case that runs. The report is a frozen object that
:mod:`mha_cli.output.check` (tables and JSON) and :mod:`mha_cli.output.junit` present.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mha_cli.core.cases import (
    Case,
    CaseFile,
    CaseFileError,
    Mismatch,
    ModelCase,
    PinnedCall,
    Recorded,
    compare,
    find_case_files,
    load,
    model_problem,
    show,
)
from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, ExplainResult, explain
from mha_cli.operations.scan import CallResult, observed_call, observed_other, scan

if TYPE_CHECKING:
    from mha_cli.runtime.others import OtherAttention


class CaseStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # an expectation differs, or a verification failed: exit 1
    ERROR = "error"  # the case is invalid, or the real layer rejects it: exit 2
    UNRECORDED = "unrecorded"  # verified, but it has no expect block to compare


#: CaseResult.source for a model's calls.
MODEL = "the model"
#: Called before each case runs: (cases done, cases in all, the case's id).
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CaseResult:
    path: Path
    name: str
    line: int
    status: CaseStatus
    mismatches: tuple[Mismatch, ...] = ()
    #: One line per failed verification (derivation, numpy_reference).
    failed_checks: tuple[str, ...] = ()
    #: What the actual values come from, in mismatch lines.
    source: str = "the real layer"
    warnings: tuple[str, ...] = ()
    #: Why the case is an error (its location is path, line and name).
    error: str | None = None
    not_executed_reason: str | None = None
    seconds: float = 0.0
    case: Case | None = None
    result: ExplainResult | None = None
    #: A pinned model call's scan result (the call as the model made it).
    scanned: CallResult | None = None

    @property
    def id(self) -> str:
        return f"{self.path}::{self.name}"

    @property
    def location(self) -> str:
        what = "call" if self.source == MODEL else "case"
        return f"{self.path}:{self.line}: {what} {self.name!r}"

    def explanation(self) -> list[str]:
        """What is wrong, one line per problem: what every report shows for this case."""
        lines = [
            f"{m.field}: expected {show(m.expected)}, {self.source} gives {show(m.actual)}"
            for m in self.mismatches
        ]
        lines.extend(self.failed_checks)
        if self.error is not None:
            lines.append(self.error)
        if self.status is CaseStatus.UNRECORDED:
            lines.append("no expect block: run mha-explain record on this file to pin its shapes")
        return lines


@dataclass(frozen=True)
class FileReport:
    path: Path
    results: tuple[CaseResult, ...]
    #: The file could not be read at all (it has no results then).
    error: str | None = None
    recorded: Recorded | None = None


@dataclass(frozen=True)
class CheckReport:
    files: tuple[FileReport, ...]
    backend: str
    #: The Keras that ran the cases (None when none ran).
    keras_version: str | None
    seconds: float

    @property
    def results(self) -> tuple[CaseResult, ...]:
        return tuple(result for file in self.files for result in file.results)

    def count(self, status: CaseStatus) -> int:
        return sum(result.status is status for result in self.results)

    def version_note(self, file: FileReport) -> str | None:
        """Says so when a file's expectations came from another Keras or backend.

        Compared per file, with the versions that ran its cases ("3.15.1, 2.21.0" when some say
        keras = 2); when the Keras major changed, it says how to see what differs.
        """
        recorded = file.recorded
        ran = keras_version_of(file.results)
        if recorded is None or ran is None:
            return None
        if (recorded.keras_version, recorded.backend) == (ran, self.backend):
            return None
        note = (
            f"expectations recorded with Keras {recorded.keras_version} on {recorded.backend}; "
            f"this run: Keras {ran} on {self.backend}"
        )
        before, now = _majors(recorded.keras_version), _majors(ran)
        if before and now and before != now:
            note += (
                f" (Keras major {'/'.join(before)} then, {'/'.join(now)} now: mha-explain --keras all on a "
                "changed case names what differs)"
            )
        return note

    def problems(self, *, strict: bool = False) -> list[str]:
        """One line per unreadable file and per case that did not pass, with its location."""
        failing = {CaseStatus.FAILED, CaseStatus.ERROR} | ({CaseStatus.UNRECORDED} if strict else set())
        return [file.error for file in self.files if file.error is not None] + [
            f"{result.location}: {result.explanation()[0]}"
            for result in self.results
            if result.status in failing
        ]

    def exit_code(self, *, strict: bool = False) -> ExitCode:
        """2 when a file or case is invalid, else 1 when any case failed, else 0."""
        if any(file.error for file in self.files) or self.count(CaseStatus.ERROR):
            return ExitCode.BAD_INPUT
        if self.count(CaseStatus.FAILED) or (strict and self.count(CaseStatus.UNRECORDED)):
            return ExitCode.CHECK_FAILED
        return ExitCode.OK


def matches(pattern: str | None, path: Path, name: str) -> bool:
    """-k: a glob (``*height*``) or a substring of ``file::name``, ignoring case."""
    if pattern is None:
        return True
    target = f"{path}::{name}".lower()
    wanted = pattern.lower()
    if any(char in wanted for char in "*?["):
        return fnmatch.fnmatchcase(name.lower(), wanted) or fnmatch.fnmatchcase(target, wanted)
    return wanted in target


def run_case(
    case: Case, backend: str, *, max_memory: int = DEFAULT_MAX_MEMORY, vectors: bool = False
) -> CaseResult:
    """One case through the real layer, then its expectations (``vectors``: keep what test vectors need)."""
    started = time.perf_counter()

    def finish(status: CaseStatus, line: int = case.line, **details: Any) -> CaseResult:
        seconds = time.perf_counter() - started
        return CaseResult(case.path, case.name, line, status, seconds=seconds, case=case, **details)

    try:
        result = explain(
            case.config,
            backend,
            max_memory=max_memory,
            observe_path=False,
            graph=vectors and isinstance(case.config, MHAConfig),  # --graph is MultiHeadAttention's
            intermediates=vectors,
        )
    except ConfigError as error:  # the real layer (or its backend) refuses the configuration
        problem = case.config_problem(error)  # at the line of the key it names
        return finish(CaseStatus.ERROR, line=problem.line, error=problem.problem)
    mismatches = () if case.expect is None else compare(case.expect, result.derivation)
    failed_checks = tuple(f"{check.name}: {check.detail}" for check in result.failed)
    if failed_checks or mismatches:
        status = CaseStatus.FAILED
    elif case.expect is None:
        status = CaseStatus.UNRECORDED
    else:
        status = CaseStatus.PASSED
    return finish(
        status,
        mismatches=mismatches,
        failed_checks=failed_checks,
        warnings=result.warnings,
        not_executed_reason=result.not_executed_reason,
        result=result,
        # Without a forward pass the values are the derivation's, checked against the built layer only.
        source="the real layer"
        if result.executed
        else "the shape algebra (the memory guard skipped the run)",
    )


def check_model(
    path: Path,
    model: ModelCase,
    backend: str,
    *,
    pattern: str | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    vectors: bool = False,
) -> list[CaseResult]:
    """Re-scan a case file's model and hold every call against what the file pins.

    A pinned call whose configuration or shapes changed fails, and so does a
    pinned call that is gone, and a call the file does not pin (a new layer, or
    a layer now called once more), each named by its layer path.
    """
    started = time.perf_counter()

    def finish(name: str, line: int, status: CaseStatus, **details: Any) -> CaseResult:
        seconds = time.perf_counter() - started
        return CaseResult(path, name, line, status, source=MODEL, seconds=seconds, **details)

    try:
        scanned = scan(model.spec, backend, max_memory=max_memory, intermediates=vectors)
    except ConfigError as error:
        return [finish("[model]", model.line, CaseStatus.ERROR, error=f"model: {model_problem(error)}")]
    found = {call.call.key: call for call in scanned.calls}
    others = {other.key: other for other in scanned.other_attention}
    pinned = {} if model.pinned is None else {call.key: call for call in model.pinned}
    results = []
    for key, pin in pinned.items():
        if not matches(pattern, path, key):
            continue
        call = found.get(key)
        if call is None and key in others:
            results.append(_other_result(finish, key, pin, others[key]))
            continue
        if call is None:
            where = ", ".join([*found, *others]) or "none"
            gone = f"this call is gone from the model (its attention calls now: {where}); run record --update"
            results.append(finish(key, pin.line, CaseStatus.FAILED, failed_checks=(gone,)))
            continue
        actual = observed_call(call)
        # At the first field that differs, else at the call's table.
        line = next((pin.lines[f] for f, value in pin.expect.items() if actual.get(f) != value), pin.line)
        results.append(_pinned_result(finish, key, line, pin.expect, call, actual))
    for key, call in found.items():
        if key in pinned or not matches(pattern, path, key):
            continue
        if model.pinned is None:  # never recorded: verified, nothing to compare yet
            results.append(_pinned_result(finish, key, model.line, None, call, observed_call(call)))
            continue
        new = f"an attention call the file does not pin ({call.call.class_name}); run record to pin it"
        results.append(
            finish(key, model.line, CaseStatus.FAILED, failed_checks=(new,), result=call.result, scanned=call)
        )
    for key, other in others.items():
        if key in pinned or not matches(pattern, path, key):
            continue
        if model.pinned is None:
            results.append(finish(key, model.line, CaseStatus.UNRECORDED, warnings=(_NOT_EXPLAINED,)))
            continue
        new = (
            f"an attention call the file does not pin ({other.class_name}, not explained); "
            "run record to pin it"
        )
        results.append(finish(key, model.line, CaseStatus.FAILED, failed_checks=(new,)))
    return results


#: What check says of a pinned call scan does not explain.
_NOT_EXPLAINED = "not explained: only its class, heads, shapes and params are compared, nothing verified"


def _other_result(
    finish: Callable[..., CaseResult], key: str, pin: PinnedCall, other: OtherAttention
) -> CaseResult:
    """A pinned call of a layer scan does not explain, held against what its file pins."""
    actual = observed_other(other)
    mismatches = tuple(
        Mismatch(field, expected, actual.get(field))
        for field, expected in pin.expect.items()
        if actual.get(field) != expected
    )
    line = next((pin.lines[m.field] for m in mismatches), pin.line)
    status = CaseStatus.FAILED if mismatches else CaseStatus.PASSED
    return finish(key, line, status, mismatches=mismatches, warnings=(_NOT_EXPLAINED,))


def _pinned_result(
    finish: Callable[..., CaseResult],
    key: str,
    line: int,
    expect: Mapping[str, Any] | None,
    call: CallResult,
    actual: dict[str, Any],
) -> CaseResult:
    if call.error is not None or call.result is None:
        return finish(key, line, CaseStatus.ERROR, error=call.error or "not explained")
    mismatches = tuple(
        Mismatch(field, expected, actual.get(field))
        for field, expected in (expect or {}).items()
        if actual.get(field) != expected
    )
    failed_checks = tuple(f"{check.name}: {check.detail}" for check in call.result.failed)
    if mismatches or failed_checks:
        status = CaseStatus.FAILED
    else:
        status = CaseStatus.UNRECORDED if expect is None else CaseStatus.PASSED
    return finish(
        key,
        line,
        status,
        mismatches=mismatches,
        failed_checks=failed_checks,
        warnings=call.result.warnings,
        not_executed_reason=call.result.not_executed_reason,
        result=call.result,
        scanned=call,
    )


def _problem_result(problem: CaseFileError) -> CaseResult:
    return CaseResult(
        problem.path, problem.case or "?", problem.line, CaseStatus.ERROR, error=problem.problem
    )


@dataclass(frozen=True)
class Selected:
    """One case file as read, and the cases (and problems) that ``-k`` selected in it."""

    path: Path
    case_file: CaseFile | None  # None when the file could not be read
    cases: tuple[Case, ...] = ()
    problems: tuple[CaseFileError, ...] = ()
    error: str | None = None

    @property
    def runs(self) -> int:
        """What a progress bar counts for this file: its selected cases, and its model if it names one."""
        return len(self.cases) + int(self.case_file is not None and self.case_file.model is not None)


def select(paths: Sequence[Path], pattern: str | None) -> list[Selected]:
    """Read every case file under ``paths`` and select cases; what check and record run.

    Raises ConfigError when there are no case files, or when ``pattern``
    selects nothing (a typo would otherwise pass CI by checking no case at all).
    """
    found = find_case_files(paths)
    if not found:
        shown = " ".join(str(path) for path in paths)
        raise ConfigError("FILE", shown, "no case files here (*.mha.toml or *.mha.json in a directory)")
    selected = []
    for path in found:
        try:
            case_file = load(path)
        except CaseFileError as unreadable:
            selected.append(Selected(path, None, error=str(unreadable)))
            continue
        cases = tuple(case for case in case_file.cases if matches(pattern, path, case.name))
        problems = tuple(p for p in case_file.problems if p.case is None or matches(pattern, path, p.case))
        selected.append(Selected(path, case_file, cases, problems))
    if pattern is not None and not any(
        file.cases or file.problems or _model_matches(file, pattern) for file in selected
    ):
        available = sum(len(file.case_file.cases) for file in selected if file.case_file is not None)
        raise ConfigError(
            "-k", repr(pattern), f"matches none of the {available} cases in {len(found)} file(s)"
        )
    return selected


def _model_matches(file: Selected, pattern: str) -> bool:
    """Whether -k can select a call of the file's model: a pinned call's path, or any call of a new file."""
    model = None if file.case_file is None else file.case_file.model
    if model is None:
        return False
    if model.pinned is None:
        return True
    return any(matches(pattern, file.path, call.key) for call in model.pinned)


def keras_version_of(results: Sequence[CaseResult]) -> str | None:
    """The Keras versions that ran ``results``, in order of first use: "3.15.1", or "3.15.1, 2.21.0"
    when some cases say keras = 2 (None when none ran)."""
    ran = (r.result.run.keras_version for r in results if r.result is not None and r.result.run is not None)
    return ", ".join(dict.fromkeys(ran)) or None


def _majors(versions: str) -> tuple[str, ...]:
    """The distinct majors in a ``keras_version_of`` string, sorted: ("2", "3")."""
    return tuple(
        sorted({version.strip().split(".")[0] for version in versions.split(",") if version.strip()})
    )


def check_files(
    paths: Sequence[Path],
    backend: str,
    *,
    pattern: str | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: Progress | None = None,
    vectors: bool = False,
) -> CheckReport:
    """Run every selected case of every file; a bad file never stops the others.

    With ``vectors``, every run keeps what test vectors need (its intermediates and call node).
    """
    started = time.perf_counter()
    selected = select(paths, pattern)
    total = sum(file.runs for file in selected)
    done = 0
    files = []
    for file in selected:
        results = []
        model = None if file.case_file is None else file.case_file.model
        if model is not None:
            if progress is not None:
                progress(done, total, f"{file.path}::[model]")
            results.extend(
                check_model(
                    file.path, model, backend, pattern=pattern, max_memory=max_memory, vectors=vectors
                )
            )
            done += 1
        for case in file.cases:
            if progress is not None:
                progress(done, total, case.id)
            results.append(run_case(case, backend, max_memory=max_memory, vectors=vectors))
            done += 1
        results.extend(_problem_result(problem) for problem in file.problems)
        results.sort(key=lambda result: result.line)
        recorded = None if file.case_file is None else file.case_file.recorded
        files.append(FileReport(file.path, tuple(results), file.error, recorded))
    keras_version = keras_version_of([result for report in files for result in report.results])
    return CheckReport(tuple(files), backend, keras_version, time.perf_counter() - started)
