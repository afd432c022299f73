"""Attention's and AdditiveAttention's forward pass in NumPy float64, from their formulas (core/dense.py).

Written from what the layers compute, not from their code: the scores (dot, concat or additive), the
value mask and the causal mask as a penalty on the blocked scores, the softmax over the key positions,
the weighted sum of the values, and the query mask zeroing output rows. NumPy only; no Keras.
"""

from __future__ import annotations

import numpy as np

from mha_cli.core.dense import DEFAULT_MASK_PENALTY, MASK_PENALTY, DenseDerivation


def reexecute_dense(d: DenseDerivation, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Output and attention scores from the inputs, masks and weights the real layer was given."""
    query, key, value = arrays["query"], arrays["key"], arrays["value"]
    if d.score_mode == "dot":
        scores = np.matmul(query, np.swapaxes(key, -1, -2))
        if d.use_scale:
            scores = scores * arrays["scale"]
    else:
        summed = query[:, :, None, :] + key[:, None, :, :]  # (B, Tq, Tv, features)
        if d.score_mode == "concat":
            inner = np.tanh(arrays["scale"] * summed) if d.use_scale else np.tanh(summed)
            scores = arrays["concat_score_weight"] * inner.sum(axis=-1)
        else:
            scaled = arrays["scale"] * np.tanh(summed) if d.use_scale else np.tanh(summed)
            scores = scaled.sum(axis=-1)
    allowed = blocked_scores(d, arrays)
    if allowed is not None:  # the subtraction in the layer's dtype: float32 rounds scores - 1e9 to -1e9
        dtype = np.float32 if d.config.dtype == "bfloat16" else np.dtype(d.config.dtype).type
        penalty = dtype(MASK_PENALTY.get(d.config.dtype, DEFAULT_MASK_PENALTY))
        scores = np.where(allowed, scores, (scores.astype(dtype) - penalty).astype(np.float64))
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    output = np.matmul(weights, value)
    if "query_mask" in arrays:
        output = np.where(arrays["query_mask"][:, :, None], output, 0.0)
    return {"output": output, "attention_scores": weights}


def blocked_scores(d: DenseDerivation, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """Which (item, query, key) scores count (True), from the value mask and the causal rule; None: all."""
    tq, tv = d.inputs["query"].shape[1] or 0, d.inputs["value"].shape[1] or 0
    parts = []
    if "value_mask" in arrays:
        parts.append(arrays["value_mask"][:, None, :])
    if d.config.causal:
        parts.append((np.arange(tq)[:, None] >= np.arange(tv)[None, :])[None])
    if not parts:
        return None
    return np.logical_and.reduce(np.broadcast_arrays(*parts)) if len(parts) > 1 else parts[0]
