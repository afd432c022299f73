"""Re-execute, in NumPy, the attention of a layer mha-explain does not explain.

KerasHub's LlamaAttention, CachedMistralAttention and CachedGemmaAttention compute grouped-query
attention on query, key and value they project and rotate themselves. What they ran is recorded on
a real pass (runtime/others.py): every ``ops.einsum``, softmax and ``ops.dot_product_attention`` of
their own call, and every sublayer they called. From the query, key and value their attention
received, and the heads read from their kernels, this module computes grouped-query attention
itself (query head ``i`` reads key/value head ``i // group``) and holds each step against the
layer's own: the logits its softmax saw (up to one scale, and the soft cap it has), the attention's
output, and, through its own output projection's kernel, the layer's output. Nothing here knows a
class; where the recording does not fit grouped-query attention, it says so. NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mha_cli.core.grammar import format_shape
from mha_cli.core.other import ROLE_NAMES, Heads, OtherCheck, Step, Verdict

__all__ = [
    "EinsumRan",
    "FusedRan",
    "Ran",
    "SoftmaxRan",
    "SublayerRan",
    "grouped_logits",
    "verify",
]

#: The relative difference allowed at each step, by the dtype the layer computes in.
RELATIVE_TOLERANCE = {"float64": 1e-6, "float32": 1e-4, "float16": 5e-2, "bfloat16": 2.5e-1}


@dataclass(frozen=True)
class EinsumRan:
    equation: str
    operands: tuple[np.ndarray, ...]
    result: np.ndarray


@dataclass(frozen=True)
class SoftmaxRan:
    logits: np.ndarray
    #: The mask a Softmax layer was given (True attends), None for ``ops.softmax``.
    mask: np.ndarray | None
    result: np.ndarray


@dataclass(frozen=True)
class FusedRan:
    """A call of ``ops.dot_product_attention``, its arguments as given."""

    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    mask: np.ndarray | None
    bias: np.ndarray | None
    scale: float | None
    is_causal: bool
    soft_cap: float | None
    result: np.ndarray
    #: The same op re-run with the query multiplied by ``factor`` (its result), so that its logits
    #: spread as trained weights make them: fresh weights give logits near 1e-4, and a softmax that
    #: is nearly uniform would hide a wrong reading of which key a query head reads.
    sharpened: tuple[float, np.ndarray] | None = None


@dataclass(frozen=True)
class SublayerRan:
    name: str
    class_name: str
    given: np.ndarray | None
    result: np.ndarray | None
    #: A Dense or EinsumDense's weights and equation (None for any other layer; Dense: None).
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    equation: str | None = None


Ran = EinsumRan | SoftmaxRan | FusedRan | SublayerRan


def grouped_logits(query: np.ndarray, key: np.ndarray) -> np.ndarray:
    """(B, H, T, S) logits of query (B, T, H, D) against key (B, S, K, D): query head ``i`` reads
    key head ``i // (H // K)``, as ``ops.repeat(key, H // K, axis=2)`` lays them out."""
    heads, kv_heads = query.shape[2], key.shape[2]
    repeated = np.repeat(key, heads // kv_heads, axis=2)
    logits: np.ndarray = np.einsum("bthd,bshd->bhts", query, repeated)
    return logits


def _grouped_combine(weights: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(B, T, H, Dv) of weights (B, H, T, S) over value (B, S, K, Dv), grouped as the keys are."""
    repeated = np.repeat(value, weights.shape[1] // value.shape[2], axis=2)
    combined: np.ndarray = np.einsum("bhts,bshd->bthd", weights, repeated)
    return combined


def _softmax(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Over the last axis; as Keras 3's Softmax with a mask: masked logits to -1e9, weights to 0."""
    if mask is not None:
        logits = np.where(mask, logits, -1e9)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights if mask is None else np.where(mask, weights, 0.0)


def _step(what: str, ours: np.ndarray, theirs: np.ndarray) -> Step:
    difference = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    largest = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    return Step(what, difference, difference / largest if largest else difference)


def verify(
    ran: tuple[Ran, ...],
    heads: Heads | str,
    output: np.ndarray | None,
    dtype: str,
    soft_cap: float | None = None,
) -> OtherCheck:
    """What the recording of one call shows, re-executed as grouped-query attention."""
    tolerance = RELATIVE_TOLERANCE.get(dtype, 1e-4)
    sublayers = tuple(
        dict.fromkeys(  # in the order they first ran, once each
            f"{event.name} ({event.class_name})"
            for event in ran
            if isinstance(event, SublayerRan) and event.kernel is None and event.class_name != "Dropout"
        )
    )
    attention = next((e for e in ran if isinstance(e, FusedRan | SoftmaxRan)), None)
    if isinstance(heads, str):
        return OtherCheck(Verdict.NOT_VERIFIED, f"not verified: its heads are {heads}", sublayers=sublayers)
    if attention is None or output is None:
        why = "not verified: the real pass recorded no attention in its call"
        return OtherCheck(Verdict.NOT_VERIFIED, why, sublayers=sublayers)
    try:
        if isinstance(attention, FusedRan):
            read = _fused(attention, heads)
        else:
            read = _from_einsums(ran, attention, heads, soft_cap)
    except _Unfit as unfit:
        return OtherCheck(Verdict.NOT_VERIFIED, f"not verified: {unfit}", sublayers=sublayers)
    projected = _projected(ran, attention, read.attended, output)
    steps = (*read.steps, *projected)

    def check(verdict: Verdict, detail: str) -> OtherCheck:
        return OtherCheck(
            verdict,
            detail,
            steps,
            tolerance,
            _rotary(ran, read.query, read.key),
            read.scale,
            read.soft_cap,
            read.mask,
            sublayers,
            received=tuple(
                (name, tuple(int(size) for size in tensor.shape))
                for name, tensor in (("query", read.query), ("key", read.key), ("value", read.value))
            ),
        )

    first = next((step for step in steps if step.relative > tolerance), None)
    if first is not None:
        return check(
            Verdict.NOT_REPRODUCED,
            f"not reproduced: {first.what} differs by {first.max_abs_diff:.1e} "
            f"({first.relative:.1e} of its largest value; tolerance {tolerance:.0e})",
        )
    if not projected:
        return check(
            Verdict.NOT_VERIFIED,
            "not verified: its attention was reproduced, but its output does not come from one Dense or "
            "EinsumDense projection of the attention's output",
        )
    return check(
        Verdict.VERIFIED,
        f"grouped-query attention ({heads.query_heads} query heads reading {heads.key_value_heads} key/value "
        "heads) on the query, key and value its attention received, then its output projection, "
        f"reproduces its output (max |diff| {projected[0].max_abs_diff:.1e})",
    )


class _Unfit(Exception):
    """The recording does not fit grouped-query attention (why, in words)."""


@dataclass(frozen=True)
class _Reading:
    """Our attention's output (B, T, H, Dv), the steps held so far, and what was read on the way."""

    attended: np.ndarray
    steps: tuple[Step, ...]
    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    scale: float
    soft_cap: float | None
    mask: str | None


def _check_heads(query: np.ndarray, key: np.ndarray, value: np.ndarray, heads: Heads) -> None:
    if query.ndim != 4 or key.ndim != 4 or value.ndim != 4:
        raise _Unfit(
            f"its attention took query {format_shape(query.shape)} and key {format_shape(key.shape)}, "
            "not (batch, length, heads, head_dim)"
        )
    kv_heads = key.shape[2]
    if query.shape[2] != heads.query_heads or kv_heads not in (heads.key_value_heads, heads.query_heads):
        raise _Unfit(
            f"its attention took {query.shape[2]} query heads and {kv_heads} key heads, where its kernels "
            f"have {heads.query_heads} and {heads.key_value_heads}"
        )
    if value.shape[2] != kv_heads:
        raise _Unfit(f"its attention took {kv_heads} key heads and {value.shape[2]} value heads")


def _repeated(key: np.ndarray, value: np.ndarray, heads: Heads) -> tuple[Step, ...]:
    """Key and value given with every query head's copy (Llama repeats them before attending):
    they must hold key/value head ``i // group`` at query head ``i``, as the heads read from the
    kernels say; ops.tile's layout (``i % kv_heads``) is another grouping."""
    if key.shape[2] == heads.key_value_heads or heads.key_value_heads == heads.query_heads:
        return ()
    group = heads.query_heads // heads.key_value_heads
    return tuple(
        _step(
            f"the {name} its attention took, as key/value head i // {group} at query head i",
            np.repeat(tensor[:, :, ::group], group, axis=2),
            tensor,
        )
        for name, tensor in (("key", key), ("value", value))
    )


def _fused(fused: FusedRan, heads: Heads) -> _Reading:
    """ops.dot_product_attention's arguments, re-executed; and again on a sharpened query."""
    query, key, value = fused.query, fused.key, fused.value
    _check_heads(query, key, value, heads)
    scale = fused.scale if fused.scale is not None else 1 / math.sqrt(query.shape[-1])
    # One boolean (B, H, T, S) for both runs and the words.
    mask = _fused_mask(fused, (query.shape[0], query.shape[2], query.shape[1], key.shape[1]))

    def attend(query: np.ndarray) -> np.ndarray:
        logits = scale * grouped_logits(query, key)
        if fused.soft_cap is not None:
            logits = fused.soft_cap * np.tanh(logits / fused.soft_cap)
        if fused.bias is not None:
            logits = logits + fused.bias
        return _grouped_combine(_softmax(logits, mask), value)

    attended = attend(query)
    steps = [
        *_repeated(key, value, heads),
        _step("the output of ops.dot_product_attention", attended, fused.result),
    ]
    if fused.sharpened is not None:
        factor, result = fused.sharpened
        steps.append(
            _step(
                f"ops.dot_product_attention re-run with the query x{factor:.3g}",
                attend(query * factor),
                result,
            )
        )
    shown = None if fused.mask is None else fused.mask.shape
    words = _mask_words(mask, shown, fused.is_causal)
    return _Reading(attended, tuple(steps), query, key, value, scale, fused.soft_cap, words)


def _fused_mask(fused: FusedRan, shape: tuple[int, ...]) -> np.ndarray | None:
    """The op's mask and causal flag as one boolean (B, H, T, S), True attending."""
    mask = None if fused.mask is None else np.broadcast_to(fused.mask.astype(bool), shape)
    if fused.is_causal:
        causal = np.tril(np.ones(shape[-2:], dtype=bool))
        mask = causal if mask is None else mask & causal
    return None if mask is None else np.broadcast_to(mask, shape)


def _parse(equation: str) -> tuple[list[str], str]:
    operands, result = equation.replace(" ", "").split("->")
    if "." in equation:
        raise _Unfit(f"its einsum {equation} has an ellipsis")
    return operands.split(","), result


def _from_einsums(
    ran: tuple[Ran, ...], softmax: SoftmaxRan, heads: Heads, soft_cap: float | None
) -> _Reading:
    """The einsum path: the einsum whose result its softmax took (query and key), the softmax, and
    the einsum that took the softmax's weights (value)."""
    at = ran.index(softmax)
    logits = softmax.logits
    scores = next(
        (e for e in reversed(ran[:at]) if isinstance(e, EinsumRan) and e.result.shape == logits.shape), None
    )
    combine = next(
        (
            e
            for e in ran[at + 1 :]
            if isinstance(e, EinsumRan) and any(o.shape == softmax.result.shape for o in e.operands)
        ),
        None,
    )
    if scores is None or combine is None:
        raise _Unfit(
            f"its softmax over {format_shape(logits.shape)} does not take an einsum's result of its own "
            "and give its weights to another"
        )
    # The scores' axes by position: (batch, heads, T, S), or grouped (batch, kv heads, group, T, S).
    operands, result = _parse(scores.equation)
    if len(operands) != 2 or len(result) != logits.ndim or logits.ndim not in (4, 5):
        raise _Unfit(f"its scores einsum {scores.equation} does not give (batch, heads, T, S)")
    grouped = logits.ndim == 5
    letters = list(result)
    if grouped:
        batch, kv, group, t, s = letters
        head_letters = kv + group
        if logits.shape[1] * logits.shape[2] != heads.query_heads:
            raise _Unfit(f"its scores {format_shape(logits.shape)} do not hold {heads.query_heads} heads")
    else:
        batch, head_letters, t, s = letters
        if logits.shape[1] != heads.query_heads:
            raise _Unfit(f"its scores {format_shape(logits.shape)} do not hold {heads.query_heads} heads")
    as_bhts = f"{result}->{batch}{head_letters}{t}{s}"

    def heads_merged(array: np.ndarray, equation: str) -> np.ndarray:
        moved: np.ndarray = np.einsum(equation, array)
        return moved.reshape(*moved.shape[:1], -1, *moved.shape[-2:]) if grouped else moved

    query_letters = next((o for o in operands if t in o and s not in o), None)
    key_letters = next((o for o in operands if s in o and t not in o), None)
    if query_letters is None or key_letters is None:
        raise _Unfit(f"its scores einsum {scores.equation} has no query and key operand")
    contracted = [letter for letter in query_letters if letter in key_letters and letter not in result]
    key_heads = "".join(letter for letter in key_letters if letter in head_letters)
    if len(contracted) != 1 or len(key_heads) != 1:
        raise _Unfit(f"its scores einsum {scores.equation} is not one product of query and key per head")
    (d,) = contracted
    query_op = scores.operands[operands.index(query_letters)]
    key_op = scores.operands[operands.index(key_letters)]
    query: np.ndarray = np.einsum(f"{query_letters}->{batch}{t}{head_letters}{d}", query_op)
    query = query.reshape(*query.shape[:2], -1, query.shape[-1])
    key: np.ndarray = np.einsum(f"{key_letters}->{batch}{s}{key_heads}{d}", key_op)

    # The value: the weights' letters are the scores' layout; the value's own axis is its head_dim.
    combine_operands, combine_result = _parse(combine.equation)
    at_weights = next(i for i, o in enumerate(combine.operands) if o.shape == softmax.result.shape)
    weights_letters = combine_operands[at_weights]
    value_letters = combine_operands[1 - at_weights] if len(combine_operands) == 2 else None
    if value_letters is None or len(weights_letters) != logits.ndim:
        raise _Unfit(f"its combine einsum {combine.equation} does not take the weights and a value")
    roles = dict(zip(weights_letters, result, strict=True))  # the combine's letters, in the scores' terms
    by_role = {role: letter for letter, role in roles.items()}
    value_heads = "".join(
        letter for letter in value_letters if letter in roles and roles[letter] in head_letters
    )
    own = [letter for letter in value_letters if letter not in roles]
    if len(own) != 1 or len(value_heads) != 1 or by_role[s] not in value_letters:
        raise _Unfit(f"its combine einsum {combine.equation} is not one weighted sum of values per head")
    value_op = combine.operands[1 - at_weights]
    value: np.ndarray = np.einsum(
        f"{value_letters}->{by_role[batch]}{by_role[s]}{value_heads}{own[0]}", value_op
    )
    _check_heads(query, key, value, heads)

    theirs = heads_merged(logits, as_bhts)
    raw = grouped_logits(query, key)
    linear = (
        theirs if soft_cap is None else soft_cap * np.arctanh(np.clip(theirs / soft_cap, -1 + 1e-7, 1 - 1e-7))
    )
    scale = float(np.sum(linear * raw) / np.sum(raw * raw)) if np.any(raw) else 1.0
    ours = scale * raw
    if soft_cap is not None:
        ours = soft_cap * np.tanh(ours / soft_cap)
    steps = [
        *_repeated(key, value, heads),
        _step(f"the logits its softmax took, as {scale:.4g} x query . key", ours, theirs),
    ]
    mask = None
    if softmax.mask is not None:
        mask = heads_merged(np.broadcast_to(softmax.mask.astype(bool), logits.shape), as_bhts)
    attended = _grouped_combine(_softmax(ours, mask), value)
    combine_letters = "".join(by_role.get(r, r) for r in (batch, t)) + "".join(
        letter for letter in combine_result if letter in roles and roles[letter] in head_letters
    )
    combined: np.ndarray = np.einsum(f"{combine_result}->{combine_letters}{own[0]}", combine.result)
    steps.append(_step("the output of its combine einsum", attended, combined.reshape(attended.shape)))
    shown = None if softmax.mask is None else softmax.mask.shape
    return _Reading(
        attended, tuple(steps), query, key, value, scale, soft_cap, _mask_words(mask, shown, False)
    )


def _projected(
    ran: tuple[Ran, ...], attention: Ran, attended: np.ndarray, output: np.ndarray
) -> tuple[Step, ...]:
    """The layer's output from ours through the first Dense/EinsumDense it called after attending
    (its output projection, with its own kernel, bias and equation), or nothing where none fits."""
    after = ran[ran.index(attention) + 1 :]
    projection = next(
        (
            e
            for e in after
            if isinstance(e, SublayerRan)
            and e.kernel is not None
            and e.given is not None
            and e.given.size == attended.size
        ),
        None,
    )
    if projection is None or projection.kernel is None or projection.given is None:
        return ()
    given = attended.reshape(projection.given.shape)
    if projection.equation is None:  # Dense
        projected: np.ndarray = given @ projection.kernel
    else:
        projected = np.einsum(projection.equation, given, projection.kernel)
    if projection.bias is not None:
        projected = projected + projection.bias
    if projected.shape != output.shape:
        return ()
    return (_step(f"the layer's output, through its {projection.name} projection", projected, output),)


def _rotary(ran: tuple[Ran, ...], query: np.ndarray, key: np.ndarray) -> str | None:
    """Whether its query and key were rotated between their projections and the attention: every
    head vector keeps its norm (up to one scale), and the vectors themselves change."""
    seen = []
    for role, tensor in (("query", query), ("key", key)):
        projected = next(
            (
                e.result
                for e in ran
                if isinstance(e, SublayerRan) and e.name in ROLE_NAMES[role] and e.result is not None
            ),
            None,
        )
        if projected is None or projected.ndim != 4:
            return None
        if tensor.shape[2] != projected.shape[2]:  # repeated to every query head: one of each group
            tensor = tensor[:, :, :: tensor.shape[2] // projected.shape[2]]
        if tensor.shape != projected.shape:
            return None
        norms, before = np.linalg.norm(tensor, axis=-1), np.linalg.norm(projected, axis=-1)
        ratio = norms / np.where(before == 0, 1.0, before)
        scale = float(np.median(ratio))
        if not np.allclose(ratio, scale, rtol=1e-3, atol=1e-6):
            return f"{role} changed between its projection and the attention, norms not kept"
        moved = _step("", tensor, scale * projected).relative
        seen.append((role, moved > 1e-4))
    rotated = [role for role, moved in seen if moved]
    if not rotated:
        return "query and key attend as projected (up to a scale): no rotation"
    return (
        f"{' and '.join(rotated)} rotated between projection and attention, each head vector's norm kept "
        "(a rotary embedding)"
    )


def _mask_words(mask: np.ndarray | None, shape: tuple[int, ...] | None, causal: bool) -> str | None:
    """The mask its attention used, (B, H, T, S) and True attending, in words."""
    if mask is None:
        return "none" if not causal else "causal (is_causal=True)"
    given = f"{format_shape(shape)} " if shape is not None else ""
    lengths = mask.shape[-2:]
    rows = mask.reshape(-1, *lengths)
    words = [f"{given}{100 * rows.mean():.0f}% of (query, key) pairs attend"]
    if lengths[0] == lengths[1]:
        upper = np.triu(np.ones(lengths, dtype=bool), 1)
        if not rows[:, upper].any():
            words.append("causal")
            # A sliding window: the furthest key behind any query that still attends.
            t, s = np.nonzero(rows.any(axis=0))
            reach = int((t - s).max()) + 1 if t.size else 0
            if reach < lengths[0]:
                words.append(f"a window of {reach} positions")
    return ", ".join(words)
