"""Why one call of an attention layer failed, in the user's shapes: the note ``mha_cli.clarify()`` adds.

From what the call was given (the layer's arguments, the query's, value's and key's shapes, the
attention_mask's, the masks its tensors carry from ``mask_zero`` or ``Masking``, use_causal_mask),
the layer kinds' algebra says whether the layer can take the shapes, and the masks are combined as
Keras 3.12-3.15 combines them (``MultiHeadAttention._compute_attention_mask``: the query's mask
``(B, T) -> (B, T, 1)``, the value's and key's ``(B, S) -> (B, 1, S)``, the causal mask ``(1, T,
S)`` from axis 1, all ANDed with the attention_mask). Where that fails, the note says which
argument, why, and the shape that would work; where it does not, the note says the shapes are ones
the layer takes, so the error is not about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import format_shape
from mha_cli.core.kinds import derive_any
from mha_cli.core.masks import mask_layout

Dims = tuple[int | None, ...]
#: What the layer's kind calls its arguments (MultiHeadAttention's, GroupQueryAttention's).
_MHA_ARGUMENTS = (
    "num_heads",
    "key_dim",
    "value_dim",
    "output_shape",
    "attention_axes",
    "use_bias",
    "dropout",
)
_GQA_ARGUMENTS = ("num_query_heads", "num_key_value_heads", "head_dim", "use_bias", "dropout")
#: The options a ConfigError names, in the terms of the failing call.
_TERMS = {
    "--mask-shape": "attention_mask",
    "--shape": "query",
    "--value-shape": "value",
    "--key-shape": "key",
    "--axes": "attention_axes",
    "--num-heads": "num_heads",
    "--key-dim": "key_dim",
    "--value-dim": "value_dim",
    "--output-shape": "output_shape",
    "--num-query-heads": "num_query_heads",
    "--num-key-value-heads": "num_key_value_heads",
    "--head-dim": "head_dim",
}


@dataclass(frozen=True)
class CallFacts:
    """What one call of MultiHeadAttention or GroupQueryAttention was given, shapes batch included."""

    kind: str  # "mha" or "gqa"
    #: The layer's arguments, from its config (attention_axes as given: None, an int or a tuple).
    arguments: Mapping[str, Any]
    query: Dims
    value: Dims
    key: Dims | None = None
    attention_mask: Dims | None = None
    #: The masks the tensors carry (Keras's ``_keras_mask``: mask_zero, Masking), batch included.
    query_mask: Dims | None = None
    value_mask: Dims | None = None
    key_mask: Dims | None = None
    causal: bool = False
    dtype: str = "float32"


def _broadcast(left: Dims, right: Dims) -> Dims | None:
    """NumPy's broadcast of two shapes (None: an unknown size, taken as matching), or None if they
    do not broadcast."""
    size = max(len(left), len(right))
    a, b = (1,) * (size - len(left)) + left, (1,) * (size - len(right)) + right
    out: list[int | None] = []
    for x, y in zip(a, b, strict=True):
        if x == 1:
            out.append(y)
        elif y == 1 or y is None or x == y:
            out.append(x)
        elif x is None:
            out.append(y)
        else:
            return None
    return tuple(out)


def combined_mask(facts: CallFacts) -> tuple[Dims | None, tuple[tuple[str, Dims], ...], str | None]:
    """The mask Keras combines for the call, the sources (name, shape as Keras expands it), and a
    sentence when the sources themselves do not broadcast together."""
    sources: list[tuple[str, Dims]] = []
    if facts.query_mask is not None:
        sources.append(("the query's own mask " + format_shape(facts.query_mask), (*facts.query_mask, 1)))
    if facts.value_mask is not None:
        shape = facts.value_mask
        sources.append(("the value's own mask " + format_shape(shape), (*shape[:-1], 1, shape[-1])))
    if facts.key_mask is not None and facts.key is not None:
        shape = facts.key_mask
        sources.append(("the key's own mask " + format_shape(shape), (*shape[:-1], 1, shape[-1])))
    if facts.causal:
        sources.append(("use_causal_mask", (1, facts.query[1], facts.value[1])))
    if facts.attention_mask is not None:
        sources.append(("attention_mask " + format_shape(facts.attention_mask), facts.attention_mask))
    if not sources:
        return None, (), None
    combined: Dims | None = sources[0][1]
    for _, shape in sources[1:]:
        joined = _broadcast(combined or (), shape)
        if joined is None:
            shown = " & ".join(f"{n} as {format_shape(s)}" for n, s in sources)
            return None, tuple(sources), f"Keras ANDs {shown}, and these do not broadcast together"
        combined = joined
    return combined, tuple(sources), None


def config_of(facts: CallFacts, mask: Dims | None = None) -> MHAConfig | GQAConfig:
    """The configuration the call states (``mask``: the combined attention_mask, batch included)."""
    arguments = dict(facts.arguments)
    axes = arguments.get("attention_axes")
    if isinstance(axes, int):
        arguments["attention_axes"] = (axes,)
    elif axes is not None:
        arguments["attention_axes"] = tuple(axes)
    output = arguments.get("output_shape")
    if isinstance(output, int):
        arguments["output_shape"] = (output,)
    elif output is not None:
        arguments["output_shape"] = tuple(output)
    shared: dict[str, Any] = {
        "query_shape": tuple(facts.query[1:]),
        "value_shape": tuple(facts.value[1:]),
        "key_shape": None if facts.key is None else tuple(facts.key[1:]),
        "batch": facts.query[0] or 2,
        "mask_shape": mask,
        "dtype": facts.dtype,
    }
    names = _GQA_ARGUMENTS if facts.kind == "gqa" else _MHA_ARGUMENTS
    own = {name: arguments[name] for name in names if name in arguments}
    if facts.kind == "gqa":
        return GQAConfig(**shared, **own)
    return MHAConfig(**shared, **own)


def in_call_terms(error: ConfigError) -> str:
    """A ConfigError's line with the call's names for what it names (``attention_mask``, not --mask-shape)."""
    name = _TERMS.get(error.option, error.option.lstrip("-"))
    shown = "" if error.value is None else f" {error.value}"
    return f"{name}{shown}: {error.problem}"


def diagnose(facts: CallFacts) -> str:
    """The note for a failed call: what was wrong, in the call's terms, and what would work."""
    try:
        bare = derive_any(config_of(facts))
    except ConfigError as error:
        return f"mha-explain: {in_call_terms(error)}"
    expected, _ = mask_layout(bare)
    full = format_shape((facts.query[0], *expected[1:]))
    mask, sources, clash = combined_mask(facts)
    if clash is not None:
        return (
            f"mha-explain: {clash}; the scores are {format_shape(bare.shapes['attention_scores'].shape)}, "
            f"and a mask for them has the shape {full}, the scores' without the heads"
        )
    if mask is None:
        return (
            "mha-explain: the layer takes these shapes (scores "
            f"{format_shape(bare.shapes['attention_scores'].with_batch(facts.query[0] or 2))}); "
            "the error is not about the shapes of query, value or key"
        )
    try:
        derive_any(replace(config_of(facts, mask)))
    except ConfigError as error:
        implicit = any("own mask" in name for name, _ in sources)
        parts = [f"mha-explain: the attention mask {format_shape(mask)}: {error.problem}"]
        if len(sources) > 1 or implicit:
            parts.append(f"Keras made it from {' & '.join(name for name, _ in sources)}")
        if implicit:
            parts.append(
                "a tensor's own mask (mask_zero, Masking) is expanded as if the inputs were "
                "(B, T, features), which a query of rank 4 or more, or other attended axes, does not fit"
            )
        works = f"the layer expects {full} here (the scores without the heads)"
        labels = bare.shapes["attention_scores"].labels
        if "heads" in labels:
            whole = (facts.query[0], *expected[1:])
            at = labels.index("heads")
            works += f", or {format_shape((*whole[:at], 1, *whole[at:]))} with a heads axis of 1"
        return "; ".join(parts) + "; " + works + ", or a shorter shape that broadcasts to it"
    return (
        "mha-explain: the layer takes these shapes and this mask (scores "
        f"{format_shape(bare.shapes['attention_scores'].with_batch(facts.query[0] or 2))}, mask "
        f"{format_shape(mask)}); the error is not about them"
    )


