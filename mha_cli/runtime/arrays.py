"""NumPy for the operations: differences between arrays, and the key grid a query position attends to.

The operations import this module inside the functions that handle arrays, so
``--no-run`` and ``--help`` never import NumPy.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np


def max_abs_diff(left: np.ndarray, right: np.ndarray) -> float:
    """The largest |difference| between two arrays of one shape (0.0 when they are empty)."""
    return float(np.max(np.abs(left - right), initial=0.0))


def same_arrays(left: Mapping[str, np.ndarray], right: Mapping[str, np.ndarray]) -> bool:
    """The same names, each holding an equal array."""
    return left.keys() == right.keys() and all(np.array_equal(left[name], right[name]) for name in left)


def attended_grid(
    scores: np.ndarray,
    position: Sequence[int],
    free: Sequence[int],
    attended: Sequence[int],
    key_grid: tuple[int, ...],
) -> np.ndarray:
    """True where the query at ``position`` gives a key position a non-zero weight (item 0, head 0).

    ``scores`` is the layer's ``(batch, *free, heads, *query attended, *key
    attended)`` tensor; ``position`` has one index per axis between batch and
    features, of which ``free`` and ``attended`` (in the layer's order) are
    indices. The weights are scattered into the key grid within the query's
    own free slice: free axes are independent, like extra batch axes.
    """
    row = scores[0][tuple(position[i] for i in free)][0][tuple(position[i] for i in attended)]
    grid = np.zeros(key_grid, dtype=bool)
    own_slice: list[slice | int] = [slice(None)] * len(key_grid)
    for i in free:
        own_slice[i] = position[i]
    order = sorted(range(len(attended)), key=lambda n: attended[n])
    grid[tuple(own_slice)] = np.transpose(row > 0.0, order)
    return grid


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as an uncompressed ``.npz`` file's bytes (names may hold ``/``: Keras variable paths)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def item_as_base64(scores: np.ndarray) -> tuple[str, tuple[int, ...]]:
    """Batch item 0 of ``scores`` as little-endian float32 bytes in base64 (the heatmap page's data),
    and that item's shape."""
    import base64

    item = np.ascontiguousarray(scores[0], dtype="<f4")
    return base64.b64encode(item.tobytes()).decode("ascii"), tuple(int(size) for size in item.shape)
