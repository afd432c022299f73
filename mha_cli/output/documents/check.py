"""check's and record's JSON documents."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mha_cli.core.version import __version__
from mha_cli.operations.check import CaseStatus
from mha_cli.output.documents import SCHEMA_VERSION

if TYPE_CHECKING:  # annotations only
    from mha_cli.operations.check import CaseResult, CheckReport
    from mha_cli.operations.record import Change, RecordReport


def _case_result(result: CaseResult) -> dict[str, Any]:
    return {
        "file": str(result.path),
        "name": result.name,
        "line": result.line,
        "status": result.status.value,
        "mismatches": [
            {"field": m.field, "expected": m.expected, "actual": m.actual} for m in result.mismatches
        ],
        "failed_checks": list(result.failed_checks),
        "error": result.error,
        "executed": result.result is not None and result.result.executed,
        "not_executed_reason": result.not_executed_reason,
        "warnings": list(result.warnings),
        "seconds": round(result.seconds, 4),
    }


def check_document(report: CheckReport, *, strict: bool = False) -> dict[str, Any]:
    """The report of ``mha-explain check --json`` (schema in docs/scripts.md)."""

    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": report.keras_version,
        "backend": report.backend,
        "exit_code": int(report.exit_code(strict=strict)),
        "summary": {
            "files": len(report.files),
            "cases": len(report.results),
            **{status.value: report.count(status) for status in CaseStatus},
            "unreadable_files": sum(file.error is not None for file in report.files),
            "seconds": round(report.seconds, 3),
        },
        "files": [
            {
                "path": str(file.path),
                "error": file.error,
                "recorded": None if file.recorded is None else asdict(file.recorded),
                "version_note": report.version_note(file),
            }
            for file in report.files
        ],
        "cases": [_case_result(result) for result in report.results],
    }


def record_document(report: RecordReport) -> dict[str, Any]:
    """The report of ``mha-explain record --json`` (schema in docs/scripts.md)."""

    def changes(found: tuple[Change, ...]) -> list[dict[str, Any]]:
        return [{"case": c.case, "field": c.field, "old": c.old, "new": c.new} for c in found]

    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": report.keras_version,
        "backend": report.backend,
        "dry_run": report.dry_run,
        "exit_code": int(report.exit_code()),
        "files": [
            {
                "path": str(outcome.path),
                "error": outcome.error,
                "invalid": outcome.invalid,
                "written": outcome.written,
                "added": list(outcome.added),
                "updated": changes(outcome.updated),
                "kept": changes(outcome.kept),
                "unchanged": list(outcome.unchanged),
                "not_recorded": [{"case": case, "why": why} for case, why in outcome.not_recorded],
            }
            for outcome in report.outcomes
        ],
    }
