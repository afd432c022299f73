"""The configuration as Keras code: the call line the tables show, and a runnable snippet (--code).

Pure: built from the derivation, no Keras.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mha_cli.core.call import INPUT_TENSOR, call, changed_arguments, input_names
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.grammar import format_shape
from mha_cli.core.weight_map import WeightMap
from mha_cli.output import gqa


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
    args += changed_arguments(d)
    return f"keras.layers.MultiHeadAttention({', '.join(args)})"


def layer_line(d: Derived) -> str:
    """The constructor call of ``d``'s layer kind, as the user writes it."""
    return _CONSTRUCTORS[d.kind](d)


def snippet(d: Derived) -> str:
    """A script that builds this layer, runs it once and prints both shapes, each with the expected one.

    For ``--keras 2`` it imports tf_keras (Keras 2), whose rules the expected shapes follow.
    """
    batch = d.config.batch
    keras = (
        "import tf_keras as keras  # Keras 2 (pip install tf-keras)"
        if d.config.keras == 2
        else "import keras"
    )
    lines = ["import numpy as np", keras, "", f"rng = np.random.default_rng({d.config.seed})"]
    for name in input_names(d):
        shape = d.inputs[INPUT_TENSOR[name]].with_batch(batch)
        lines.append(f'{name} = rng.standard_normal({shape}).astype("float32")')
    if d.config.mask_shape is not None:
        mask_shape = tuple(batch if size is None else size for size in d.config.mask_shape)
        lines.append(f"mask = rng.random({mask_shape}) < 0.75  # True attends")
    output = d.shapes["output"].with_batch(batch)
    scores = d.shapes["attention_scores"].with_batch(batch)
    lines += [
        f"layer = {layer_line(d)}",
        f"output, scores = {call(d)}",
        f'print("output", tuple(output.shape))  # {output}',
        f'print("attention_scores", tuple(scores.shape))  # {scores}',
    ]
    return "\n".join(lines) + "\n"


def _entries(m: WeightMap) -> list[str]:
    """The map's parameters as dict entries, a concatenation's parts one per line, each with its shape."""
    lines = []
    for parameter in m.parameters:
        shape = format_shape(parameter.shape)
        if parameter.parts:
            lines.append(f'    "{parameter.name}": np.concatenate(  # {shape}')
            lines += [
                "        [",
                *(f"            {part}," for part in parameter.parts),
                "        ]",
                "    ),",
            ]
        else:
            lines.append(f'    "{parameter.name}": {parameter.formula},  # {shape}')
    return lines


def layout_source(m: WeightMap | None = None) -> str:
    """The PyTorch module class ``m`` maps to, as text, from its file (nothing imported: no torch, no
    NumPy): KerasLayoutAttention, or GroupQueryAttention's KerasLayoutGQA."""
    module, name = ("torch_layout", "KerasLayoutAttention")
    if m is not None and m.num_key_value_heads is not None:
        module, name = ("torch_layout_gqa", "KerasLayoutGQA")
    spec = importlib.util.find_spec(f"mha_cli.runtime.{module}")
    assert spec is not None and spec.origin is not None
    text = Path(spec.origin).read_text(encoding="utf-8")
    return text[text.index(f"class {name}") :]


def map_script(d: Derived, m: WeightMap, layout: str | None = None) -> str:
    """A script moving one layer's weights between Keras and PyTorch (``m``), and calling the other side.

    ``layout`` is the module class's source (:func:`layout_source`), for a
    "to" map onto four Linear layers. The script expects ``layer`` (the Keras
    layer) and, for "to", the call's inputs as NumPy arrays; for "from",
    ``torch_layer``.
    """
    keras2 = d.config.keras == 2
    short = 'v.name.split(":")[0].split("/")[-2:]' if keras2 else 'v.path.split("/")[-2:]'
    dtype = "np.float64" if d.layer.dtype == "float64" else "np.float32"
    title = m.target_name
    flag = "" if m.num_key_value_heads is None else "--layer gqa "
    if m.direction == "from":
        lines = [
            f"# {title} -> Keras {m.keras_class} (mha-explain map {flag}--from {m.target}).",
            "# Given torch_layer, the PyTorch module; builds the Keras layer and sets its weights.",
            "import numpy as np",
            "import tf_keras as keras" if keras2 else "import keras",
            "",
            f"layer = {layer_line(d)}",
        ]
        shapes = [d.inputs[name].with_batch(d.config.batch) for name in ("query", "value", "key")]
        if keras2:  # Keras 2 creates the projections on the first call
            lines.append(
                f"layer(np.zeros({shapes[0]}), np.zeros({shapes[1]}), key=np.zeros({shapes[2]}))"
                "  # Keras 2 builds on the first call"
            )
        else:
            lines.append(f"layer.build({shapes[0]}, {shapes[1]}, {shapes[2]})")
        lines += [
            "w = {name: value.detach().cpu().numpy() for name, value in torch_layer.state_dict().items()}",
            "keras_weights = {",
            *_entries(m),
            "}",
            "for v in layer.weights:",
            f'    v.assign(keras_weights["/".join({short})])',
        ]
        return "\n".join(lines) + "\n"
    lines = [
        f"# Keras {m.keras_class} -> {title} (mha-explain map {flag}--to {m.target}).",
        "# Given layer, the Keras layer, and its call's query, value (and key, mask) as NumPy arrays;",
        "# without a key, Keras uses value: key = value.",
        *(["import math", ""] if layout is not None else []),
        "import numpy as np",
        "import torch",
    ]
    if not keras2:
        lines.append("import keras")
    if layout is not None:
        lines += ["", "", layout.strip("\n"), ""]
    numpy_of = "v.numpy()" if keras2 else "keras.ops.convert_to_numpy(v)"
    lines += [
        "",
        f'w = {{"/".join({short}): {numpy_of} for v in layer.weights}}',
        "state = {",
        *_entries(m),
        "}",
        f"torch_layer = {m.module}",
        "torch_layer.load_state_dict(",
        f"    {{name: torch.from_numpy(np.asarray(value, {dtype})) for name, value in state.items()}}",
        ")",
        "torch_layer.train(False)"
        + (".double()" if dtype == "np.float64" else "")
        + "  # inference: no dropout",
        "",
        f"def t(a):\n    return torch.from_numpy(np.asarray(a, {dtype}))",
        "",
    ]
    masked = m.mask or m.causal
    if masked:
        lines.append("attend = np.ones((query.shape[0], query.shape[1], key.shape[1]), bool)  # True: attend")
        if m.mask:
            lines.append("attend &= np.asarray(mask, bool)")
        if m.causal:
            lines.append("attend &= np.tril(np.ones(attend.shape[1:], bool))  # use_causal_mask=True")
    lines.append("with torch.no_grad():")
    if m.four_linear:
        mask_argument = ", attention_mask=torch.from_numpy(attend)" if masked else ""
        lines.append(f"    output, scores = torch_layer(t(query), t(value), t(key){mask_argument})")
    else:
        if masked:
            lines.append(
                f"    blocked = torch.from_numpy(np.repeat(~attend, {m.num_heads}, axis=0))  # True: blocked"
            )
        blocked = "blocked" if masked else "None"
        lines += [
            "    output, scores = torch_layer(",
            f"        t(query), t(key), t(value), attn_mask={blocked},",
            "        need_weights=True, average_attn_weights=False,",
            "    )",
        ]
    return "\n".join(lines) + "\n"


#: Each layer kind's constructor line, by kind (mha_cli.core.kinds).
_CONSTRUCTORS: dict[str, Callable[[Any], str]] = {"mha": constructor, "gqa": gqa.constructor}