# --- Attention and AdditiveAttention: the layers called on a list ------------------------------------

#: The keywords people give Attention when they call it as MultiHeadAttention is called.
_MHA_STYLE = ("query", "value", "key", "attention_mask", "query_mask", "value_mask", "key_mask")


@dataclass(frozen=True)
class ListedCallFacts:
    """What one call of Attention or AdditiveAttention was given (``layer(inputs, mask=...)``)."""

    kind: str  # "dot" (Attention) or "additive" (AdditiveAttention)
    class_name: str
    #: Each item of the ``inputs`` list, batch included (None: an item without a shape); None when
    #: ``inputs`` was not a list or tuple (``given`` says what it was).
    inputs: tuple[Dims | None, ...] | None
    #: What ``inputs`` was when not a list: "the tensor (2, 5, 4)", "a dict of query, value", "nothing".
    given: str = "nothing"
    #: ``mask`` as the call bound it: a list's items (None where None), or None.
    mask: tuple[Dims | None, ...] | None = None
    #: ``mask`` when it was not a list: its shape (or None for no shape); ``mask_is_list`` says which.
    mask_shape: Dims | None = None
    mask_is_list: bool = True
    #: Keyword arguments the layer's call does not take (query=, value=, attention_mask=...).
    unknown: tuple[str, ...] = ()
    score_mode: str = "dot"
    causal: bool = False


