"""MultiHeadAttention without einsum: matmul, transpose and reshape, to follow line by line.

Written by ``mha-explain vectors --reference`` beside ``vectors.npz`` and ``manifest.json`` as
``reference.py``; run ``python reference.py DIR`` (NumPy only). It recomputes the layer's output and
scores from the inputs and weights in DIR and prints its max |difference| from the ones Keras
recorded there; exit 1 above the manifest's tolerance.

The steps, as a runtime without einsum would do them:

1. Each projection is one matmul: the input's features (D) against the kernel flattened to
   (D, heads * head_dim), plus the bias, then reshaped to (..., heads, head_dim).
2. Several attended axes fold into one sequence axis (Sony MCT's trick): the projected tensor is
   transposed to (batch, free axes..., heads, attended axes..., head_dim) and reshaped to
   (batch * free * heads, positions, head_dim). Rank-3 attention over axis 1 is the case of no free
   axis and one attended axis.
3. Per (batch, free slice, head): scores = q @ k^T / sqrt(key_dim); the mask Keras applied blocks
   logits (-1e9) and zeroes their weights; softmax over the key positions; output = weights @ v.
4. Unfold, transpose back to the input's axes, and the output projection is one matmul of
   (heads * value_dim) against the kernel flattened to (heads * value_dim, output features).

Covers MultiHeadAttention without use_gate (the vectors' manifest says which layer they are).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _weight(arrays: dict[str, np.ndarray], projection: str, part: str) -> np.ndarray | None:
    """``.../query/kernel`` by its last two path parts (the layer's own name comes first)."""
    for name, array in arrays.items():
        if name.endswith(f"{projection}/{part}"):
            return array.astype(np.float64)
    return None


def _project(x: np.ndarray, arrays: dict[str, np.ndarray], projection: str) -> np.ndarray:
    """Step 1: (batch, ..., D) -> (batch, ..., heads, head_dim), one matmul."""
    kernel = _weight(arrays, projection, "kernel")
    assert kernel is not None, f"no {projection}/kernel in the vectors"
    features, heads, size = kernel.shape
    flat = x.reshape(-1, features) @ kernel.reshape(features, heads * size)
    projected: np.ndarray = flat.reshape(*x.shape[:-1], heads, size)
    bias = _weight(arrays, projection, "bias")
    return projected if bias is None else projected + bias


def _fold(t: np.ndarray, attended: list[int], free: list[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Step 2: (batch, axes..., heads, dim) -> (batch*free*heads, positions, dim); and the shape between."""
    rank = t.ndim  # batch, the input's position axes, heads, head_dim
    heads = rank - 2
    order = [0, *free, heads, *attended, rank - 1]
    moved = t.transpose(order)
    groups = int(np.prod(moved.shape[: 2 + len(free)]))
    positions = int(np.prod([t.shape[axis] for axis in attended]))
    return moved.reshape(groups, positions, t.shape[-1]), moved.shape


def reference(arrays: dict[str, np.ndarray], manifest: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """The layer's output and attention scores, recomputed without einsum."""
    layer = manifest["layer"]
    assert isinstance(layer, dict)
    config = layer["config"]
    if config.get("use_gate"):
        raise SystemExit("reference.py: use_gate is not covered; the manifest's layer uses it")
    query = arrays["query"].astype(np.float64)
    value = arrays["value"].astype(np.float64)
    key = arrays["key"].astype(np.float64)
    rank = query.ndim
    attended = [int(axis) for axis in layer["resolved_attention_axes"]]
    free = [axis for axis in range(1, rank - 1) if axis not in attended]
    q, k, v = _project(query, arrays, "query"), _project(key, arrays, "key"), _project(value, arrays, "value")
    key_dim = q.shape[-1]
    q_folded, q_moved = _fold(q, attended, free)
    k_folded, k_moved = _fold(k, attended, free)
    v_folded, _ = _fold(v, attended, free)
    logits = (q_folded / np.sqrt(key_dim)) @ k_folded.transpose(0, 2, 1)  # step 3
    # The scores' axes, as Keras lays them out: batch, free axes, heads, query positions, key positions.
    scores_shape = (*q_moved[:-1], *k_moved[2 + len(free) : -1])
    mask = arrays.get("softmax_mask")
    allowed = None
    if mask is not None:  # the mask the softmax applied: size-1 axes go in where Keras puts them (just
        # before the query's attended axes, where the heads are), then it broadcasts and folds alike
        with_heads = mask.astype(bool)
        while with_heads.ndim < len(scores_shape):
            with_heads = np.expand_dims(with_heads, -2 * len(attended) - 1)
        allowed = np.broadcast_to(with_heads, scores_shape).reshape(logits.shape)
        logits = np.where(allowed, logits, -1e9)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    if allowed is not None:
        weights = np.where(allowed, weights, 0.0)
    combined = weights @ v_folded  # (batch*free*heads, query positions, value_dim)
    # Step 4: unfold to (batch, free..., heads, attended..., value_dim), then the input's axis order.
    unfolded = combined.reshape(*q_moved[: 2 + len(free)], *[query.shape[axis] for axis in attended], -1)
    order = [0, *free, rank - 1, *attended, rank]  # where each input axis went in the fold
    back = np.argsort(order)
    attended_output = unfolded.transpose(back)  # (batch, position axes..., heads, value_dim)
    kernel = _weight(arrays, "attention_output", "kernel")
    assert kernel is not None, "no attention_output/kernel in the vectors"
    heads, value_dim = kernel.shape[:2]
    outputs = kernel.shape[2:]
    flat = attended_output.reshape(-1, heads * value_dim) @ kernel.reshape(heads * value_dim, -1)
    output = flat.reshape(*attended_output.shape[:-2], *outputs)
    bias = _weight(arrays, "attention_output", "bias")
    return (output if bias is None else output + bias), weights.reshape(scores_shape)


def main(folder: str) -> int:
    where = Path(folder)
    manifest = json.loads((where / "manifest.json").read_text(encoding="utf-8"))
    with np.load(where / "vectors.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    output, scores = reference(arrays, manifest)
    tolerance = float(manifest["tolerance"])
    worst = 0.0
    for name, ours in (("output", output), ("attention_scores", scores)):
        difference = float(np.abs(ours - arrays[name].astype(np.float64)).max())
        worst = max(worst, difference)
        print(f"{name}: max |diff| {difference:.1e} from Keras's (tolerance {tolerance:.0e})")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
