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
