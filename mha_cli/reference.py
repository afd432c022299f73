"""Re-execute the derived einsums in NumPy (float64) with the layer's weights.

This is the proof that the equations we print are the computation Keras runs:
projections, scaling by 1/sqrt(key_dim), softmax over the attended key axes,
combine, optional gate, output projection. NumPy only; no Keras.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mha_cli.algebra import Derivation


def reexecute(derivation: Derivation, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The layer's forward pass from our equations; returns output and scores."""
    einsums = derivation.einsums

    def project(name: str, tensor: np.ndarray) -> np.ndarray:
        projected: np.ndarray = np.einsum(
            einsums[name].equation, tensor, arrays[f"{name}/kernel"], optimize=True
        )
        bias = arrays.get(f"{name}/bias")
        return projected if bias is None else projected + bias

    query = project("query", arrays["query"]) / math.sqrt(derivation.layer.key_dim)
    key = project("key", arrays["key"])
    value = project("value", arrays["value"])
    logits = np.einsum(einsums["dot_product"].equation, key, query, optimize=True)
    mask = _mask(derivation, arrays, logits.ndim)
    if mask is not None:  # as Keras's Softmax: masked logits to -1e9, masked weights to 0
        logits = np.where(mask, logits, -1e9)
    key_axes = tuple(range(-len(derivation.layer.attention_axes), 0))
    logits = logits - logits.max(axis=key_axes, keepdims=True)
    weights = np.exp(logits)
    scores = weights / weights.sum(axis=key_axes, keepdims=True)
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    attended = np.einsum(einsums["combine"].equation, scores, value, optimize=True)
    if derivation.layer.use_gate:
        attended = attended / (1.0 + np.exp(-project("gate", arrays["query"])))
    output = np.einsum(einsums["output"].equation, attended, arrays["attention_output/kernel"], optimize=True)
    bias = arrays.get("attention_output/bias")
    if bias is not None:
        output = output + bias
    return {"output": output, "attention_scores": scores}


def _mask(derivation: Derivation, arrays: dict[str, np.ndarray], rank: int) -> np.ndarray | None:
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


def max_abs_diffs(derivation: Derivation, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |Keras - NumPy| for the output and the attention scores."""
    ours = reexecute(derivation, arrays)
    return {
        name: float(np.max(np.abs(ours[name] - arrays[name]))) if arrays[name].size else 0.0
        for name in ("output", "attention_scores")
    }
