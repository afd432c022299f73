"""compare --layer gqa's JSON document: a row per key/value head count (docs/gqa.md)."""

from __future__ import annotations

from typing import Any

from mha_cli.core.version import __version__
from mha_cli.operations.heads import HeadsComparison, variant
from mha_cli.output.documents import SCHEMA_VERSION, shape_list
from mha_cli.output.documents.explain import verification_document


def heads_document(found: HeadsComparison) -> dict[str, Any]:
    first = found.results[0]
    return {
        "schema_version": SCHEMA_VERSION,
        "layer": "gqa",
        "tool_version": __version__,
        "keras_version": None if first.run is None else first.run.keras_version,
        "backend": first.backend,
        "every": found.every,
        "rows": [
            {
                "num_key_value_heads": d.layer.num_key_value_heads,
                "variant": variant(d),
                "num_repeats": d.layer.num_repeats,
                "params": d.params,
                "flops_per_item": d.flops_per_item,
                "kv_cache_bytes_per_token": d.kv_cache_bytes_per_token(),
                "kv_cache_bytes_per_sequence": d.kv_cache_bytes_per_sequence(),
                "shapes": {
                    name: shape_list(d.shapes[name]) for name in ("key_projected", "attention_scores")
                },
                "executed": result.executed,
                "checks": {check.name: verification_document(check) for check in result.checks},
            }
            for result, d in zip(found.results, found.derivations, strict=True)
        ],
    }
