"""Re-execute the derived einsums in NumPy (float64) with the layer's weights.

This is the proof that the equations we print are the computation Keras runs:
projections, scaling by 1/sqrt(key_dim) (GroupQueryAttention: head_dim),
GroupQueryAttention's repeat of key and value along the heads axis, softmax
over the attended key axes, combine, optional gate, output projection. NumPy
only; no Keras.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.gqa import GQADerivation


def reexecute(derivation: Derived, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The layer's forward pass from our equations; returns output and scores."""
    einsums = derivation.einsums

    def project(name: str, tensor: np.ndarray) -> np.ndarray:
        projected = contract(einsums[name].equation, tensor, arrays[f"{name}/kernel"])
        bias = arrays.get(f"{name}/bias")
        return projected if bias is None else projected + bias

    query = project("query", arrays["query"]) / math.sqrt(_head_size(derivation))
    key = project("key", arrays["key"])
    value = project("value", arrays["value"])
    if isinstance(derivation, GQADerivation):  # ops.repeat: query heads g*r .. g*r+r-1 read head g
        key, value = (np.repeat(x, derivation.layer.num_repeats, axis=2) for x in (key, value))
    # By the einsums' own operands: MultiHeadAttention's dot product takes (key, query),
    # GroupQueryAttention's (query, key) after the repeat.
    named = {"query_projected": query, "key_projected": key, "key_repeated": key}
    dot = einsums["dot_product"]
    logits = contract(dot.equation, *(named[operand.name] for operand in dot.operands))
    mask = _mask(derivation, arrays, logits.ndim)
    keras2 = derivation.config.keras == 2
    if mask is not None and keras2:
        # Keras 2's Softmax adds (1 - mask) * -1e9 (float16: its lowest) in the layer's dtype and
        # keeps every weight, so a fully masked row, its logits all rounded to -1e9, comes out flat.
        dtype = np.dtype(derivation.layer.dtype) if derivation.layer.dtype != "bfloat16" else np.float32
        large = np.finfo(np.float16).min if dtype == np.float16 else -1e9
        logits = (logits.astype(dtype) + np.where(mask, 0.0, large).astype(dtype)).astype(np.float64)
    elif mask is not None:  # as Keras 3's Softmax: masked logits to -1e9, masked weights to 0
        logits = np.where(mask, logits, -1e9)
    key_axes = tuple(range(-len(derivation.layer.attention_axes), 0))
    # In place: the scores can be the largest tensor by far (170 MB for a 48x48 image).
    scores = logits
    scores -= scores.max(axis=key_axes, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=key_axes, keepdims=True)
    if mask is not None and not keras2:
        scores = np.where(mask, scores, 0.0)
    attended = contract(einsums["combine"].equation, scores, value)
    if derivation.layer.use_gate:
        attended = attended / (1.0 + np.exp(-project("gate", arrays["query"])))
    output = contract(einsums["output"].equation, attended, arrays["attention_output/kernel"])
    bias = arrays.get("attention_output/bias")
    if bias is not None:
        output = output + bias
    return {"output": output, "attention_scores": scores}


def _head_size(derivation: Derived) -> int:
    """What the query is scaled by the inverse square root of: key_dim, or GroupQueryAttention's head_dim."""
    if isinstance(derivation, GQADerivation):
        return derivation.layer.head_dim
    assert isinstance(derivation, Derivation)
    return derivation.layer.key_dim


def contract(equation: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``np.einsum(equation, left, right)``, as one batched matrix product.

    np.einsum cannot hand axes that stay in the result and appear in both
    operands (the batch and heads of the dot product and combine steps) to
    BLAS; it loops over them in C: 1.5 s for a 48x48 image where Keras takes
    0.2 s (measured). Every einsum MultiHeadAttention uses has that form: each
    letter at most once per operand, and every letter in both operands or in
    the result. Anything else goes to np.einsum.
    """
    operands, result = equation.split("->")
    first, second = operands.split(",")
    repeated = len(set(first)) < len(first) or len(set(second)) < len(second)  # diagonals
    lone = (set(first) ^ set(second)) - set(result)  # summed within one operand
    if repeated or lone:
        general: np.ndarray = np.einsum(equation, left, right, optimize=True)
        return general
    size = dict(zip(first, left.shape, strict=True)) | dict(zip(second, right.shape, strict=True))
    batch = [letter for letter in result if letter in first and letter in second]
    summed = [letter for letter in first if letter in second and letter not in result]

    def own(letters: str, other: str) -> list[str]:
        return [letter for letter in letters if letter not in other]

    def arranged(operand: np.ndarray, letters: str, *groups: list[str]) -> np.ndarray:
        order = [letter for group in groups for letter in group]
        sizes = [math.prod(size[letter] for letter in group) for group in groups]
        return operand.transpose([letters.index(letter) for letter in order]).reshape(sizes)

    # The product's axes are batch, then a's own, then b's own. Swap the operands
    # when that puts the result's axes in place (the dot product's): elementwise
    # NumPy on a transposed view is several times slower, and the scores are the
    # largest tensor by far.
    (a, a_letters), (b, b_letters) = (left, first), (right, second)
    if batch + own(second, first) + own(first, second) == list(result):
        (a, a_letters), (b, b_letters) = (right, second), (left, first)
    a_own, b_own = own(a_letters, b_letters), own(b_letters, a_letters)
    letters = batch + a_own + b_own
    multiplied: np.ndarray = np.matmul(
        arranged(a, a_letters, batch, a_own, summed), arranged(b, b_letters, batch, summed, b_own)
    ).reshape([size[letter] for letter in letters])
    if letters == list(result):
        return multiplied
    return np.ascontiguousarray(multiplied.transpose([letters.index(letter) for letter in result]))


def _mask(derivation: Derived, arrays: dict[str, np.ndarray], rank: int) -> np.ndarray | None:
    """The boolean mask the scores see, built by the derivation's MaskPlan (not by Keras)."""
    plan = derivation.mask
    if plan is None:
        return None
    parts = []
    for name, shape in plan.sources:
        if name == "attention_mask":
            parts.append(arrays["attention_mask"] > 0.5)
            continue
        rows = np.arange(shape[1])[:, None]
        cols = np.arange(shape[2])[None, :]
        window = derivation.layer.sliding_window
        band = rows >= cols if name == "causal" else np.abs(rows - cols) < (window or 0)
        parts.append(band[None])
    mask = functools.reduce(np.logical_and, parts)
    while mask.ndim < rank:
        mask = np.expand_dims(mask, plan.heads_axis)
    return mask


def max_abs_diffs(derivation: Derived, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |Keras - NumPy| for the output and the attention scores."""
    ours = reexecute(derivation, arrays)
    diffs = {}
    for name in ("output", "attention_scores"):
        difference = np.subtract(ours[name], arrays[name], out=ours[name])  # in place, as above
        diffs[name] = float(np.abs(difference, out=difference).max()) if difference.size else 0.0
    return diffs


def fully_masked_rows(derivation: Derived, arrays: dict[str, np.ndarray]) -> int:
    """How many (item, head, query position) rows of the scores the mask leaves no key to attend to.

    Keras 3's softmax gives such a row zero weights; Keras 2's a flat 1/keys.
    """
    scores_rank = len(derivation.shapes["attention_scores"].shape)
    mask = _mask(derivation, arrays, scores_rank)
    if mask is None:
        return 0
    key_axes = tuple(range(-len(derivation.layer.attention_axes), 0))
    shape = arrays["attention_scores"].shape
    return int(np.count_nonzero(~np.broadcast_to(mask, shape).any(axis=key_axes)))
