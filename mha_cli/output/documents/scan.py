"""scan's JSON document: a model's attention calls."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mha_cli.core.models import InputSpec
from mha_cli.core.other import OtherCheck, Verdict
from mha_cli.core.version import __version__
from mha_cli.operations.scan import ScanResult
from mha_cli.output.documents import SCHEMA_VERSION
from mha_cli.output.documents.explain import to_document

if TYPE_CHECKING:
    from mha_cli.runtime.others import OtherAttention


def _input(spec: InputSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": [None, *spec.shape], "dtype": spec.dtype}


def _heads(other: OtherAttention) -> dict[str, Any]:
    """A not-explained call's heads, read from its kernels (``heads`` null and why, when not read)."""
    heads = other.heads
    if isinstance(heads, str):
        return {"heads": None, "heads_not_read": heads, "kv_cache_bytes_per_token": None}
    return {
        "heads": {
            "query_heads": heads.query_heads,
            "key_value_heads": heads.key_value_heads,
            "head_dim": heads.head_dim,
            "heads_first": heads.heads_first,
            "agreement": heads.agreement,
        },
        "heads_not_read": None,
        "kv_cache_bytes_per_token": heads.kv_cache_bytes_per_token(other.dtype),
    }


def _verification(check: OtherCheck | None) -> dict[str, Any] | None:
    """What the real pass re-executed of a not-explained call (null: only the symbolic pass ran)."""
    if check is None:
        return None
    return {
        "verdict": str(check.verdict),
        "detail": check.detail,
        "steps": [asdict(step) for step in check.steps],
        "tolerance": check.tolerance,
        "rotary": check.rotary,
        "scale": check.scale,
        "soft_cap": check.soft_cap,
        "mask": check.mask,
        "sublayers": list(check.sublayers),
        "real_pass": check.ran,
        "received": {name: list(shape) for name, shape in check.received},
    }


def scan_document(scan: ScanResult) -> dict[str, Any]:
    """The document of ``mha-explain scan --json`` (schema in docs/scripts.md)."""
    calls = []
    for found in scan.calls:
        call = found.call
        entry: dict[str, Any] = {
            "layer": call.path,
            "kind": call.kind,
            "class": call.class_name,
            "call_index": call.call_index,
            "mask_sources": list(call.mask_sources),
            "scores_requested": call.scores_requested,
            "summary_scores_wrong": found.summary_scores_wrong,
            "overrides": list(call.overrides),
            "error": found.error,
        }
        if found.result is not None:
            document = to_document(found.result)
            document.pop("layer", None)  # a GroupQueryAttention document's kind: here "kind", beside the path
            entry.update(document)
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
        "other_attention": [
            {
                "layer": other.path,
                "class": other.class_name,
                "call_index": other.call_index,
                "explained": False,
                "inputs": {name: list(shape) for name, shape in other.inputs},
                "output": None if other.output is None else list(other.output),
                "evidence": other.evidence,
                "verified": other.check is not None and other.check.verdict == Verdict.VERIFIED,
                "verification": _verification(other.check),
                "params": other.params,
                "dtype": other.dtype,
                **_heads(other),
                "projections": [
                    {
                        "layer": projection.name,
                        "class": projection.class_name,
                        "equation": projection.equation,
                        "kernel": list(projection.kernel),
                    }
                    for projection in other.projections
                ],
            }
            for other in scan.other_attention
        ],
        "other_attention_not_looked_for": scan.others_not_looked_for,
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
