"""The JSON document: the contract with scripts (schema in docs/scripts.md).

Change a key only by bumping SCHEMA_VERSION and saying so in docs/scripts.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mha_cli import __version__
from mha_cli.core.config import ExecutionPath
from mha_cli.core.derivation import Derivation, Einsum, Tensor
from mha_cli.core.errors import ConfigError
from mha_cli.core.masks import mask_layout
from mha_cli.core.models import InputSpec
from mha_cli.operations.explain import (
    Check,
    DerivationCheck,
    ExplainResult,
    ModelCallCheck,
    NumpyCheck,
    PlainCallCheck,
    ReducedRunCheck,
    SymbolicCheck,
)

if TYPE_CHECKING:  # an explain document needs none of these: --no-run stays instant
    from mha_cli.operations.backends import BackendsRun
    from mha_cli.operations.check import CaseResult, CheckReport
    from mha_cli.operations.compare import Comparison
    from mha_cli.operations.explore import Exploration
    from mha_cli.operations.majors import MajorsRun
    from mha_cli.operations.many import Answer
    from mha_cli.operations.picture import Picture
    from mha_cli.operations.porting import MapResult
    from mha_cli.operations.record import Change, RecordReport
    from mha_cli.operations.scan import ScanResult

SCHEMA_VERSION = 1


def _shape(tensor: Tensor) -> list[int | None]:
    return list(tensor.shape)


def _einsum(einsum: Einsum) -> dict[str, Any]:
    return {
        "equation": einsum.equation,
        "operands": [{"name": t.name, "shape": _shape(t), "labels": list(t.labels)} for t in einsum.operands],
        "result": {
            "name": einsum.result.name,
            "shape": _shape(einsum.result),
            "labels": list(einsum.result.labels),
        },
        "legend": {letter: {"axis": name, "size": size} for letter, name, size in einsum.legend},
        "flops_per_item": einsum.flops_per_item(),
    }


def _mask(d: Derivation) -> dict[str, Any]:
    expected, heads_axis = mask_layout(d)
    plan = d.mask
    return {
        "expected_shape": list(expected),
        "inserted_at": heads_axis,
        "given": None if plan is None else {name: list(shape) for name, shape in plan.sources},
        "broadcast_to": None if plan is None else list(plan.broadcast_to),
        "causal": d.config.causal,
        "sliding_window": d.config.sliding_window,
    }


def config_document(derivation: Derivation) -> dict[str, Any]:
    """Every layer argument that shapes the computation, resolved."""
    layer = derivation.layer
    return {
        "num_heads": layer.num_heads,
        "key_dim": layer.key_dim,
        "value_dim": layer.value_dim,
        "dropout": layer.dropout,
        "use_bias": layer.use_bias,
        "output_shape": None if layer.output_shape is None else list(layer.output_shape),
        "attention_axes": list(layer.attention_axes),
        "use_gate": layer.use_gate,
        "dtype": layer.dtype,
    }


def _optional_shape(shape: tuple[int | None, ...] | None) -> list[int | None] | None:
    return None if shape is None else list(shape)


def check_fields(check: Check) -> dict[str, Any]:
    """What one check measured, under the keys schema version 1 gives it."""
    match check:
        case DerivationCheck():
            return {
                "passed": check.passed,
                "mismatches": [
                    {"kind": m.kind, "name": m.name, "derived": m.derived, "keras": m.keras}
                    for m in check.mismatches
                ],
            }
        case NumpyCheck():
            fields: dict[str, Any] = {"passed": check.passed, "max_abs_diff": check.max_abs_diff}
            if check.ran:
                fields.update(
                    output_max_abs_diff=check.output_max_abs_diff,
                    attention_scores_max_abs_diff=check.attention_scores_max_abs_diff,
                )
            fields["tolerance"] = check.tolerance
            if check.ran:
                fields["known_keras_bugs"] = list(check.known_keras_bugs)
            return fields
        case SymbolicCheck():
            return {
                "agrees": check.passed,
                "output": _optional_shape(check.output),
                "attention_scores": _optional_shape(check.attention_scores),
            }
        case PlainCallCheck():
            return {
                "passed": check.passed,
                "path": check.path,
                "output_max_abs_diff": check.output_max_abs_diff,
                "tolerance": check.tolerance,
            }
        case ModelCallCheck():
            return {
                "passed": check.passed,
                "output_max_abs_diff": check.output_max_abs_diff,
                "tolerance": check.tolerance,
            }
        case ReducedRunCheck():
            fields = {"passed": check.passed, "inputs": {n: list(s) for n, s in check.inputs.items()}}
            if check.checks is not None:
                fields["checks"] = {name: status.value for name, status in check.checks.items()}
            return fields
    raise TypeError(f"no JSON for {type(check).__name__}")


def verification_document(check: Check) -> dict[str, Any]:
    return {"status": check.status.value, **check_fields(check)}


def picture_document(picture: Picture) -> dict[str, Any]:
    return {
        "at": list(picture.at),
        "axis_names": list(picture.axis_names),
        "key_grid": list(picture.key_grid),
        "attended_count": picture.attended_count,
        # Small grids whole; a big one would swamp the document.
        "attended": picture.attended.tolist() if picture.attended.size <= 4096 else None,
    }


def to_document(result: ExplainResult, picture: Picture | None = None) -> dict[str, Any]:
    d = result.derivation
    run = result.run
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": None if run is None else run.keras_version,
        "keras": d.config.keras,
        "backend": result.backend,
        "executed": result.executed,
        "not_executed_reason": result.not_executed_reason,
        "config": config_document(d),
        "attention_axes_given": None if d.config.attention_axes is None else list(d.config.attention_axes),
        "defaults": sorted(d.layer.defaulted),
        "forward_pass": {"batch": d.config.batch, "seed": d.config.seed},
        "inputs": {name: _shape(tensor) for name, tensor in d.inputs.items()},
        "axes": [
            {
                "index": axis.index,
                "negative_index": axis.negative_index,
                "name": axis.name,
                "role": axis.role.value,
                "query": axis.query_size,
                "key": axis.key_size,
                "value": axis.value_size,
            }
            for axis in d.axes
        ],
        "shapes": {name: _shape(tensor) for name, tensor in d.shapes.items()},
        "labels": {name: list(tensor.labels) for name, tensor in {**d.inputs, **d.shapes}.items()},
        "equations": d.equations,
        "einsums": {name: _einsum(einsum) for name, einsum in d.einsums.items()},
        "weights": {
            weight.projection: {
                "kernel": list(weight.kernel),
                "bias": None if weight.bias is None else list(weight.bias),
                "params": weight.params,
            }
            for weight in d.weights
        },
        "params": d.params,
        "costs": {
            "flops_per_item": d.flops_per_item,
            "attention_scores_bytes_per_item": d.scores_bytes_per_item(),
            "bytes_per_item": {name: d.bytes_per_item(t) for name, t in {**d.inputs, **d.shapes}.items()},
            "attention_weights_per_query": d.weights_per_query,
            "attention_weights_per_item": d.shapes["attention_scores"].per_item_size(),
        },
        "execution_path": {
            "path": d.execution_path,
            "observed": None if run is None else run.execution_path,
            # The einsum path always builds the scores; the fused one on TensorFlow too (measured);
            # on the other backends it depends on their kernel: null, not known.
            "scores_materialised": (
                True if d.execution_path is ExecutionPath.EINSUM or result.backend == "tensorflow" else None
            ),
        },
        "mask": _mask(d),
        "summary": list(d.summary),
        "call_convention": result.call_convention,
        "picture": None if picture is None else picture_document(picture),
        "checks": {check.name: verification_document(check) for check in result.checks},
        "warnings": list(result.warnings),
    }


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
    from mha_cli.operations.check import CaseStatus

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


def compare_document(comparison: Comparison) -> dict[str, Any]:
    """The document of ``mha-explain compare --json`` (schema in docs/scripts.md)."""
    configs = [to_document(result) for result in comparison.results]
    found = comparison.equivalence
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": next(
            (config["keras_version"] for config in configs if config["keras_version"]), None
        ),
        "backend": comparison.results[0].backend,
        "configs": configs,
        "equivalence": None if found is None else asdict(found),
        "not_compared_reason": comparison.not_compared_reason,
    }


def choices_document(found: Exploration) -> dict[str, Any]:
    """The document of ``mha-explain compare --axes all --json`` (schema in docs/scripts.md)."""
    from mha_cli.core.choices import group_letter

    choices = found.choices
    first = choices.choices[0].derivation
    runs = found.runs
    config = config_document(first)
    del config["attention_axes"]
    entries = []
    for index, choice in enumerate(choices.choices):
        d = choice.derivation
        run = None if runs is None else runs[index]
        result = None if run is None else run.result
        rejected = choice.rejected if run is None else run.rejected
        entries.append(
            {
                "attention_axes": list(choice.resolved),
                "attention_axes_given": None if choice.argument is None else list(choice.argument),
                "label": choice.label,
                "group": group_letter(choices.group_of(index)),
                "attends_over": [axis.name for axis in d.attended_axes],
                "free_axes": [axis.name for axis in d.free_axes],
                "attention_weights_per_query": d.weights_per_query,
                "attention_scores": _shape(d.shapes["attention_scores"]),
                "attention_scores_bytes_per_item": d.scores_bytes_per_item(),
                "flops_per_item": d.flops_per_item,
                "execution_path": d.execution_path.value,
                "runs": False if rejected else (None if run is None and choice.caveat else True),
                "rejected": rejected,
                "caveat": choice.caveat,
                "executed": None if run is None else run.executed,
                "not_executed_reason": None if result is None else result.not_executed_reason,
                "checks": None if result is None else {c.name: c.status.value for c in result.checks},
            }
        )
    groups = []
    for number, group in enumerate(choices.groups):
        check = None if found.group_checks is None else found.group_checks[number]
        names = {axis.index: axis.name for axis in choices.choices[group.members[0]].derivation.axes}
        groups.append(
            {
                "name": group_letter(number),
                "members": list(group.members),
                "mixes_axes": list(group.axes),
                "mixes": [names[axis] for axis in group.axes],
                "output_max_abs_diff": None if check is None else check.max_abs_diff,
                "same_weights": None if check is None else check.same_weights,
            }
        )
    closest = found.closest
    keras_version = next(
        (run.result.run.keras_version for run in runs or () if run.result and run.result.run), None
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": keras_version,
        "backend": choices.backend,
        "executed": runs is not None,
        "inputs": {name: _shape(tensor) for name, tensor in first.inputs.items()},
        "config": config,
        "masked": first.mask is not None,
        "choices": entries,
        "groups": groups,
        "omitted": [
            {"attention_axes_given": None if o.argument is None else list(o.argument), "problem": o.problem}
            for o in choices.omitted
        ],
        "closest_groups": None
        if closest is None
        else {
            "groups": [group_letter(number) for number in closest.groups],
            "output_max_abs_diff": closest.max_abs_diff,
        },
        "tolerance": found.tolerance,
        "failures": list(found.failures),
    }


def backends_document(found: BackendsRun) -> dict[str, Any]:
    """The document of ``--backend all --json`` (schema in docs/scripts.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "backends": {
            run.backend: {
                "document": None if run.result is None else to_document(run.result),
                "problem": run.problem,
                "output_max_abs_diff": run.output_diff,
                "attention_scores_max_abs_diff": run.scores_diff,
            }
            for run in found.runs
        },
    }


