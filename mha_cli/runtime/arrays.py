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


def fdeep_tests(arrays: Mapping[str, np.ndarray], inputs: Sequence[str]) -> dict[str, object]:
    """frugally-deep's test data for batch item 0, as its convert_model.py writes it under "tests":
    each tensor ``{"shape": shape without the batch axis, "values": base64 of its float32 bytes, in
    chunks of 1024 characters}`` (show_tensor, encode_floats; v0.20.0), inputs in the call's order."""
    import base64

    def shown(array: np.ndarray) -> dict[str, object]:
        item = np.ascontiguousarray(array[:1], dtype=np.float32)
        text = base64.b64encode(item.tobytes()).decode("ascii")
        return {
            "shape": list(item.shape[1:]),
            "values": [text[i : i + 1024] for i in range(0, len(text), 1024)],
        }

    return {"inputs": [shown(arrays[name]) for name in inputs], "outputs": [shown(arrays["output"])]}


def c_header(arrays: Mapping[str, np.ndarray], names: Sequence[str], guard: str) -> str:
    """Every named array as a C array for a keras2c-style C test: ``static const float NAME[] = {...};``
    (C order, float32, batch included), with ``NAME_shape[]``, ``NAME_rank`` and ``NAME_size``."""
    lines = [
        "/* Test vectors written by mha-explain: float32, C (row-major) order, batch axis first. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "#include <stddef.h>",
        "",
    ]
    for name in names:
        array = np.asarray(arrays[name], dtype=np.float32)
        symbol = "".join(c if c.isalnum() else "_" for c in name)
        values = ", ".join(_c_float(float(value)) for value in array.ravel())
        shape = ", ".join(str(size) for size in array.shape)
        lines += [
            f"static const size_t {symbol}_rank = {array.ndim};",
            f"static const size_t {symbol}_shape[] = {{{shape}}};",
            f"static const size_t {symbol}_size = {array.size};",
            f"static const float {symbol}[] = {{{values}}};",
            "",
        ]
    lines.append(f"#endif /* {guard} */")
    return "\n".join(lines) + "\n"


def hls4ml_dat(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> str:
    """hls4ml's testbench data (``tb_data/tb_input_features.dat``, ``tb_output_predictions.dat``): a
    line per batch item, the named arrays' values flattened in C order and concatenated in that order
    (the testbench copies each model input from its offset in the line), each value followed by a
    space, as hls4ml's own writer turns a float32 .npy into one (vivado_writer.py ``__make_dat_file``,
    ``str(value) + ' '``; v1.3.0)."""
    rows = np.concatenate(
        [np.asarray(arrays[name], dtype=np.float32).reshape(len(arrays[name]), -1) for name in names], axis=1
    )
    return "".join("".join(str(value) + " " for value in row) + "\n" for row in rows)


def _c_float(value: float) -> str:
    """A C float literal that reads back as the same float32: ``1.0f``, ``-0.125730217f``."""
    text = f"{value:.9g}"
    if not any(mark in text for mark in ".eE"):
        text += ".0"
    return f"{text}f"
