"""How a user calls the layer, as code: the tensors passed and the call line.

Pure: read from the derivation's configuration. The tables and ``--code``
show it (:mod:`mha_cli.output.code`), and test vectors record it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mha_cli.core.config import KERAS_DEFAULTS

if TYPE_CHECKING:
    from mha_cli.core.derived import Derived


#: The derivation's tensor behind each name input_names gives (x is the query, also the value).
INPUT_TENSOR = {"x": "query", "query": "query", "value": "value", "key": "key"}


def input_names(d: Derived) -> tuple[str, ...]:
    """The tensors a user passes: x for self-attention, else query, value; and key when given."""
    names = ("x",) if d.config.value_shape is None else ("query", "value")
    return (*names, "key") if d.config.key_shape is not None else names


def call(d: Derived, *, training: bool | None = None) -> str:
    """``layer(x, x, return_attention_scores=True)``, as the user would call it, masks included
    (and ``training=...`` when given)."""
    names = input_names(d)
    args = ["x, x" if names[0] == "x" else "query, value"]
    if "key" in names:
        args.append("key=key")
    if d.config.mask_shape is not None:
        args.append("attention_mask=mask")
    if d.config.causal:
        args.append("use_causal_mask=True")
    args.append("return_attention_scores=True")
    if training is not None:
        args.append(f"training={training}")
    return f"layer({', '.join(args)})"


def filled_arguments(d: Derived) -> dict[str, object]:
    """The arguments that have a value whether or not the user gave one (Keras's default otherwise)."""
    layer = d.layer
    return {
        "dropout": layer.dropout,
        "use_bias": layer.use_bias,
        "use_gate": layer.use_gate,
        "dtype": layer.dtype,
    }


def changed_arguments(d: Derived) -> list[str]:
    """Those of :func:`filled_arguments` that differ from Keras's defaults, as keyword arguments."""
    return [
        f'{name}="{value}"' if isinstance(value, str) else f"{name}={value}"
        for name, value in filled_arguments(d).items()
        if value != KERAS_DEFAULTS[name]
    ]