def majors_document(found: MajorsRun) -> dict[str, Any]:
    """The document of ``explain --keras all --json`` (schema in docs/scripts.md)."""
    from mha_cli.operations.majors import BACKEND

    migration = found.migration
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "backend": BACKEND,
        "kerases": {
            str(run.major): {
                "keras_version": None
                if run.result is None or run.result.run is None
                else run.result.run.keras_version,
                "document": None if run.result is None else to_document(run.result),
                "get_config": None
                if run.result is None or run.result.run is None
                else run.result.run.layer_config,
                "problem": run.problem,
            }
            for run in found.runs
        },
        "same_weights": found.same_weights,
        "output_max_abs_diff": found.output_max_abs_diff,
        "attention_scores_max_abs_diff": found.scores_max_abs_diff,
        "model_call_output_max_abs_diff": found.model_call_max_abs_diff,
        "tolerance": found.tolerance,
        "migration": None
        if migration is None
        else {
            "keras_version": migration.keras_version,
            "as_saved_refused": migration.as_saved_refused,
            "changes": [asdict(change) for change in migration.migration.changes],
            "config": migration.migration.config,
            "problem": migration.problem,
            "output_max_abs_diff": found.migration_output_max_abs_diff,
        },
        "differences": [asdict(difference) for difference in found.differences],
        "failures": list(found.failures),
    }


