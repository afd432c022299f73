"""What can be read of an attention layer mha-explain does not explain, from its own projections.

KerasHub's LlamaAttention, CachedMistralAttention and CachedGemmaAttention (and a user's own
classes) are plain layers with EinsumDense projections of their own. Their heads are read here from
those projections' equations and kernels as built, never from the class's name, and held against
the tensor the traced call attended with (its softmax's input, or the query it gave
``ops.dot_product_attention``). Pure: no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mha_cli.core.config import DTYPE_BYTES

__all__ = [
    "NO_PROJECTIONS",
    "ROLE_NAMES",
    "Heads",
    "OtherCheck",
    "Projection",
    "Step",
    "Verdict",
    "read_heads",
]

#: The names Keras and KerasHub give a layer's query, key and value projections.
ROLE_NAMES = {
    "query": ("query", "query_dense", "q_proj"),
    "key": ("key", "key_dense", "k_proj"),
    "value": ("value", "value_dense", "v_proj"),
}


#: Why a layer without projections of its own (keras.layers.Attention) has no heads to read.
NO_PROJECTIONS = "none: it has no projections of its own, so it attends over its inputs as given"


@dataclass(frozen=True)
class Projection:
    """A Dense or EinsumDense layer an attention layer holds itself, as built."""

    name: str
    class_name: str
    #: EinsumDense's equation (None for Dense: ``...i,ij->...j``).
    equation: str | None
    kernel: tuple[int, ...]


@dataclass(frozen=True)
class Heads:
    """Heads read from a layer's query, key and value kernels, and agreeing with its traced call."""

    query_heads: int
    key_value_heads: int
    head_dim: int
    #: The query kernel holds its heads on its first axis (Gemma's ``btd,ndh->btnh``).
    heads_first: bool
    #: How the traced call agrees: ``its scores (None, 4, 8, 8) have 4 heads``.
    agreement: str

    def kv_cache_bytes_per_token(self, dtype: str) -> int:
        """A key and a value per key/value head, for each token a decoder caches."""
        return 2 * self.key_value_heads * self.head_dim * DTYPE_BYTES.get(dtype, 4)


def per_head(projection: Projection) -> tuple[int, int, bool] | None:
    """(heads, head size, heads first) of a projection onto heads: an EinsumDense whose kernel adds
    two axes to its output (``bqm,muh->bquh``: u heads of h), in the output's order; else None."""
    if not projection.equation or projection.equation.count("->") != 1:
        return None
    operands, result = projection.equation.replace(" ", "").split("->")
    if operands.count(",") != 1:
        return None
    given, kernel = operands.split(",")
    if len(kernel) != len(projection.kernel) or "." in kernel:
        return None
    added = [letter for letter in result if letter in kernel and letter not in given]
    if len(added) != 2:
        return None
    sizes = dict(zip(kernel, projection.kernel, strict=True))
    heads, size = added
    return sizes[heads], sizes[size], kernel[0] == heads


def read_heads(projections: tuple[Projection, ...], ran: str, traced: tuple[int | None, ...]) -> Heads | str:
    """The heads of the layer whose projections these are, or why they are not read.

    ``ran`` is what its call attended with (``softmax`` or ``dot_product_attention``) and
    ``traced`` that tensor's shape (the softmax's input, or the query it gave
    ``ops.dot_product_attention``), which the kernels must agree with.
    """
    if not projections:
        return NO_PROJECTIONS
    by_role: dict[str, tuple[int, int, bool]] = {}
    for role, names in ROLE_NAMES.items():
        named = [p for p in projections if p.name in names]
        if len(named) != 1:
            return "not read: its projections are not one each named query, key and value"
        reading = per_head(named[0])
        if reading is None:
            shown = named[0].equation or "Dense"
            return f"not read: its {role} projection ({shown}) does not project onto heads"
        by_role[role] = reading
    (heads, head_dim, first), (kv_heads, key_dim, _), (value_heads, value_dim, _) = (
        by_role["query"],
        by_role["key"],
        by_role["value"],
    )
    if kv_heads != value_heads or key_dim != head_dim or value_dim != head_dim or heads % kv_heads:
        return (
            f"not read: query {heads} x {head_dim}, key {kv_heads} x {key_dim} and value {value_heads} x "
            f"{value_dim} are not grouped-query heads"
        )
    shown = "(" + ", ".join("None" if size is None else str(size) for size in traced) + ")"
    if ran == "dot_product_attention" and len(traced) == 4:
        agrees = traced[2] == heads and traced[3] == head_dim
        agreement = f"the query it attended with, {shown}, has {traced[2]} heads of {traced[3]}"
    elif ran == "softmax" and len(traced) == 4:
        agrees = traced[1] == heads
        agreement = f"its scores {shown} have {traced[1]} heads"
    elif ran == "softmax" and len(traced) == 5:  # grouped: (batch, key/value heads, group, T, S)
        agrees = traced[1] == kv_heads and traced[1] is not None and traced[2] == heads // kv_heads
        agreement = f"its scores {shown} have {traced[1]} key/value heads of {traced[2]} query heads each"
    else:
        return (
            f"not read: its kernels say {heads} query heads, and its scores {shown} have no heads axis "
            "to agree"
        )
    if not agrees:
        return (
            f"not read: its kernels say {heads} query heads of {head_dim} ({kv_heads} key/value), but "
            f"{agreement}"
        )
    return Heads(heads, kv_heads, head_dim, first, agreement)


class Verdict(StrEnum):
    """What the real pass showed of a call scan does not explain."""

    #: An independent NumPy re-execution of grouped-query attention on the query, key and value its
    #: attention received reproduced the layer's output.
    VERIFIED = "verified"
    #: The re-execution ran and did not reproduce it: the layer computes something else.
    NOT_REPRODUCED = "not reproduced"
    #: Nothing was re-executed; the detail says why.
    NOT_VERIFIED = "not verified"


@dataclass(frozen=True)
class Step:
    """One comparison of the re-execution: ours against what the layer computed, relative to the
    largest value the layer's side holds (so that the tiny logits of fresh weights count)."""

    what: str
    max_abs_diff: float
    relative: float


@dataclass(frozen=True)
class OtherCheck:
    """The real pass's verdict on one call of attention scan does not explain."""

    verdict: Verdict
    #: One line: what was reproduced, or why not.
    detail: str
    steps: tuple[Step, ...] = ()
    #: The largest relative difference allowed at every step (by the layer's dtype).
    tolerance: float | None = None
    #: What was seen of its query and key between their projections and the attention (rotated with
    #: every head vector's norm kept: a rotary embedding), or None where not compared.
    rotary: str | None = None
    #: The scale its logits carry (its own ``scale`` argument, or fitted) and the soft cap applied.
    scale: float | None = None
    soft_cap: float | None = None
    #: The mask its attention received, in words (shape, causal, sliding window), or None.
    mask: str | None = None
    #: Its sublayers that ran in its call, other than its projections, as ``name (Class)``.
    sublayers: tuple[str, ...] = ()
    #: Whether a real pass ran (False: the memory guard or unknown sizes kept it from running).
    ran: bool = True
    #: The query, key and value its attention received, as read from the real pass, each shape in
    #: (batch, positions, heads, head_dim) order whatever the layer's own layout; empty where none was read.
    received: tuple[tuple[str, tuple[int, ...]], ...] = ()