def _listed_name(facts: ListedCallFacts) -> str:
    return facts.class_name or ("AdditiveAttention" if facts.kind == "additive" else "Attention")


def diagnose_listed(facts: ListedCallFacts) -> str:
    """The note for a failed call of Attention or AdditiveAttention, in the call's terms."""
    name = _listed_name(facts)
    usage = (
        f"{name} takes one list, layer([query, value]) or layer([query, value, key]) (for self-attention "
        "[x, x]), and its masks as mask=[query_mask, value_mask]"
    )
    if facts.inputs is None:
        mha_style = [word for word in facts.unknown if word in _MHA_STYLE]
        if mha_style:
            given = ", ".join(f"{word}=" for word in mha_style)
            return (
                f"mha-explain: {usage}; this call gave {given} as keywords, which is how "
                "MultiHeadAttention is called (mha(query, value, attention_mask=...)), not this layer"
            )
        if not facts.mask_is_list and facts.mask_shape is not None:
            return (
                f"mha-explain: {usage}; this call gave {facts.given} and the tensor "
                f"{format_shape(facts.mask_shape)} as two arguments, so the second one went to mask. "
                "MultiHeadAttention is the layer called as mha(query, value); here write "
                "layer([query, value])"
            )
        return f"mha-explain: {usage}; this call gave {facts.given}"
    if len(facts.inputs) not in (2, 3):
        shown = ", ".join("?" if dims is None else format_shape(dims) for dims in facts.inputs)
        return f"mha-explain: {usage}; the list has {len(facts.inputs)} items ({shown})"
    if any(dims is None for dims in facts.inputs):
        return f"mha-explain: {usage}; an item of the list has no shape (give tensors or arrays)"
    query, value, *rest = facts.inputs
    assert query is not None and value is not None
    key = rest[0] if rest else None
    found = _listed_shapes(facts, query, value, key)
    if found is not None:
        return f"mha-explain: {found}"
    batch = query[0]
    tq, tv = query[-2], value[-2]
    if not facts.mask_is_list:
        shown = "" if facts.mask_shape is None else f" {format_shape(facts.mask_shape)}"
        return (
            f"mha-explain: mask{shown} is not a list: {name} takes mask=[query_mask, value_mask] (either "
            "may be None); for padding on the value, mask=[None, value_mask] with value_mask "
            f"{format_shape((batch, tv))}"
        )
    found = _listed_masks(facts, query, value)
    if found is not None:
        return f"mha-explain: {found}"
    scores = format_shape((batch, tq, tv))
    return (
        f"mha-explain: the layer takes these shapes and masks (scores {scores}); the error is not about them"
    )


