"""What GroupQueryAttention's explain shows that other kinds do not: its arguments, the grouping of
its heads and the key/value cache a decoder keeps (docs/gqa.md)."""

from __future__ import annotations

from rich.table import Table

from mha_cli.core.call import changed_arguments, filled_arguments
from mha_cli.core.config import KERAS_DEFAULTS
from mha_cli.core.gqa import GQADerivation
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.output.tables import titled_table

_TOOL_DEFAULT = {
    "head_dim": "mha-explain default: query features // num_query_heads (Keras requires it)",
    "num_query_heads": "mha-explain default (Keras requires it)",
    "num_key_value_heads": "mha-explain default (Keras requires it)",
}
FEATURE_MEANING = "projected away into heads x head_dim"


def constructor(d: GQADerivation) -> str:
    """``keras.layers.GroupQueryAttention(...)``: the three arguments Keras requires, and what differs
    from Keras's defaults."""
    layer = d.layer
    args = [
        f"head_dim={layer.head_dim}",
        f"num_query_heads={layer.num_query_heads}",
        f"num_key_value_heads={layer.num_key_value_heads}",
    ]
    if layer.sliding_window is not None:
        args.append(f"sliding_window={layer.sliding_window}")
    args += changed_arguments(d)
    return f"keras.layers.GroupQueryAttention({', '.join(args)})"


def arguments(d: GQADerivation) -> list[tuple[str, str, str]]:
    """The layer's arguments: (name, value, where the value came from)."""
    layer = d.layer
    rows = [
        (name, str(value), _TOOL_DEFAULT[name] if name in layer.defaulted else "given")
        for name, value in (
            ("head_dim", layer.head_dim),
            ("num_query_heads", layer.num_query_heads),
            ("num_key_value_heads", layer.num_key_value_heads),
        )
    ]
    rows += [
        (name, str(value), "Keras default" if value == KERAS_DEFAULTS[name] else "given")
        for name, value in filled_arguments(d).items()
    ]
    return rows


def grouping(d: GQADerivation) -> str:
    """``query heads 0-3 -> key/value head 0, 4-7 -> 1``."""
    parts = [
        f"{heads[0]}-{heads[-1]} -> {g}" if len(heads) > 1 else f"{heads[0]} -> {g}"
        for g, heads in d.layer.groups()
    ]
    return "query heads " + ", ".join(parts) + " (key/value head)"


def headline_rows(d: GQADerivation) -> list[tuple[str, str]]:
    """The headline's rows: the axes, and the grouping with the key/value cache it buys."""
    layer = d.layer
    feature = d.axes[-1]
    cache = d.kv_cache_bytes_per_token()
    # MultiHeadAttention with as many heads caches a key and a value per query head.
    mha_cache = d.kv_cache_bytes_per_token(layer.num_query_heads)
    saved = f" ({mha_cache // cache}x less than MultiHeadAttention's {format_bytes(mha_cache)})"
    return [
        (
            "axes",
            f"attended: seq (1); feature: axis {feature.index}, size {feature.query_size} -> "
            f"{layer.num_query_heads} query heads x {layer.head_dim} (head_dim), key/value "
            f"{layer.num_key_value_heads} head{'s' if layer.num_key_value_heads != 1 else ''}",
        ),
        ("groups", grouping(d)),
        ("kv cache", f"{format_bytes(cache)} per token" + (saved if mha_cache != cache else "")),
    ]


def sections(d: GQADerivation) -> list[Table]:
    """The step between the projections and the dot product that MultiHeadAttention does not have."""
    layer = d.layer
    r = layer.num_repeats
    table = titled_table(
        f"Repeat: key and value through ops.repeat(x, {r}, axis=2), "
        f"{format_shape(d.shapes['key_projected'].shape)} -> {format_shape(d.shapes['key_repeated'].shape)}",
        "key/value head",
        "read by query heads",
        "cached per token",
    )
    per_head = d.kv_cache_bytes_per_token(1)
    for group, heads in layer.groups():
        table.add_row(str(group), ", ".join(map(str, heads)), format_bytes(per_head))
    return [table]
