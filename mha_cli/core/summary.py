"""What a configuration means, in the plain sentences a forum answer would use."""

from __future__ import annotations

import math

from mha_cli.core.config import ExecutionPath
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.grammar import format_shape
from mha_cli.core.masks import mask_layout


def join_words(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _heads(count: int) -> str:
    return "in its one head" if count == 1 else f"separately in each of {count} heads"


def masked_reach(derivation: Derived, key_positions: int, names: str) -> tuple[str, str, str]:
    """How many of the ``key_positions`` a query position attends to, with the masks: the words
    after "attends to", what decides it, and a sentence about queries left with none (or "")."""
    plan = derivation.mask
    if plan is None:
        return f"all {key_positions:,} key positions ({names})", "", ""
    sources = {name for name, _ in plan.sources}
    if "attention_mask" in sources or derivation.layer.attention_axes != (1,):
        return f"up to {key_positions:,} key positions ({names})", ", as the masks decide", ""
    # Causal and sliding-window masks, built by Keras from axis 1 of the query and the value.
    queries, keys = derivation.axes[1].query_size or 0, derivation.axes[1].key_size or 0
    window = derivation.layer.sliding_window

    def allowed(row: int, column: int) -> bool:
        causal = "causal" not in sources or column <= row
        return causal and (window is None or abs(row - column) < window)

    counts = [sum(allowed(row, column) for column in range(keys)) for row in range(queries)]
    masks = [
        *(["the causal mask"] if "causal" in sources else []),
        *([f"the sliding window of {window}"] if window is not None else []),
    ]
    decided = f", as {join_words(masks)} {'allows' if len(masks) == 1 else 'allow'}"
    reach = f"{min(counts)} to {max(counts)} of the {key_positions:,} key positions ({names})"
    empty = counts.count(0)
    none_left = ""
    if empty:
        none_left = (
            f" {empty} query positions have none left: with return_attention_scores their weights are "
            "all zero (Keras's softmax zeroes a fully masked row)"
        )
        if derivation.config.keras == 2:
            none_left = (
                f" {empty} query positions have none left: Keras 2's softmax adds -1e9 to masked logits "
                "and does not zero them, so in float32 their weights come out uniform over every key "
                "position (Keras 3 gives them zeros)"
            )
        elif derivation.execution_path is ExecutionPath.FUSED:
            none_left += "; the fused path a plain call takes gives them other outputs (see plain_call)"
        none_left += "."
    return reach, decided, none_left


def meant_axes(derivation: Derivation) -> tuple[int, ...]:
    """The attention_axes most likely meant where the heads are attended: the heads become the last
    axis before the features, or go where that one is attended already."""
    axes, rank = derivation.layer.attention_axes, derivation.rank
    last = rank - 2
    instead = () if last in axes else (last,)
    return tuple(kept for axis in axes for kept in (instead if axis == rank - 1 else (axis,)))


def heads_warning(derivation: Derivation, *, brief: bool = False) -> str:
    """What attending over the heads means, and the attention_axes most likely meant."""
    layer, rank = derivation.layer, derivation.rank
    given = format_shape(derivation.config.attention_axes or ())
    meant = meant_axes(derivation)
    meant_names = join_words([derivation.axes[axis].name for axis in meant])
    fused = derivation.execution_path is ExecutionPath.FUSED
    if brief:
        plain = "; a plain call ignores it (fused path)" if fused else ""
        return (
            f"attention_axes={given} attends over the {layer.num_heads} heads (axis {rank - 1} of the "
            f"projected query), not within each head{plain}; most likely meant: {format_shape(meant)} "
            f"({meant_names})"
        )
    everything = " (the same as attention_axes=None)" if sorted(meant) == list(range(1, rank - 1)) else ""
    labels = ", ".join((*derivation.inputs["query"].labels[:-1], "heads", "key_dim"))
    return (
        f"Warning: attention_axes={given} resolves to {format_shape(layer.attention_axes)}, "
        f"and Keras counts these axes in the projected query ({labels}), where axis {rank - 1} is the heads, "
        f"not the input's feature axis: the layer attends over its {layer.num_heads} heads, so each head's "
        "query mixes the values of every head instead of attending within its own. Most likely meant: "
        f"attention_axes={format_shape(meant)}, {meant_names}{everything}."
        + (
            " Only a call that returns the scores (or runs dropout) does so: a plain call, as a model "
            "makes it, takes the fused ops.dot_product_attention path, which ignores attention_axes and "
            f"attends along {meant_names} as attention_axes=None would (measured on the TensorFlow and JAX "
            "backends, Keras 3.15), so the same layer computes two different outputs."
            if fused
            else ""
        )
    )


def configuration_warnings(derivation: Derived) -> tuple[str, ...]:
    """What a user should hear about the configuration itself, whatever the checks say."""
    if isinstance(derivation, Derivation) and derivation.heads_attended:
        return (heads_warning(derivation),)
    return ()


def summarize(derivation: Derivation) -> tuple[str, ...]:
    """What the configuration means, in sentences a forum answer would use."""
    layer = derivation.layer
    attended = derivation.attended_axes
    free = derivation.free_axes
    feature = derivation.axes[-1]
    rank = derivation.rank
    names = {axis.index: axis.name for axis in attended} | {rank - 1: "heads"}
    attended_names = join_words([names[axis] for axis in layer.attention_axes])
    key_positions = derivation.weights_per_query
    lines = []
    if derivation.heads_attended:
        lines.append(heads_warning(derivation))
        per_head = f"from each of its {layer.num_heads} heads over all {layer.num_heads} of the key's"
        problems = "per batch item"
    else:
        per_head = _heads(layer.num_heads)
        problems = "per batch item and head"
    if free:
        same = join_words([axis.name for axis in free])
        lines.append(
            f"Each query position attends to the {key_positions:,} key positions along {attended_names} "
            f"that share its {same}, in the same batch item, {per_head}."
        )
        slices = math.prod(axis.query_size or 1 for axis in free)
        lines.append(
            f"Free axes ({same}) are handled independently, like extra batch axes: "
            f"{slices:,} separate attention problems {problems}."
        )
    else:
        reach, decided, none_left = masked_reach(derivation, key_positions, attended_names)
        lines.append(
            f"Each query position attends to {reach} of the same batch item{decided}, {per_head}." + none_left
        )
    scores = derivation.shapes["attention_scores"]
    per_item = scores.per_item_size()
    lines.append(
        f"Attention weights: {key_positions:,} per query position and head; "
        f"{per_item:,} per batch item ({' x '.join(str(s) for s in scores.shape[1:])}), "
        f"{derivation.scores_bytes_per_item():,} bytes in {layer.dtype}."
    )
    out = derivation.shapes["output"]
    sizes = (feature.query_size, feature.key_size, feature.value_size)
    if len(set(sizes)) == 1:
        size = f"size {feature.query_size}"
    elif feature.key_size == feature.value_size:
        size = f"size {feature.query_size} in the query, {feature.key_size} in the key and value"
    else:
        size = (
            f"size {feature.query_size} in the query, {feature.key_size} in the key, "
            f"{feature.value_size} in the value"
        )
    head_word = "head" if layer.num_heads == 1 else "heads"
    lines.append(
        f"The feature axis is axis {feature.index} ({feature.negative_index}), {size}: "
        f"projected to {layer.num_heads} {head_word} x {layer.key_dim} (key_dim) for query and key, "
        f"{layer.num_heads} x {layer.value_dim} (value_dim) for value, and back to "
        f"{format_shape(out.shape[rank - 1 :])} by the output projection."
    )
    scores_text = (
        f"{format_shape(scores.shape)} scores ({derivation.scores_bytes_per_item():,} bytes per item)"
    )
    if derivation.config.keras == 2:
        lines.append(
            f"Keras 2 computes this with the explicit einsum + softmax path whatever the input (it has no "
            f"fused path), which materialises the {scores_text} on every call."
        )
    elif derivation.execution_path is ExecutionPath.FUSED:
        lines.append(
            "Called without return_attention_scores, Keras takes the fused ops.dot_product_attention path "
            "(rank-3 input, dropout 0); asking for the scores switches to the einsum + softmax path. "
            f"Whether the fused path materialises the {scores_text} depends on the backend's kernel: "
            "TensorFlow's builds the full logits all the same (measured: as much memory as the call with "
            "scores), a flash-attention kernel on a GPU does not."
        )
    else:
        why = f"dropout {layer.dropout}" if rank == 3 else f"a rank-{rank} input"
        lines.append(
            f"Keras computes this with the explicit einsum + softmax path ({why}; the fused "
            f"ops.dot_product_attention path needs a rank-3 input and dropout 0), which materialises "
            f"the {scores_text} on every call."
        )
    expected, heads_axis = mask_layout(derivation)
    attended_k = len(layer.attention_axes)
    shorter = expected[-2 * attended_k :]
    only_batch = len(expected) == 2 * attended_k + 1
    if derivation.heads_attended:
        lines.append(
            f"An attention_mask for this call has the shape {format_shape(expected)}, the scores' own "
            "(True/1 attends; the heads are attended, so no axis is left to broadcast over them); a shorter "
            f"one gains size-1 axes at {heads_axis}, just before the query's attended axes, so "
            f"{format_shape(shorter)} broadcasts over "
            + ("the batch." if only_batch else "the batch and free axes.")
        )
    else:
        lines.append(
            f"An attention_mask for this call has the shape {format_shape(expected)}, the scores' without "
            f"the heads (True/1 attends); a shorter one gains size-1 axes at {heads_axis}, just before the "
            f"query's attended axes, so {format_shape(shorter)} broadcasts over "
            + ("the batch and the heads." if only_batch else "the batch, free axes and heads.")
        )
    mask = derivation.mask
    if mask is not None:
        given = " & ".join(f"{name} {format_shape(shape)}" for name, shape in mask.sources)
        lines.append(
            f"This call's mask, {given}, reaches the scores as {format_shape(mask.broadcast_to)} "
            "(the NumPy check applies it exactly so)."
        )
    if rank == 3 and layer.attention_axes == (1,):  # every choice of the one input axis resolves to it
        negative = "-3 in Keras 2, -2 in Keras 3" if derivation.config.keras == 2 else "-2"
        lines.append(
            f"For a rank-3 input, attention_axes=None and attention_axes=(1,) (also written (1), 1 or "
            f"{negative}) resolve to the same axes (1,): the layer, its weights and its output are identical."
        )
    written = derivation.config.attention_axes or ()
    if derivation.config.keras == 2 and any(axis < 0 for axis in written):
        lines.append(_keras2_negative_axes(derivation, written))
    if list(layer.attention_axes) != sorted(layer.attention_axes):
        lines.append(
            f"The axes are given out of order {format_shape(layer.attention_axes)}: Keras keeps that order "
            "in the scores tensor, so it differs in layout (not in values) from the sorted order."
        )
    return tuple(lines)


def _keras2_negative_axes(derivation: Derivation, given: tuple[int, ...]) -> str:
    """What Keras 2 makes of negative attention_axes, and what Keras 3 would make of the same value."""
    rank = derivation.rank

    def named(index: int) -> str:
        if index == rank - 1:
            return f"the heads (axis {index} of the projected query)"
        if index <= 0:
            return "the batch axis (attending across a batch's items)"
        return f"{derivation.axes[index].name} (axis {index})"

    parts = [
        f"{axis} is {named(rank + 1 + axis)}; Keras 3.12+ reads {axis} as {named(rank + axis)}"
        for axis in given
        if axis < 0
    ]
    return (
        f"Keras 2 counts negative attention_axes from the end of the projected query (batch, ..., heads, "
        f"key_dim), one axis further than the input: {'; '.join(parts)}. The same value attends over "
        "another axis in Keras 2 and in Keras 3; write positive axes to mean the same in both."
    )