def _input(spec: InputSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": [None, *spec.shape], "dtype": spec.dtype}


def scan_document(scan: ScanResult) -> dict[str, Any]:
    """The document of ``mha-explain scan --json`` (schema in docs/scripts.md)."""
    calls = []
    for found in scan.calls:
        call = found.call
        entry: dict[str, Any] = {
            "layer": call.path,
            "class": call.class_name,
            "call_index": call.call_index,
            "mask_sources": list(call.mask_sources),
            "scores_requested": call.scores_requested,
            "summary_scores_wrong": found.summary_scores_wrong,
            "overrides": list(call.overrides),
            "error": found.error,
        }
        if found.result is not None:
            entry.update(to_document(found.result))
        calls.append(entry)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": scan.keras_version,
        "backend": scan.backend,
        "model": {
            "source": scan.spec.shown,
            "kind": scan.spec.kind,
            "name": scan.model_name,
            "weights_from": scan.weights_from,
            "inputs": [_input(spec) for spec in scan.inputs],
        },
        "executed": scan.executed,
        "not_executed_reason": scan.not_executed_reason,
        "attention_layers": scan.layer_count,
        "calls": calls,
        "migrations": [
            {
                "layer": found.path,
                "keras_version": found.migration.keras_version,
                "as_saved_refused": found.migration.as_saved_refused,
                "changes": [asdict(change) for change in found.migration.migration.changes],
                "config": found.migration.migration.config,
                "problem": found.migration.problem,
                "output_max_abs_diff": found.output_max_abs_diff,
                "tolerance": found.tolerance,
            }
            for found in scan.migrations
        ],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def line_form(document: dict[str, Any]) -> str:
    """A document on one line, for ``--jsonl``."""
    return json.dumps(document, separators=(",", ":"))


def line_value(value: Any) -> str:
    """A --get value on an --jsonl output line: its shell form, or compact JSON where that would
    take more than one line or hold a tab (a list of names, say)."""
    shown = shell_form(value)
    return json.dumps(value, separators=(",", ":")) if "\n" in shown or "\t" in shown else shown


def line_error_document(answer: Answer) -> dict[str, Any]:
    """What ``explain --jsonl`` prints for a line it cannot answer (schema in docs/scripts.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "line": answer.line,
        "name": answer.name,
        "error": answer.problem,
        "exit_code": int(answer.exit_code),
    }


def get_path(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, e.g. ``shapes.attention_scores`` or ``axes.1.role``."""
    value: Any = document
    walked: list[str] = []
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and part.isascii() and int(part) < len(value):
            value = value[int(part)]
        else:
            here = ".".join(walked) or "the document"
            if isinstance(value, dict):
                choices = ", ".join(value)
            elif isinstance(value, list):
                choices = f"an index 0..{len(value) - 1}"
            else:
                choices = "nothing: it is a single value"
            raise ConfigError("--get", path, f"no {part!r} in {here}; it has {choices}")
        walked.append(part)
    return value


def shell_form(value: Any) -> str:
    """A value as ``$(...)`` wants it, never ambiguous (docs/scripts.md).

    null is ``None`` (as a shape's batch axis) and booleans ``true``/``false``; a
    list of numbers and nulls, a shape, is one line joined by commas
    (``None,64,2,32,32``); a list of strings is one item per line; a string is
    itself. Anything else, or strings holding a line break, is compact JSON.
    """
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(
        item is None or (isinstance(item, int | float) and not isinstance(item, bool)) for item in value
    ):
        return ",".join(shell_form(item) for item in value)
    if isinstance(value, list) and all(isinstance(item, str) and "\n" not in item for item in value):
        return "\n".join(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def map_document(result: MapResult) -> dict[str, Any]:
    """The document of ``map --json`` (schema in docs/porting.md)."""
    wmap, check = result.map, result.check
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "target": wmap.target,
        "direction": wmap.direction,
        "module": wmap.module,
        "packed": wmap.packed,
        "parameters": [
            {"name": p.name, "shape": list(p.shape), "formula": p.formula} for p in wmap.parameters
        ],
        "call_notes": list(wmap.call_notes),
        "tolerance": result.tolerance,
        "check": None
        if check is None
        else {
            "keras_version": check.keras_version,
            "torch_version": check.torch_version,
            "backend": check.backend,
            "output_max_abs_diff": check.output_max_abs_diff,
            "head_max_abs_diff": list(check.head_max_abs_diff),
            "fully_masked_rows": check.fully_masked_rows,
            "moved": list(check.moved),
        },
        "failures": list(result.failures),
    }
