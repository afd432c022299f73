"""The explain document of keras.layers.Attention and AdditiveAttention (``--layer dot|additive``).

Schema version 1, as MultiHeadAttention's: the keys both have mean the same (``shapes.
attention_scores``, ``checks``, ``params``); ``layer`` says which it is, and the keys only these
layers have (``formula``, ``masks``, ``differences_from_mha``) are documented in docs/scripts.md.
"""

from __future__ import annotations

from typing import Any

from mha_cli.core.dense import call_line, constructor
from mha_cli.core.version import __version__
from mha_cli.operations.dense import DenseResult
from mha_cli.output.documents import SCHEMA_VERSION, shape_list
from mha_cli.output.documents.explain import verification_document


def dense_document(result: DenseResult) -> dict[str, Any]:
    d = result.derivation
    config = d.config
    run = result.run
    tensors = {**d.inputs, **d.shapes}
    return {
        "schema_version": SCHEMA_VERSION,
        "layer": d.kind,
        "keras_class": d.keras_class,
        "tool_version": __version__,
        "keras_version": None if run is None else run.keras_version,
        "keras": 3,
        "backend": result.backend,
        "executed": result.executed,
        "not_executed_reason": result.not_executed_reason,
        "config": {
            "query_shape": list(config.query_shape),
            "value_shape": list(d.inputs["value"].shape[1:]),
            "key_shape": list(d.inputs["key"].shape[1:]),
            "key_given": d.key_given,
            "use_scale": d.use_scale,
            "score_mode": d.score_mode,
            "dropout": config.dropout,
            "dtype": config.dtype,
            "query_mask": config.query_mask,
            "value_mask": config.value_mask,
            "causal": config.causal,
        },
        "defaults": sorted(d.defaulted),
        "call": {"layer": constructor(d), "call": call_line(d)},
        "forward_pass": {"batch": config.batch, "seed": config.seed},
        "inputs": {name: shape_list(tensor) for name, tensor in d.inputs.items()},
        "shapes": {name: shape_list(tensor) for name, tensor in d.shapes.items()},
        "labels": {name: list(tensor.labels) for name, tensor in tensors.items()},
        "formula": [
            {"step": step.name, "formula": step.formula, "result": shape_list(step.result)}
            for step in d.steps
        ],
        "weights": {
            weight.name: {
                "shape": list(weight.shape),
                "initializer": weight.initializer,
                "params": weight.params,
            }
            for weight in d.weights
        },
        "params": d.params,
        "costs": {
            "flops_per_item": d.flops_per_item,
            "attention_scores_bytes_per_item": d.bytes_per_item(d.shapes["attention_scores"]),
            "bytes_per_item": {name: d.bytes_per_item(tensor) for name, tensor in tensors.items()},
        },
        "masks": [{"name": mask.name, "shape": list(mask.shape), "effect": mask.effect} for mask in d.masks],
        "differences_from_mha": list(d.differences),
        "summary": list(d.summary),
        "checks": {check.name: verification_document(check) for check in result.checks},
        "warnings": list(result.warnings),
    }
