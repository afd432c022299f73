"""compare --layer dot|additive as JSON (schema 1, docs/scripts.md): a column per layer."""

from __future__ import annotations

from typing import Any

from mha_cli.operations.families import FAMILIES, Families, Refused
from mha_cli.output import documents
from mha_cli.output.families import cells


def families_document(found: Families) -> dict[str, Any]:
    """compare --layer dot|additive as JSON (schema 1, docs/scripts.md): a column per layer."""
    layers: dict[str, Any] = {}
    for kind, result in found.results.items():
        entry: dict[str, Any] = {"keras_class": FAMILIES[kind]}
        if isinstance(result, Refused):
            entry["refused"] = result.reason
        else:
            shown = cells(result)
            d = result.derivation
            entry.update(
                layer=shown["layer"],
                call=shown["call"],
                shapes={name: documents.shape_list(t) for name, t in d.shapes.items()},
                params=d.params,
                flops_per_item=d.flops_per_item,
                executed=result.executed,
                checks={check.name: check.status.value for check in result.checks},
            )
        layers[kind] = entry
    return {
        "schema_version": documents.SCHEMA_VERSION,
        "compare": "layers",
        "asked": found.asked,
        "layers": layers,
    }
