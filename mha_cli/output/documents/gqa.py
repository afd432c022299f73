"""What a GroupQueryAttention explain document holds beyond MultiHeadAttention's (docs/gqa.md)."""

from __future__ import annotations

from typing import Any

from mha_cli.core.gqa import GQADerivation


def config_document(d: GQADerivation) -> dict[str, Any]:
    """Every layer argument that shapes the computation, resolved."""
    layer = d.layer
    return {
        "head_dim": layer.head_dim,
        "num_query_heads": layer.num_query_heads,
        "num_key_value_heads": layer.num_key_value_heads,
        "dropout": layer.dropout,
        "use_bias": layer.use_bias,
        "use_gate": layer.use_gate,
        "sliding_window": layer.sliding_window,
        "dtype": layer.dtype,
    }


def grouping_document(d: GQADerivation) -> dict[str, Any]:
    """Which query heads read which key/value head, and what a decoder caches per token."""
    layer = d.layer
    return {
        "num_repeats": layer.num_repeats,
        "groups": [{"key_value_head": g, "query_heads": list(heads)} for g, heads in layer.groups()],
        "kv_cache_bytes_per_token": d.kv_cache_bytes_per_token(),
        "kv_cache_bytes_per_sequence": d.kv_cache_bytes_per_sequence(),
    }
