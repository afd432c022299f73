"""explain's JSON document: one configuration, derived and checked (docs/scripts.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mha_cli.core.config import ExecutionPath
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.gqa import GQADerivation
from mha_cli.core.masks import mask_layout
from mha_cli.core.version import __version__
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
from mha_cli.output.documents import SCHEMA_VERSION, einsum_document, shape_list
from mha_cli.output.documents import gqa as gqa_document

if TYPE_CHECKING:  # an explain document needs neither: --no-run stays instant
    from mha_cli.operations.many import Answer
    from mha_cli.operations.picture import Picture


def _mask(d: Derived) -> dict[str, Any]:
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
            symbolic = {
                "agrees": check.passed,
                "output": _optional_shape(check.output),
                "attention_scores": _optional_shape(check.attention_scores),
            }
            # Only where Keras's symbolic call refused what its call ran (GroupQueryAttention's widths).
            return symbolic if check.refusal is None else {**symbolic, "refusal": check.refusal}
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
                "detail": check.detail,
            }
        case ReducedRunCheck():
            fields = {"passed": check.passed, "inputs": {n: list(s) for n, s in check.inputs.items()}}
            if check.checks is not None:
                fields["checks"] = {name: status.value for name, status in check.checks.items()}
            return fields
    raise TypeError(f"no JSON for {type(check).__name__}")


def verification_document(check: Check) -> dict[str, Any]:
    return {"status": check.status.value, **check_fields(check)}


def to_document(result: ExplainResult, picture: Picture | None = None) -> dict[str, Any]:
    """The explain document; a GroupQueryAttention's says ``layer: "gqa"`` and adds ``grouping``
    (MultiHeadAttention's documents have neither, as before: docs/scripts.md)."""
    d = result.derivation
    gqa = d if isinstance(d, GQADerivation) else None
    run = result.run
    document = {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": None if run is None else run.keras_version,
        "keras": d.config.keras,
        "backend": result.backend,
        "executed": result.executed,
        "not_executed_reason": result.not_executed_reason,
        "config": config_document(result.mha) if gqa is None else gqa_document.config_document(gqa),
        # GroupQueryAttention has no attention_axes argument: never given.
        "attention_axes_given": None
        if gqa is not None
        else _optional_shape(result.mha.config.attention_axes),
        "defaults": sorted(d.layer.defaulted),
        "forward_pass": {"batch": d.config.batch, "seed": d.config.seed},
        "inputs": {name: shape_list(tensor) for name, tensor in d.inputs.items()},
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
        "shapes": {name: shape_list(tensor) for name, tensor in d.shapes.items()},
        "labels": {name: list(tensor.labels) for name, tensor in {**d.inputs, **d.shapes}.items()},
        "equations": d.equations,
        "einsums": {name: einsum_document(einsum) for name, einsum in d.einsums.items()},
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
    if gqa is None:
        return document
    grouping = gqa_document.grouping_document(gqa)
    return {"schema_version": SCHEMA_VERSION, "layer": gqa.kind, **document, "grouping": grouping}


def line_error_document(answer: Answer) -> dict[str, Any]:
    """What ``explain --jsonl`` prints for a line it cannot answer (schema in docs/scripts.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "line": answer.line,
        "name": answer.name,
        "error": answer.problem,
        "exit_code": int(answer.exit_code),
    }


def picture_document(picture: Picture) -> dict[str, Any]:
    return {
        "at": list(picture.at),
        "axis_names": list(picture.axis_names),
        "key_grid": list(picture.key_grid),
        "attended_count": picture.attended_count,
        # Small grids whole; a big one would swamp the document.
        "attended": picture.attended.tolist() if picture.attended.size <= 4096 else None,
    }
