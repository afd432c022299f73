"""``mha-explain why``: a pasted traceback of an attention layer's failed call, explained.

A traceback holds what Keras prints when a layer's call fails: the error's message and, for the
layer that failed, ``Arguments received by MultiHeadAttention.call():`` with every tensor's shape.
It does not hold the layer's own arguments (num_heads, attention_axes); the message's scores shape
(or JAX's ``N=8``) gives the heads, and for a rank-3 query attention runs over axis 1 whatever
attention_axes says. What that allows is diagnosed as ``clarify()`` diagnoses a live call
(core/clarify.py); a Softmax's "mask must be broadcastable" is explained axis by axis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mha_cli.core.clarify import CallFacts, ListedCallFacts, diagnose, diagnose_listed
from mha_cli.core.grammar import format_shape

Dims = tuple[int | None, ...]
_LAYERS = ("MultiHeadAttention", "GroupQueryAttention")
_ARGUMENTS = re.compile(r"Arguments received by (\w+)\.call\(\):\n((?:[ \t]*[•*-][^\n]*\n?)+)")
_ARGUMENT = re.compile(r"^[ \t]*[•*-][ \t]*(\w+)=(.*)$", re.M)
_SHAPE = re.compile(r"shape=(?:torch\.Size\()?[(\[]([^)\]]*)[)\]]")
_INCOMPATIBLE = re.compile(r"Incompatible shapes: \[([\d, ]+)\] vs\. \[([\d, ]+)\]")
_BROADCASTABLE = re.compile(r"inputs\.shape=\(([\d, ]+)\), mask\.shape=\(([\d, ]+)\)")
_GROUPED = re.compile(r"\(B, N, T, S\) with N=(\d+) but got \(([\d, ]+)\)")
#: Attention's and AdditiveAttention's refusal of a call without a list (it raises before Keras
#: prints the call's arguments).
_NOT_LISTED = re.compile(r"(\w*Attention) layer must be called on a list of inputs.*?Received: inputs=(.*)")
#: An item of a printed list: 'tf.Tensor(shape=(2, 5, 4), dtype=float32)' or 'None'.
_ITEM = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class Explanation:
    """What the text shows and what the tool makes of it (one line each)."""

    #: What was read: the failed layer's call and the error's shapes.
    read: tuple[str, ...]
    #: The explanation, or why there is none.
    lines: tuple[str, ...]


def _dims(text: str) -> Dims:
    """``2, None, 8`` as (2, None, 8): a symbolic call prints its unknown sizes as None."""
    sizes = [size.strip() for size in text.split(",") if size.strip()]
    return tuple(None if size == "None" else int(size) for size in sizes if size == "None" or size.isdigit())


def _shape_of(value: str) -> Dims | None:
    found = _SHAPE.search(value)
    return None if found is None else _dims(found.group(1))


def read_arguments(text: str) -> dict[str, dict[str, str]]:
    """Each ``Arguments received by X.call():`` block, by class: argument -> its printed value."""
    blocks: dict[str, dict[str, str]] = {}
    for name, body in _ARGUMENTS.findall(text):
        blocks[name] = {argument: value.strip() for argument, value in _ARGUMENT.findall(body)}
    return blocks


def explain_traceback(text: str) -> Explanation | None:
    """The explanation of ``text``, or None when it holds no failed attention call to read."""
    clean = text.replace("\x1b[1m", "").replace("\x1b[0m", "").replace("[1m", "").replace("[0m", "")
    blocks = read_arguments(clean)
    layer = next((name for name in blocks if name in _LAYERS or name.endswith("Attention")), None)
    incompatible = _INCOMPATIBLE.search(clean)
    broadcastable = _BROADCASTABLE.search(clean)
    grouped = _GROUPED.search(clean)
    if layer is not None and "query" in blocks[layer]:
        return _from_call(layer, blocks[layer], incompatible, grouped)
    if layer is not None and "inputs" in blocks[layer]:
        return _from_listed(layer, blocks[layer])
    not_listed = _NOT_LISTED.search(clean)
    if not_listed is not None:
        return _from_not_listed(not_listed.group(1), not_listed.group(2).strip().rstrip("."))
    if broadcastable is not None:
        return _from_softmax(_dims(broadcastable.group(1)), _dims(broadcastable.group(2)))
    # Keras 3.12's Softmax does not check its mask: TensorFlow's own op fails, and the shapes are in
    # the arguments Keras prints for Softmax.call().
    softmax = blocks.get("Softmax", {})
    scores, mask = _shape_of(softmax.get("inputs", "")), _shape_of(softmax.get("mask", ""))
    if scores is not None and mask is not None:
        return _from_softmax(scores, mask)
    return None


def _from_call(
    layer: str, arguments: dict[str, str], incompatible: re.Match[str] | None, grouped: re.Match[str] | None
) -> Explanation:
    query = _shape_of(arguments.get("query", ""))
    value = _shape_of(arguments.get("value", "")) or query
    key = _shape_of(arguments.get("key", ""))
    mask = _shape_of(arguments.get("attention_mask", ""))
    causal = arguments.get("use_causal_mask", "False") == "True"
    read = [
        f"{layer}.call() got query {format_shape(query or ())}, value {format_shape(value or ())}"
        + (f", key {format_shape(key)}" if key else "")
        + (f", attention_mask {format_shape(mask)}" if mask else "")
        + (", use_causal_mask=True" if causal else "")
    ]
    if query is None or value is None:
        return Explanation(
            tuple(read), ("cannot explain it: the text holds no shape of the query or the value",)
        )
    heads: int | None = None
    if grouped is not None:
        heads = int(grouped.group(1))
        read.append(f"the error names N={heads} heads")
    elif incompatible is not None and len(query) == 3:
        shapes = [_dims(incompatible.group(1)), _dims(incompatible.group(2))]
        scores = next((s for s in shapes if len(s) == 4 and s[-2:] == (query[1], value[1])), None)
        if scores is not None:
            heads = scores[1]
            read.append(
                f"the error's {format_shape(scores)} is the scores (batch, heads, T, S): {heads} heads"
            )
    if len(query) != 3 or heads is None:
        why = (
            "a traceback does not hold the layer's attention_axes, and this query is not rank 3"
            if len(query) != 3
            else "neither the layer's num_heads nor a scores shape to read it from is in the text"
        )
        return Explanation(
            tuple(read),
            (
                f"cannot explain it: {why}; run the failing code inside "
                "mha_cli.clarify() for a note from the live layer",
            ),
        )
    kind = "gqa" if layer == "GroupQueryAttention" else "mha"
    arguments_read = (
        {"num_query_heads": heads, "num_key_value_heads": 1, "head_dim": 1}
        if kind == "gqa"
        else {"num_heads": heads, "key_dim": 1}
    )
    facts = CallFacts(
        kind=kind,
        arguments=arguments_read,
        query=query,
        value=value,
        key=key,
        attention_mask=mask,
        causal=causal,
    )
    note = diagnose(facts).removeprefix("mha-explain: ")
    return Explanation(tuple(read), (note,))


def _listed_kind(layer: str) -> str:
    return "additive" if layer == "AdditiveAttention" else "dot"


def _printed_list(value: str) -> tuple[Dims | None, ...] | None:
    """A printed list of tensors (``['tf.Tensor(shape=(2, 5, 4), ...)', 'None']``) as their shapes,
    None for a None item; None when the value is not a list."""
    if not value.startswith(("[", "(")) or (value.startswith("(") and "shape=" not in value):
        return None
    return tuple(None if item == "None" else _shape_of(item) for item in _ITEM.findall(value))


def _from_listed(layer: str, arguments: dict[str, str]) -> Explanation:
    """Attention's or AdditiveAttention's failed call, from the inputs and masks Keras printed."""
    inputs = _printed_list(arguments.get("inputs", ""))
    mask_text = arguments.get("mask", "None")
    masks = _printed_list(mask_text)
    alone = _shape_of(arguments.get("inputs", ""))
    if inputs is None and alone is not None:  # a built layer refuses a tensor for the list in its call
        given = "the tensor " + format_shape(alone)
        second = None if masks is not None else _shape_of(mask_text)
        facts = ListedCallFacts(
            kind=_listed_kind(layer),
            class_name=layer,
            inputs=None,
            given=given,
            mask_shape=second,
            mask_is_list=second is None,
        )
        got = f"{layer}.call() got inputs {given}" + (
            "" if second is None else f", mask {format_shape(second)}"
        )
        return Explanation((got,), (diagnose_listed(facts).removeprefix("mha-explain: "),))
    shown = ", ".join("None" if dims is None else format_shape(dims) for dims in inputs or ())
    read = [f"{layer}.call() got inputs [{shown}]" + ("" if mask_text == "None" else f", mask {mask_text}")]
    if inputs is None or not inputs:
        return Explanation(tuple(read), ("cannot explain it: the text holds no shape of the inputs",))
    facts = ListedCallFacts(
        kind=_listed_kind(layer),
        class_name=layer,
        inputs=inputs,
        mask=masks,
        mask_shape=None if masks is not None else _shape_of(mask_text),
        mask_is_list=masks is not None or mask_text == "None",
    )
    note = diagnose_listed(facts).removeprefix("mha-explain: ")
    if layer == "Attention" and "dot scores" in note:
        note += " (for score_mode='concat', the same widths are needed: its scores add query and key)"
    return Explanation(tuple(read), (note,))


def _from_not_listed(layer: str, received: str) -> Explanation:
    """``X layer must be called on a list of inputs``: what it got, and the call it wants."""
    shape = _dims(received.strip("()")) if received.startswith("(") else None
    given = "the tensor " + format_shape(shape) if shape else received
    read = (f"{layer} was called on {given}, not on a list",)
    facts = ListedCallFacts(kind=_listed_kind(layer), class_name=layer, inputs=None, given=given)
    note = diagnose_listed(facts).removeprefix("mha-explain: ")
    second = (
        "if it was called as layer(query, value), as MultiHeadAttention is called, the value went to its "
        "mask argument: write layer([query, value])"
    )
    return Explanation(read, (note, second))


def _from_softmax(scores: Dims, mask: Dims) -> Explanation:
    """A Softmax refused the mask an attention layer built: where they differ, and what fits."""
    read = (f"Softmax got scores {format_shape(scores)} and a mask {format_shape(mask)}",)
    if len(scores) != len(mask):
        return Explanation(read, (f"the mask has rank {len(mask)}, the scores {len(scores)}",))
    differ = [i for i, (s, m) in enumerate(zip(scores, mask, strict=True)) if m not in (1, s)]
    if not differ:
        return Explanation(read, ("the mask broadcasts to the scores: the error is not about their shapes",))
    heads = [i for i, (s, m) in enumerate(zip(scores, mask, strict=True)) if m == 1 and s != 1]
    fits = tuple(1 if i in heads[:1] else size for i, size in enumerate(scores))
    lines = [
        "the mask differs from the scores at "
        + ", ".join(f"axis {i} ({mask[i]} where the scores have {scores[i]})" for i in differ)
        + f": each mask axis must be 1 or the scores' size; a mask that fits is {format_shape(fits)}"
        + (f" (1 at axis {heads[0]}, the heads Keras inserted)" if heads else ""),
        "if the call got no attention_mask, Keras built this one from the inputs' own masks (mask_zero, "
        "Masking) as if they were (B, T, features): a rank-4 or higher input, or attention over other "
        "axes, does not fit them (tensorflow/tensorflow#58726); pass attention_mask "
        f"{format_shape(tuple(s for i, s in enumerate(fits) if i not in heads[:1]))} yourself and drop "
        "the inputs' masks, or attend over the axes those masks describe",
    ]
    return Explanation(read, tuple(lines))
