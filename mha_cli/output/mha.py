"""What MultiHeadAttention's explain shows that other kinds do not: its arguments and its axes line."""

from __future__ import annotations

from mha_cli.core.call import filled_arguments
from mha_cli.core.config import KERAS_DEFAULTS
from mha_cli.core.derived import Axis, Derivation
from mha_cli.core.grammar import format_shape
from mha_cli.core.summary import heads_warning

_KERAS_DEFAULT = {
    "value_dim": "Keras default: key_dim",
    "output_shape": "Keras default: the query's feature size",
    "attention_axes": "Keras default: all axes but batch, heads and features",
}
_TOOL_DEFAULT = {
    "num_heads": "mha-explain default (Keras requires it)",
    "key_dim": "mha-explain default: query features // num_heads (Keras requires it)",
}
FEATURE_MEANING = "projected away into heads x key_dim / value_dim"


def arguments(d: Derivation) -> list[tuple[str, str, str]]:
    """The layer's arguments: (name, value, where the value came from)."""
    layer, config = d.layer, d.config

    def source(name: str, is_default: bool) -> str:
        if name in _TOOL_DEFAULT and name in layer.defaulted:
            return _TOOL_DEFAULT[name]
        if name in _KERAS_DEFAULT and name in layer.defaulted:
            return _KERAS_DEFAULT[name]
        return "Keras default" if is_default else "given"

    out = d.shapes["output"].shape[d.rank - 1 :]
    rows = [
        ("num_heads", str(layer.num_heads), False),
        ("key_dim", str(layer.key_dim), False),
        ("value_dim", str(layer.value_dim), False),
        (
            "output_shape",
            f"None -> {format_shape(out)}" if layer.output_shape is None else format_shape(out),
            False,
        ),
        (
            "attention_axes",
            ("None" if config.attention_axes is None else format_shape(config.attention_axes))
            + f" -> {format_shape(layer.attention_axes)}",
            False,
        ),
        *((name, str(value), value == KERAS_DEFAULTS[name]) for name, value in filled_arguments(d).items()),
    ]
    return [(name, value, source(name, is_default)) for name, value, is_default in rows]


def headline_rows(d: Derivation) -> list[tuple[str, str]]:
    """The headline's rows about the axes: which are attended, which free, how features split."""
    feature = d.axes[-1]

    def named(axes: tuple[Axis, ...]) -> str:
        return ", ".join(f"{axis.name} ({axis.index})" for axis in axes) or "none"

    attended = named(d.attended_axes)
    if d.heads_attended:  # axis rank - 1 of the projected query: no input axis
        heads = f"heads (projected axis {d.rank - 1})"
        attended = heads if attended == "none" else f"{attended}, {heads}"
    rows = [
        (
            "axes",
            f"attended: {attended}; free: {named(d.free_axes)}; feature: axis {feature.index}, "
            f"size {feature.query_size} -> {d.layer.num_heads} head{'s' if d.layer.num_heads != 1 else ''} "
            f"x {d.layer.key_dim} (key_dim)",
        )
    ]
    if d.heads_attended:
        rows.append(("warning", heads_warning(d, brief=True)))
    return rows