def _listed_shapes(facts: ListedCallFacts, query: Dims, value: Dims, key: Dims | None) -> str | None:
    """What in query, value and key the layer's formula cannot take, or None."""
    named = [("query", query), ("value", value)] + ([("key", key)] if key is not None else [])
    if len({len(dims) for _, dims in named}) > 1 or len(query) < 2:
        shown = ", ".join(f"{word} {format_shape(dims)}" for word, dims in named)
        return f"{shown}: the query, value and key are (batch, positions, features) each, of one rank"
    batches = {dims[0] for _, dims in named if dims[0] is not None}
    if len(batches) > 1:
        shown = ", ".join(f"{word} {format_shape(dims)}" for word, dims in named)
        return f"{shown}: their batch sizes differ; the query, value and key need the same batch"
    scored = key if key is not None else value
    scored_name = "key" if key is not None else "value"
    if key is not None and len(key) > 2 and None not in (key[-2], value[-2]) and key[-2] != value[-2]:
        return (
            f"key {format_shape(key)}, value {format_shape(value)}: the key needs the value's {value[-2]} "
            f"positions (one score per key position weighs one value); give a key of {value[-2]} positions"
        )
    dq, dk = query[-1], scored[-1]
    if dq is None or dk is None or dq == dk:
        return None
    project = (
        f"project one of them to the other's width (keras.layers.Dense({dq}) on the {scored_name}), "
        "or use MultiHeadAttention, which projects query, key and value itself"
    )
    shown = f"query {format_shape(query)}, {scored_name} {format_shape(scored)}"
    if key is None:
        shown += " (the key too, as no key is given)"
    if facts.kind == "dot" and facts.score_mode != "concat":
        return (
            f"{shown}: dot scores are query @ key^T, so the key needs the query's {dq} features "
            f"(it has {dk}); {project}"
        )
    if 1 in (dq, dk):
        return None
    form = "AdditiveAttention's" if facts.kind == "additive" else "concat"
    return (
        f"{shown}: {form} scores add query and key (tanh(query + key)), so they need the same "
        f"features (query {dq}, key {dk}); {project}"
    )


def _listed_masks(facts: ListedCallFacts, query: Dims, value: Dims) -> str | None:
    """What in mask=[query_mask, value_mask] does not fit, as Keras applies it, or None."""
    masks = facts.mask or ()
    if facts.mask is not None and len(masks) not in (2, 3):
        return (
            f"mask has {len(masks)} items: it is [query_mask, value_mask] (either may be None); "
            "a key has no mask of its own (the value's positions are the key's)"
        )
    if len(query) != 3:
        return None  # masks are (batch, positions): read for rank-3 inputs only
    batch, tq, tv = query[0], query[-2], value[-2]
    scores = (batch, tq, tv)
    query_mask = masks[0] if masks else None
    value_mask = masks[1] if len(masks) > 1 else None
    found = None
    if value_mask is not None:
        # Keras gives a (B, Tv) mask its Tq axis; a longer one is used as it is, but with
        # use_causal_mask it gains that axis whatever its rank (Attention._calculate_score_mask).
        grows = facts.causal or len(value_mask) < 3
        expanded = (*value_mask[:-1], 1, value_mask[-1]) if grows else value_mask
        applied = f"applies it to the scores {format_shape(scores)}"
        found = _misfit("value", value_mask, expanded, scores, applied, (batch, tv), tq)
    if found is None and query_mask is not None:
        output = (batch, tq, value[-1])
        applied = f"zeroes the output {format_shape(output)} with it"
        found = _misfit("query", query_mask, (*query_mask, 1), output, applied, (batch, tq), tv)
    return found


def _misfit(
    whose: str, mask: Dims, expanded: Dims, target: Dims, applied: str, fits: Dims, other_length: int | None
) -> str | None:
    """The ``whose`` mask (query or value) as Keras expands it, against the ``target`` it is applied to
    (what Keras does with it: ``applied``): None when it broadcasts, else why not and the shape that
    ``fits``, with a hint when its length is the other input's (``other_length``): masks swapped."""
    if _broadcast(expanded, target) is not None:
        return None
    other = "query" if whose == "value" else "value"
    swapped = (
        f"; {mask[-1]} is the {other}'s length (mask=[query_mask, value_mask]: swapped?)"
        if mask[-1] == other_length and fits[-1] != other_length
        else ""
    )
    return (
        f"{whose}_mask {format_shape(mask)}: Keras {applied} as {format_shape(expanded)}, which does not "
        f"fit; a {whose} mask has the {whose}'s positions: {format_shape(fits)}{swapped}"
    )
