"""What a layer kind's algebra answers, as data: axes, tensors, einsums, weights, masks.

These types sit below every module that computes them (a kind's derivation,
masks, summary sentences), so none of those imports another back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mha_cli.core.config import DTYPE_BYTES, BatchShape, ExecutionPath, LayerArgs, MHAConfig, Role, Shape
from mha_cli.core.errors import InternalError
from mha_cli.core.grammar import format_shape


@dataclass(frozen=True)
class MaskPlan:
    """How the call's masks reach the attention scores, as Keras 3.15 does it.

    ``_compute_attention_mask`` ANDs a ``(1, T, S)`` causal and sliding-window
    mask, built from axis 1 of the query and the value, with the given
    ``attention_mask`` (NumPy broadcasting). ``_masked_softmax`` then inserts
    size-1 axes at ``heads_axis`` (-2 x attended axes - 1, just before the
    query's attended axes, where the heads sit) until the rank is the scores',
    and Softmax needs every axis to be 1 or the scores' size.
    """

    #: The attention_mask shape that needs no insertion: the scores' without heads.
    expected: tuple[int | None, ...]
    #: Where Keras inserts the missing axes (negative index into the mask).
    heads_axis: int
    #: (source, shape) for each mask: attention_mask, causal, sliding_window.
    sources: tuple[tuple[str, tuple[int, ...]], ...]
    #: The sources ANDed together (NumPy broadcasting).
    combined: tuple[int, ...]
    #: The combined mask after Keras's insertions: broadcasts to the scores.
    broadcast_to: tuple[int, ...]


@dataclass(frozen=True)
class Axis:
    """One axis of the inputs (query and key/value share rank and roles)."""

    index: int
    negative_index: int
    name: str
    role: Role
    query_size: int | None  # None for the batch axis
    key_size: int | None
    value_size: int | None


@dataclass(frozen=True)
class Tensor:
    """A named tensor: its shape (batch as None) and a name for every axis."""

    name: str
    shape: BatchShape
    labels: tuple[str, ...]

    def per_item_size(self) -> int:
        """Number of elements for one batch item."""
        return math.prod(size for size in self.shape if size is not None)

    def with_batch(self, batch: int) -> tuple[int, ...]:
        """The concrete shape with ``batch`` in place of the batch axis's None."""
        return tuple(batch if size is None else size for size in self.shape)

    def describe(self) -> str:
        return f"{format_shape(self.shape)} ({', '.join(self.labels)})"


@dataclass(frozen=True)
class Einsum:
    """One einsum the layer runs, with its operands and a letter legend."""

    name: str
    equation: str
    operands: tuple[Tensor, ...]
    result: Tensor
    #: letter -> (axis name, size); size None for the batch letter.
    legend: tuple[tuple[str, str, int | None], ...]

    def flops_per_item(self) -> int:
        """2 x (multiply-adds) for one batch item: 2 x product of all letter sizes."""
        return 2 * math.prod(size for _, _, size in self.legend if size is not None)


@dataclass(frozen=True)
class Weight:
    """The kernel and (optional) bias of one projection."""

    projection: str  # query, key, value, gate, attention_output
    kernel: Shape
    bias: Shape | None

    @property
    def params(self) -> int:
        return math.prod(self.kernel) + (math.prod(self.bias) if self.bias is not None else 0)


class CallConfig(Protocol):
    """What every kind's configuration says about the inputs and the call (shapes without batch)."""

    @property
    def query_shape(self) -> Shape: ...
    @property
    def value_shape(self) -> Shape | None: ...
    @property
    def key_shape(self) -> Shape | None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def batch(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def mask_shape(self) -> tuple[int | None, ...] | None: ...
    @property
    def causal(self) -> bool: ...
    @property
    def sliding_window(self) -> int | None: ...
    @property
    def keras(self) -> int: ...


class LayerSettings(Protocol):
    """What every kind's resolved layer arguments say beyond its own sizes."""

    @property
    def dtype(self) -> str: ...
    @property
    def dropout(self) -> float: ...
    @property
    def use_bias(self) -> bool: ...
    @property
    def use_gate(self) -> bool: ...
    @property
    def sliding_window(self) -> int | None: ...
    @property
    def attention_axes(self) -> tuple[int, ...]: ...
    @property
    def defaulted(self) -> frozenset[str]: ...


@runtime_checkable
class Derived(Protocol):
    """What a layer kind's algebra says about one configuration (:mod:`mha_cli.core.kinds`).

    Renderers, the JSON documents, the runtime and the checks read a derivation through this.
    """

    @property
    def kind(self) -> str: ...
    @property
    def config(self) -> CallConfig: ...
    @property
    def layer(self) -> LayerSettings: ...
    @property
    def axes(self) -> tuple[Axis, ...]: ...
    @property
    def inputs(self) -> dict[str, Tensor]: ...
    @property
    def shapes(self) -> dict[str, Tensor]: ...
    @property
    def einsums(self) -> dict[str, Einsum]: ...
    @property
    def weights(self) -> tuple[Weight, ...]: ...
    @property
    def mask(self) -> MaskPlan | None: ...
    @property
    def summary(self) -> tuple[str, ...]: ...
    @property
    def execution_path(self) -> ExecutionPath: ...
    @property
    def rank(self) -> int: ...
    @property
    def params(self) -> int: ...
    @property
    def flops_per_item(self) -> int: ...
    @property
    def equations(self) -> dict[str, str]: ...
    @property
    def weights_per_query(self) -> int:
        """Attention weights one query position gets, per head."""
        ...

    @property
    def heads_attended(self) -> bool:
        """Attention runs over the heads (MultiHeadAttention's attention_axes can ask for it)."""
        ...

    def bytes_per_item(self, tensor: Tensor) -> int: ...
    def scores_bytes_per_item(self) -> int: ...
    def weights_bytes(self) -> int: ...
    def forward_pass_bytes(self) -> int: ...


class Costs:
    """What every kind's derivation sums the same way from its tensors, einsums and weights."""

    @property
    def rank(self: Derived) -> int:
        """Input rank, counting the batch axis."""
        return len(self.axes)

    @property
    def params(self: Derived) -> int:
        return sum(weight.params for weight in self.weights)

    @property
    def flops_per_item(self: Derived) -> int:
        return sum(einsum.flops_per_item() for einsum in self.einsums.values())

    @property
    def equations(self: Derived) -> dict[str, str]:
        return {name: einsum.equation for name, einsum in self.einsums.items()}

    def bytes_per_item(self: Derived, tensor: Tensor) -> int:
        """Bytes of ``tensor`` for one batch item, in the layer's dtype."""
        return tensor.per_item_size() * DTYPE_BYTES[self.layer.dtype]

    def scores_bytes_per_item(self: Derived) -> int:
        return self.bytes_per_item(self.shapes["attention_scores"])

    def weights_bytes(self: Derived) -> int:
        """Memory the weights take when the layer is built and seeded.

        Each parameter in the layer dtype, as the float64 values drawn for it,
        and as the float64 copy the NumPy check reads.
        """
        return self.params * (DTYPE_BYTES[self.layer.dtype] + 2 * 8)

    def forward_pass_bytes(self: Derived) -> int:
        """Rough peak memory of a verified forward pass at the configured batch.

        The weights, and every tensor once in the layer dtype and twice in
        float64 (our NumPy copy and reference), plus two more score-sized
        buffers on each side (logits and exp before the softmax).
        """
        itemsize = DTYPE_BYTES[self.layer.dtype]
        tensors = sum(t.per_item_size() for t in (*self.inputs.values(), *self.shapes.values()))
        scores = self.shapes["attention_scores"].per_item_size()
        activations = (tensors + 2 * scores) * itemsize + (2 * tensors + 2 * scores) * 8
        return self.weights_bytes() + self.config.batch * activations


@dataclass(frozen=True)
class Derivation(Costs):
    """Everything the shape algebra says about one MultiHeadAttention configuration."""

    config: MHAConfig
    layer: LayerArgs
    axes: tuple[Axis, ...]
    inputs: dict[str, Tensor]  # query, key, value
    shapes: dict[str, Tensor]  # query_projected, ..., attention_scores, attention_output, output
    einsums: dict[str, Einsum]  # query, key, value, [gate], dot_product, combine, output
    weights: tuple[Weight, ...]
    #: How the call's masks reach the scores (None: no mask given).
    mask: MaskPlan | None = None
    #: Plain sentences explaining the configuration (see summarize()).
    summary: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        """The layer kind this derivation is of (:data:`mha_cli.core.kinds.KINDS`)."""
        return "mha"

    @property
    def heads_attended(self) -> bool:
        """attention_axes holds the projected query's heads axis (rank - 1, where the input has its
        features): Keras then attends over the heads instead of within each."""
        return self.rank - 1 in self.layer.attention_axes

    @property
    def attended_axes(self) -> tuple[Axis, ...]:
        """The input axes attention runs along (the heads, when attended, are no input axis)."""
        by_index = {axis.index: axis for axis in self.axes}
        return tuple(by_index[i] for i in self.layer.attention_axes if i != self.rank - 1)

    @property
    def free_axes(self) -> tuple[Axis, ...]:
        return tuple(axis for axis in self.axes if axis.role is Role.FREE)

    @property
    def weights_per_query(self) -> int:
        """Attention weights one query position gets, per head (over every head, when attended)."""
        heads = self.layer.num_heads if self.heads_attended else 1
        return heads * math.prod(axis.key_size or 0 for axis in self.attended_axes)

    @property
    def execution_path(self) -> ExecutionPath:
        """The path Keras takes when called *without* return_attention_scores.

        ``fused``: ``ops.dot_product_attention``, which Keras takes for rank-3
        inputs (projected rank 4) with dropout 0; whether it materialises the
        scores is the backend kernel's business (TensorFlow's CPU kernel does:
        +532 MiB for a 4096-token input, as the call with scores). ``einsum``:
        the explicit einsum + softmax path, which always does (Keras 3.15
        ``MultiHeadAttention._compute_attention``). Requesting the scores always
        takes the einsum path.
        """
        if self.config.keras == 2:  # Keras 2 has only the einsum path (tf_keras 2.21)
            return ExecutionPath.EINSUM
        fused = self.rank == 3 and self.layer.dropout == 0.0
        return ExecutionPath.FUSED if fused else ExecutionPath.EINSUM


def bind_einsum(name: str, equation: str, operands: tuple[Tensor, ...], result: Tensor) -> Einsum:
    """Bind ``equation`` to its tensors; build the legend and check consistency.

    A letter must name the same axis (up to the _q/_k side suffix) and size in
    every term it appears in: anything else is a bug in this module.
    """
    inputs_part, result_part = equation.split("->")
    terms = [*zip(inputs_part.split(","), operands, strict=True), (result_part, result)]
    legend: dict[str, tuple[str, int | None]] = {}
    for letters, tensor in terms:
        if len(letters) != len(tensor.shape):
            raise InternalError(
                f"{name}: {letters!r} does not fit {tensor.name} {format_shape(tensor.shape)}"
            )
        for letter, label, size in zip(letters, tensor.labels, tensor.shape, strict=True):
            base = _base_label(label)
            seen = legend.setdefault(letter, (label, size))
            if _base_label(seen[0]) != base or seen[1] != size:
                raise InternalError(f"{name}: letter {letter!r} is both {seen} and {(label, size)}")
    return Einsum(
        name=name,
        equation=equation,
        operands=operands,
        result=result,
        legend=tuple((letter, label, size) for letter, (label, size) in sorted(legend.items())),
    )


def _base_label(label: str) -> str:
    return label[:-2] if label.endswith(("_q", "_k")) else label
