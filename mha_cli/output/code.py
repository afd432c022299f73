"""The configuration as Keras code: the call line the tables show, and a runnable snippet (--code).

Pure: built from the derivation, no Keras.
"""

from __future__ import annotations

from mha_cli.core.config import KERAS_DEFAULTS
from mha_cli.core.derivation import Derivation
from mha_cli.core.grammar import format_shape


def constructor(d: Derivation) -> str:
    """``keras.layers.MultiHeadAttention(...)`` with what was given and what differs from Keras's defaults."""
    layer, config = d.layer, d.config
    args = [f"num_heads={layer.num_heads}", f"key_dim={layer.key_dim}"]
    if config.value_dim is not None:
        args.append(f"value_dim={layer.value_dim}")
    if config.output_shape is not None:
        args.append(f"output_shape={format_shape(config.output_shape)}")
    if config.attention_axes is not None:
        args.append(f"attention_axes={format_shape(config.attention_axes)}")
    if layer.sliding_window is not None:
        args.append(f"sliding_window={layer.sliding_window}")
    # Arguments mha-explain always fills in: shown only when not Keras's default.
    args += [
        f'{name}="{value}"' if isinstance(value, str) else f"{name}={value}"
        for name, value in filled_arguments(d).items()
        if value != KERAS_DEFAULTS[name]
    ]
    return f"keras.layers.MultiHeadAttention({', '.join(args)})"


def filled_arguments(d: Derivation) -> dict[str, object]:
    """The arguments that have a value whether or not the user gave one (Keras's default otherwise)."""
    layer = d.layer
    return {
        "dropout": layer.dropout,
        "use_bias": layer.use_bias,
        "use_gate": layer.use_gate,
        "dtype": layer.dtype,
    }


#: The derivation's tensor behind each name input_names gives (x is the query, also the value).
INPUT_TENSOR = {"x": "query", "query": "query", "value": "value", "key": "key"}


def input_names(d: Derivation) -> tuple[str, ...]:
    """The tensors a user passes: x for self-attention, else query, value; and key when given."""
    names = ("x",) if d.config.value_shape is None else ("query", "value")
    return (*names, "key") if d.config.key_shape is not None else names


def call(d: Derivation) -> str:
    """``layer(x, x, return_attention_scores=True)``, as the user would call it, masks included."""
    names = input_names(d)
    args = ["x, x" if names[0] == "x" else "query, value"]
    if "key" in names:
        args.append("key=key")
    if d.config.mask_shape is not None:
        args.append("attention_mask=mask")
    if d.config.causal:
        args.append("use_causal_mask=True")
    return f"layer({', '.join(args)}, return_attention_scores=True)"


def snippet(d: Derivation) -> str:
    """A script that builds this layer, runs it once and prints both shapes, each with the expected one."""
    batch = d.config.batch
    lines = ["import numpy as np", "import keras", "", f"rng = np.random.default_rng({d.config.seed})"]
    for name in input_names(d):
        shape = d.inputs[INPUT_TENSOR[name]].with_batch(batch)
        lines.append(f'{name} = rng.standard_normal({shape}).astype("float32")')
    if d.config.mask_shape is not None:
        mask_shape = tuple(batch if size is None else size for size in d.config.mask_shape)
        lines.append(f"mask = rng.random({mask_shape}) < 0.75  # True attends")
    output = d.shapes["output"].with_batch(batch)
    scores = d.shapes["attention_scores"].with_batch(batch)
    lines += [
        f"layer = {constructor(d)}",
        f"output, scores = {call(d)}",
        f'print("output", tuple(output.shape))  # {output}',
        f'print("attention_scores", tuple(scores.shape))  # {scores}',
    ]
    return "\n".join(lines) + "\n"
