"""map's JSON document: a weight map to PyTorch and back."""

from __future__ import annotations

from typing import Any

from mha_cli.core.version import __version__
from mha_cli.operations.porting import MapResult
from mha_cli.output.documents import SCHEMA_VERSION


def map_document(result: MapResult) -> dict[str, Any]:
    """The document of ``map --json`` (schema in docs/porting.md)."""
    wmap, check = result.map, result.check
    # GroupQueryAttention's says so, as its explain document does; MultiHeadAttention's is unchanged.
    kind = {} if wmap.num_key_value_heads is None else {"layer": "gqa"}
    return {
        "schema_version": SCHEMA_VERSION,
        **kind,
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
