"""The shape algebra of keras.layers.MultiHeadAttention, without Keras.

Given input shapes and the layer's arguments this module derives what the real
layer does: the role of every input axis, the einsum equations (the same
strings, built the same way as ``keras/src/layers/attention/
multi_head_attention.py`` in Keras 3.12+), every intermediate shape, the
weights and the costs. It imports nothing beyond the standard library, so
answers that need no forward pass are instant, and the derivation can be
checked against the real layer (see :mod:`mha_cli.explain`).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mha_cli.errors import ConfigError, InternalError
from mha_cli.parsing import format_shape

Shape = tuple[int, ...]
#: A shape as Keras reports it: ``None`` for the batch axis.
BatchShape = tuple[int | None, ...]

# Keras names einsum axes with ascii_lowercase (`_index_to_einsum_variable`).
_LETTERS = string.ascii_lowercase

#: Tool defaults for the two arguments Keras requires. Two heads, as in the
#: forum answer this tool grew from; key_dim follows the Transformer convention
#: num_heads * key_dim == query features, so projections keep the width.
DEFAULT_NUM_HEADS = 2

DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
DTYPES = tuple(DTYPE_BYTES)
#: Keras's defaults for the layer arguments MHAConfig always fills in.
KERAS_DEFAULTS: dict[str, object] = {"dropout": 0.0, "use_bias": True, "use_gate": False, "dtype": "float32"}
#: Keras backends, here so the CLI can list them without importing the adapter.
BACKENDS = ("tensorflow", "jax", "torch", "numpy")
_RESERVED_NAMES = frozenset({"batch", "heads", "feature", "key_dim", "value_dim", "out"})
_DEFAULT_AXIS_NAMES: dict[int, tuple[str, ...]] = {
    1: ("seq",),
    2: ("height", "width"),
    3: ("depth", "height", "width"),
    4: ("time", "depth", "height", "width"),
}


class Role(StrEnum):
    """What the layer does with an input axis."""

    BATCH = "batch"
    ATTENDED = "attended"  # attention runs along it
    FREE = "free"  # each slice along it attends independently
    FEATURE = "feature"  # projected away


@dataclass(frozen=True)
class MHAConfig:
    """One MultiHeadAttention configuration, as a user states it.

    Shapes exclude the batch axis, like ``keras.Input(shape=...)``. ``None``
    means "not given": self-attention for the shapes, the tool's or Keras's
    default for the rest.
    """

    query_shape: Shape
    value_shape: Shape | None = None
    key_shape: Shape | None = None
    num_heads: int | None = None
    key_dim: int | None = None
    value_dim: int | None = None
    output_shape: Shape | None = None
    attention_axes: tuple[int, ...] | None = None
    use_bias: bool = True
    use_gate: bool = False
    dropout: float = 0.0
    dtype: str = "float32"
    batch: int = 2
    seed: int = 0
    axis_names: tuple[str, ...] | None = None
    #: The call's attention_mask shape, batch included (None there means --batch); None: no mask.
    mask_shape: tuple[int | None, ...] | None = None
    #: use_causal_mask=True in the call.
    causal: bool = False
    #: The layer's sliding_window argument (Keras >= 3.15).
    sliding_window: int | None = None


@dataclass(frozen=True)
class LayerArgs:
    """The layer's shape-relevant constructor arguments, resolved."""

    num_heads: int
    key_dim: int
    value_dim: int
    dropout: float
    use_bias: bool
    output_shape: Shape | None
    attention_axes: tuple[int, ...]  # resolved: positive input axes, in the given order
    use_gate: bool
    dtype: str
    sliding_window: int | None = None
    #: Arguments the user did not give, so a default was used.
    defaulted: frozenset[str] = frozenset()

    def keras_kwargs(self, given_axes: tuple[int, ...] | None) -> dict[str, object]:
        """Constructor kwargs for ``keras.layers.MultiHeadAttention``.

        ``given_axes`` is what the user wrote (``None``, negatives...), so the
        real layer resolves it itself and the check compares its resolution
        with ours.
        """
        kwargs: dict[str, object] = {
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": self.output_shape,
            "attention_axes": given_axes,
            "dtype": self.dtype,
        }
        if self.use_gate:  # only Keras >= 3.14 knows the argument
            kwargs["use_gate"] = True
        if self.sliding_window is not None:  # only Keras >= 3.15 knows the argument
            kwargs["sliding_window"] = self.sliding_window
        return kwargs


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


@dataclass(frozen=True)
class Derivation:
    """Everything the shape algebra says about one configuration."""

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
    def rank(self) -> int:
        """Input rank, counting the batch axis."""
        return len(self.axes)

    @property
    def attended_axes(self) -> tuple[Axis, ...]:
        by_index = {axis.index: axis for axis in self.axes}
        return tuple(by_index[i] for i in self.layer.attention_axes)

    @property
    def free_axes(self) -> tuple[Axis, ...]:
        return tuple(axis for axis in self.axes if axis.role is Role.FREE)

    @property
    def params(self) -> int:
        return sum(weight.params for weight in self.weights)

    @property
    def weights_per_query(self) -> int:
        """Attention weights one query position gets, per head."""
        return math.prod(axis.key_size or 0 for axis in self.attended_axes)

    @property
    def flops_per_item(self) -> int:
        return sum(einsum.flops_per_item() for einsum in self.einsums.values())

    @property
    def execution_path(self) -> str:
        """The path Keras takes when called *without* return_attention_scores.

        ``fused``: ``ops.dot_product_attention``, which never materialises the
        scores; Keras takes it for rank-3 inputs (projected rank 4) with dropout
        0. ``einsum``: the explicit einsum + softmax path, which does
        (Keras 3.15 ``MultiHeadAttention._compute_attention``). Requesting the
        scores always takes the einsum path.
        """
        return "fused" if self.rank == 3 and self.layer.dropout == 0.0 else "einsum"

    def bytes_per_item(self, tensor: Tensor) -> int:
        """Bytes of ``tensor`` for one batch item, in the layer's dtype."""
        return tensor.per_item_size() * DTYPE_BYTES[self.layer.dtype]

    def scores_bytes_per_item(self) -> int:
        return self.bytes_per_item(self.shapes["attention_scores"])

    def weights_bytes(self) -> int:
        """Memory the weights take when the layer is built and seeded.

        Each parameter in the layer dtype, as the float64 values drawn for it,
        and as the float64 copy the NumPy check reads.
        """
        return self.params * (DTYPE_BYTES[self.layer.dtype] + 2 * 8)

    def forward_pass_bytes(self) -> int:
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

    @property
    def equations(self) -> dict[str, str]:
        return {name: einsum.equation for name, einsum in self.einsums.items()}


# --- Keras's equation builders, mirrored -------------------------------------


def projection_equation(free_dims: int, bound_dims: int, output_dims: int) -> str:
    """Keras's ``_build_proj_equation``: ``abcd,def->abcef`` for (3, 1, 2)."""
    letters = _LETTERS[: free_dims + bound_dims + output_dims]
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims :]
    return f"{free}{bound},{bound}{out}->{free}{out}"


def attention_equations(rank: int, attended: tuple[int, ...]) -> tuple[str, str]:
    """Keras's ``_build_attention_equation`` for projected ``rank``.

    Returns (dot_product, combine). The dot product takes (key, query): the key
    gets fresh letters on the attended axes; batch, free and heads axes keep
    the query's letters and lead the scores, then the query's attended
    letters, then the key's.
    """
    target = _LETTERS[:rank]
    batch_like = [i for i in range(rank) if i not in attended and i != rank - 1]
    fresh = iter(_LETTERS[rank:])
    source = "".join(next(fresh) if i in attended else target[i] for i in range(rank))
    product = (
        "".join(target[i] for i in batch_like)
        + "".join(target[i] for i in attended)
        + "".join(source[i] for i in attended)
    )
    return f"{source},{target}->{product}", f"{product},{source}->{target}"


# --- Validation --------------------------------------------------------------


def _check_shape(option: str, shape: Shape) -> None:
    if len(shape) < 2:
        raise ConfigError(
            option,
            format_shape(shape),
            f"rank {len(shape) + 1} with the batch axis; MultiHeadAttention needs rank >= 3 "
            "(batch, at least one attention axis, features), e.g. 10,16",
        )
    for size in shape:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(option, format_shape(shape), f"size {size!r} is not a positive integer")


def _positive(option: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(option, value, "must be a positive integer")


def _resolve_axes(given: tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    """Keras's resolution (3.12+): None -> 1..rank-2; negative a -> rank + a."""
    if given is None:
        return tuple(range(1, rank - 1))
    shown = format_shape(given)
    if not given:
        raise ConfigError("--axes", "()", "no axes given; write e.g. 1 or 1,2, or none for all axes")
    legal = f"attention axes must be in 1..{rank - 2} (or {-(rank - 1)}..-2)"
    resolved = []
    for axis in given:
        if not -rank <= axis < rank:
            raise ConfigError(
                "--axes", shown, f"axis {axis} is out of range for a rank-{rank} input; {legal}"
            )
        positive = axis + rank if axis < 0 else axis
        if positive == 0:
            raise ConfigError("--axes", shown, f"axis {axis} is the batch axis; {legal}")
        if positive == rank - 1:
            raise ConfigError(
                "--axes", shown, f"axis {axis} is the feature axis of a rank-{rank} input; {legal}"
            )
        if positive in resolved:
            raise ConfigError(
                "--axes", shown, f"axis {axis} is given twice (as axis {positive}); name each axis once"
            )
        resolved.append(positive)
    return tuple(resolved)


def _axis_names(config: MHAConfig, middle: int) -> tuple[str, ...]:
    if config.axis_names is None:
        return _DEFAULT_AXIS_NAMES.get(middle, tuple(f"axis{i}" for i in range(1, middle + 1)))
    names = config.axis_names
    shown = ",".join(names)
    if len(names) != middle:
        raise ConfigError(
            "--axis-names", shown, f"{len(names)} names for {middle} axes between batch and features"
        )
    if len(set(names)) != len(names):
        raise ConfigError("--axis-names", shown, "names must be distinct")
    clash = sorted(set(names) & _RESERVED_NAMES)
    if clash:
        raise ConfigError("--axis-names", shown, f"{clash[0]!r} is reserved; choose another name")
    return names


# --- The derivation ----------------------------------------------------------


def derive(config: MHAConfig) -> Derivation:
    """Validate ``config`` and derive everything the layer will do with it.

    Raises ConfigError for any configuration the real layer would reject or
    mishandle, with the option to change and what would be valid.
    """
    query = config.query_shape
    value = config.value_shape if config.value_shape is not None else query
    key = config.key_shape if config.key_shape is not None else value
    _check_shape("--shape", query)
    _check_shape("--value-shape", value)
    _check_shape("--key-shape", key)
    rank = len(query) + 1
    if len(value) + 1 != rank:
        raise ConfigError(
            "--value-shape",
            format_shape(value),
            f"rank {len(value) + 1} differs from the query's rank {rank}; "
            "query and value need the same number of axes",
        )
    if key[:-1] != value[:-1]:
        raise ConfigError(
            "--key-shape",
            format_shape(key),
            f"key and value must agree on every axis but the last (Keras: 'must be equal'); "
            f"value is {format_shape(value)}",
        )
    _positive("--num-heads", config.num_heads)
    _positive("--key-dim", config.key_dim)
    _positive("--value-dim", config.value_dim)
    if config.output_shape is not None:
        if not config.output_shape:
            raise ConfigError("--output-shape", "()", "give at least one size, or leave it out")
        for size in config.output_shape:
            _positive("--output-shape", size)
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError("--dropout", config.dropout, "must be in [0, 1)")
    if config.dtype not in DTYPE_BYTES:
        raise ConfigError("--dtype", config.dtype, f"unknown dtype; choose one of {', '.join(DTYPE_BYTES)}")
    _positive("--batch", config.batch)
    _positive("--sliding-window", config.sliding_window)

    attended = _resolve_axes(config.attention_axes, rank)
    middle = rank - 2
    names = _axis_names(config, middle)
    # Free axes are shared letters between query and key in the dot product;
    # Keras's compute_output_shape accepts size-1 broadcasting there, but the
    # forward pass on TensorFlow fails in einsum (measured, Keras 3.15.1), so
    # the sizes must match.
    for i in range(1, rank - 1):
        if i not in attended and query[i - 1] != value[i - 1]:
            raise ConfigError(
                "--value-shape",
                format_shape(value),
                f"axis {i} ({names[i - 1]}) is free (not attended), so query and key/value must have "
                f"the same size there: query has {query[i - 1]}, value {value[i - 1]}; "
                f"attend over it (--axes) or make the sizes equal",
            )
    # Keras names einsum axes with 26 letters; the dot product needs the most.
    letters_needed = max(rank + 1 + len(attended), rank + 1 + len(config.output_shape or (1,)))
    if letters_needed > len(_LETTERS):
        raise ConfigError(
            "--shape",
            format_shape(query),
            f"too many axes: Keras's einsum equations would need {letters_needed} letters (26 exist)",
        )

    defaulted = {
        name
        for name, given in (
            ("num_heads", config.num_heads),
            ("key_dim", config.key_dim),
            ("value_dim", config.value_dim),
            ("output_shape", config.output_shape),
            ("attention_axes", config.attention_axes),
        )
        if given is None
    }
    num_heads = config.num_heads or DEFAULT_NUM_HEADS
    key_dim = config.key_dim or max(1, query[-1] // num_heads)
    value_dim = config.value_dim or key_dim
    layer = LayerArgs(
        num_heads=num_heads,
        key_dim=key_dim,
        value_dim=value_dim,
        dropout=config.dropout,
        use_bias=config.use_bias,
        output_shape=config.output_shape,
        attention_axes=attended,
        use_gate=config.use_gate,
        dtype=config.dtype,
        sliding_window=config.sliding_window,
        defaulted=frozenset(defaulted),
    )
    return _derive_valid(config, layer, query, key, value, names)


def _derive_valid(
    config: MHAConfig, layer: LayerArgs, query: Shape, key: Shape, value: Shape, names: tuple[str, ...]
) -> Derivation:
    rank = len(query) + 1
    attended = layer.attention_axes
    heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
    out_dims = layer.output_shape or (query[-1],)
    out_labels = (
        ("feature",)
        if layer.output_shape is None
        else (("out",) if len(out_dims) == 1 else tuple(f"out{i}" for i in range(1, len(out_dims) + 1)))
    )

    def role(i: int) -> Role:
        if i == 0:
            return Role.BATCH
        if i == rank - 1:
            return Role.FEATURE
        return Role.ATTENDED if i in attended else Role.FREE

    axes = tuple(
        Axis(
            index=i,
            negative_index=i - rank,
            name="batch" if i == 0 else "feature" if i == rank - 1 else names[i - 1],
            role=role(i),
            query_size=None if i == 0 else query[i - 1],
            key_size=None if i == 0 else key[i - 1],
            value_size=None if i == 0 else value[i - 1],
        )
        for i in range(rank)
    )
    middle = range(1, rank - 1)

    def side(i: int, suffix: str) -> str:
        """Attended axes get _q / _k once query and key positions meet."""
        return f"{names[i - 1]}_{suffix}" if i in attended else names[i - 1]

    def input_tensor(name: str, shape: Shape) -> Tensor:
        return Tensor(name, (None, *shape), ("batch", *names, "feature"))

    def projected(name: str, shape: Shape, suffix: str, channel: str, size: int) -> Tensor:
        return Tensor(
            name,
            (None, *shape[:-1], heads, size),
            ("batch", *(side(i, suffix) for i in middle), "heads", channel),
        )

    inputs = {
        "query": input_tensor("query", query),
        "key": input_tensor("key", key),
        "value": input_tensor("value", value),
    }
    q_proj = projected("query_projected", query, "q", "key_dim", key_dim)
    k_proj = projected("key_projected", key, "k", "key_dim", key_dim)
    v_proj = projected("value_projected", value, "k", "value_dim", value_dim)
    free = [i for i in middle if i not in attended]
    scores = Tensor(
        "attention_scores",
        (
            None,
            *(query[i - 1] for i in free),
            heads,
            *(query[i - 1] for i in attended),
            *(key[i - 1] for i in attended),
        ),
        (
            "batch",
            *(names[i - 1] for i in free),
            "heads",
            *(side(i, "q") for i in attended),
            *(side(i, "k") for i in attended),
        ),
    )
    attention_output = projected("attention_output", query, "q", "value_dim", value_dim)
    output = Tensor("output", (None, *query[:-1], *out_dims), ("batch", *names, *out_labels))
    shapes = {
        "query_projected": q_proj,
        "key_projected": k_proj,
        "value_projected": v_proj,
    }

    def kernel(name: str, shape: Shape, labels: tuple[str, ...]) -> Tensor:
        return Tensor(f"{name}/kernel", shape, labels)

    proj_eq = projection_equation(rank - 1, 1, 2)
    einsums = {
        "query": _einsum(
            "query",
            proj_eq,
            (inputs["query"], kernel("query", (query[-1], heads, key_dim), ("feature", "heads", "key_dim"))),
            q_proj,
        ),
        "key": _einsum(
            "key",
            proj_eq,
            (inputs["key"], kernel("key", (key[-1], heads, key_dim), ("feature", "heads", "key_dim"))),
            k_proj,
        ),
        "value": _einsum(
            "value",
            proj_eq,
            (
                inputs["value"],
                kernel("value", (value[-1], heads, value_dim), ("feature", "heads", "value_dim")),
            ),
            v_proj,
        ),
    }
    weights = [
        Weight("query", (query[-1], heads, key_dim), (heads, key_dim) if layer.use_bias else None),
        Weight("key", (key[-1], heads, key_dim), (heads, key_dim) if layer.use_bias else None),
        Weight("value", (value[-1], heads, value_dim), (heads, value_dim) if layer.use_bias else None),
    ]
    if layer.use_gate:
        # Keras >= 3.14: a sigmoid projection of the query, multiplied into the
        # attention output before the output projection.
        gate = projected("gate", query, "q", "value_dim", value_dim)
        shapes["gate"] = gate
        einsums["gate"] = _einsum(
            "gate",
            proj_eq,
            (
                inputs["query"],
                kernel("gate", (query[-1], heads, value_dim), ("feature", "heads", "value_dim")),
            ),
            gate,
        )
        weights.append(
            Weight("gate", (query[-1], heads, value_dim), (heads, value_dim) if layer.use_bias else None)
        )
    dot_eq, combine_eq = attention_equations(rank + 1, attended)
    einsums["dot_product"] = _einsum("dot_product", dot_eq, (k_proj, q_proj), scores)
    einsums["combine"] = _einsum("combine", combine_eq, (scores, v_proj), attention_output)
    out_kernel = kernel(
        "attention_output", (heads, value_dim, *out_dims), ("heads", "value_dim", *out_labels)
    )
    einsums["output"] = _einsum(
        "output", projection_equation(rank - 1, 2, len(out_dims)), (attention_output, out_kernel), output
    )
    weights.append(
        Weight("attention_output", (heads, value_dim, *out_dims), out_dims if layer.use_bias else None)
    )
    shapes.update(attention_scores=scores, attention_output=attention_output, output=output)

    derivation = Derivation(
        config=config,
        layer=layer,
        axes=axes,
        inputs=inputs,
        shapes=shapes,
        einsums=einsums,
        weights=tuple(weights),
    )
    derivation = replace(derivation, mask=plan_mask(derivation))
    return replace(derivation, summary=summarize(derivation))


def _einsum(name: str, equation: str, operands: tuple[Tensor, ...], result: Tensor) -> Einsum:
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


def shrunk(config: MHAConfig, most: int = 4) -> MHAConfig:
    """The same layer on inputs with at most ``most`` positions along every axis but the features.

    Equations, axis roles and weight shapes depend on the rank, the axes and the
    feature sizes only, so they are this configuration's own; the sizes that
    make a forward pass big (attended and free positions) are what shrink.
    """

    def small(shape: Shape | None) -> Shape | None:
        return None if shape is None else (*(min(size, most) for size in shape[:-1]), shape[-1])

    return replace(
        config,
        query_shape=small(config.query_shape) or config.query_shape,
        value_shape=small(config.value_shape),
        key_shape=small(config.key_shape),
    )


# --- Masks -------------------------------------------------------------------------


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


def mask_layout(d: Derivation) -> tuple[tuple[int | None, ...], int]:
    """The full attention_mask shape (the scores' without heads) and where Keras inserts missing axes."""
    scores = d.shapes["attention_scores"]
    heads = scores.labels.index("heads")
    return scores.shape[:heads] + scores.shape[heads + 1 :], -2 * len(d.layer.attention_axes) - 1


def plan_mask(d: Derivation) -> MaskPlan | None:
    """The mask plan for ``d``'s call, or None without masks; ConfigError where Keras fails."""
    config = d.config
    scores = d.shapes["attention_scores"]
    expected, heads_axis = mask_layout(d)
    sources: list[tuple[str, tuple[int, ...]]] = []
    if config.mask_shape is not None:
        sources.append(("attention_mask", tuple(config.batch if s is None else s for s in config.mask_shape)))
    # Keras builds these from axis 1 of the query and of the value, whatever the attended axes.
    band = (1, d.inputs["query"].shape[1] or 0, d.inputs["value"].shape[1] or 0)
    if config.causal:
        sources.append(("causal", band))
    if config.sliding_window is not None:
        sources.append(("sliding_window", band))
    if not sources:
        return None
    option = {"attention_mask": "--mask-shape", "causal": "--causal", "sliding_window": "--sliding-window"}
    first = option[sources[0][0]] if len(sources) == 1 else "--mask-shape"
    shown = " & ".join(f"{name} {format_shape(shape)}" for name, shape in sources)
    combined = sources[0][1]
    for _, shape in sources[1:]:
        combined = _broadcast(combined, shape, first, shown)
    target = scores.with_batch(config.batch)
    mask = list(combined)
    while len(mask) < len(target):
        position = len(mask) + 1 + heads_axis
        if position < 0:
            raise ConfigError(
                first,
                format_shape(combined),
                f"Keras inserts missing mask axes at {heads_axis} (just before the query's attended axes); "
                f"a rank-{len(mask)} mask has no axis there, so it cannot reach the rank-{len(target)} "
                f"scores {format_shape(scores.shape)}"
                + (f"; give the full shape {format_shape(expected)}" if first == "--mask-shape" else ""),
            )
        mask.insert(position, 1)
    if len(mask) > len(target):
        raise ConfigError(
            first,
            format_shape(combined),
            f"rank {len(mask)} is more than the scores' rank {len(target)} {format_shape(scores.shape)}",
        )
    for index, (size, wanted) in enumerate(zip(mask, target, strict=True)):
        if size not in (1, wanted):
            why = (
                " (Keras builds causal and sliding-window masks from axis 1 of the query and the value)"
                if any(name != "attention_mask" for name, _ in sources)
                else ""
            )
            raise ConfigError(
                first,
                shown if len(sources) > 1 else format_shape(combined),
                f"after Keras inserts the missing axes the mask is {format_shape(tuple(mask))}; its axis "
                f"{index} has size {size} where the scores {format_shape(scores.shape)} have "
                f"{wanted} ({scores.labels[index]}): each mask axis must be 1 or the scores' size{why}",
            )
    return MaskPlan(expected, heads_axis, tuple(sources), combined, tuple(mask))


def _broadcast(a: tuple[int, ...], b: tuple[int, ...], option: str, shown: str) -> tuple[int, ...]:
    """NumPy broadcasting of two shapes, as ``mask_a & mask_b`` does."""
    width = max(len(a), len(b))
    a_full, b_full = (1,) * (width - len(a)) + a, (1,) * (width - len(b)) + b
    out = []
    for x, y in zip(a_full, b_full, strict=True):
        if x != y and 1 not in (x, y):
            raise ConfigError(
                option, shown, f"Keras ANDs these masks, and sizes {x} and {y} do not broadcast together"
            )
        out.append(max(x, y))
    return tuple(out)


# --- Plain sentences -----------------------------------------------------------


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def summarize(derivation: Derivation) -> tuple[str, ...]:
    """What the configuration means, in sentences a forum answer would use."""
    layer = derivation.layer
    attended = derivation.attended_axes
    free = derivation.free_axes
    feature = derivation.axes[-1]
    rank = derivation.rank
    attended_names = _join([axis.name for axis in attended])
    key_positions = derivation.weights_per_query
    lines = []
    if free:
        same = _join([axis.name for axis in free])
        lines.append(
            f"Each query position attends to the {key_positions:,} key positions along {attended_names} "
            f"that share its {same}, in the same batch item, separately in each of {layer.num_heads} heads."
        )
        slices = math.prod(axis.query_size or 1 for axis in free)
        lines.append(
            f"Free axes ({same}) are handled independently, like extra batch axes: "
            f"{slices:,} separate attention problems per batch item and head."
        )
    else:
        lines.append(
            f"Each query position attends to all {key_positions:,} key positions "
            f"({attended_names}) of the same batch item, separately in each of {layer.num_heads} heads."
        )
    scores = derivation.shapes["attention_scores"]
    per_item = scores.per_item_size()
    lines.append(
        f"Attention weights: {key_positions:,} per query position and head; "
        f"{per_item:,} per batch item ({' x '.join(str(s) for s in scores.shape[1:])}), "
        f"{derivation.scores_bytes_per_item():,} bytes in {layer.dtype}."
    )
    out = derivation.shapes["output"]
    lines.append(
        f"The feature axis is axis {feature.index} ({feature.negative_index}), size {feature.query_size}: "
        f"projected to {layer.num_heads} heads x {layer.key_dim} (key_dim) for query and key, "
        f"{layer.num_heads} x {layer.value_dim} (value_dim) for value, and back to "
        f"{format_shape(out.shape[rank - 1 :])} by the output projection."
    )
    scores_text = (
        f"{format_shape(scores.shape)} scores ({derivation.scores_bytes_per_item():,} bytes per item)"
    )
    if derivation.execution_path == "fused":
        lines.append(
            "Called without return_attention_scores, Keras takes the fused ops.dot_product_attention path "
            f"(rank-3 input, dropout 0), which never materialises the {scores_text}; asking for the "
            "scores switches to the einsum + softmax path."
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
    lines.append(
        f"An attention_mask for this call has the shape {format_shape(expected)}, the scores' without "
        f"the heads (True/1 attends); a shorter one gains size-1 axes at {heads_axis}, just before the "
        f"query's attended axes, so {format_shape(shorter)} broadcasts over "
        + (
            "the batch and the heads."
            if len(expected) == 2 * attended_k + 1
            else "the batch, free axes and heads."
        )
    )
    mask = derivation.mask
    if mask is not None:
        given = " & ".join(f"{name} {format_shape(shape)}" for name, shape in mask.sources)
        lines.append(
            f"This call's mask, {given}, reaches the scores as {format_shape(mask.broadcast_to)} "
            "(the NumPy check applies it exactly so)."
        )
    if rank == 3:  # the only legal axis is 1, so every choice resolves to it
        lines.append(
            "For a rank-3 input, attention_axes=None and attention_axes=(1,) (also written (1), 1 or -2) "
            "resolve to the same axes (1,): the layer, its weights and its output are identical."
        )
    if list(layer.attention_axes) != sorted(layer.attention_axes):
        lines.append(
            f"The axes are given out of order {format_shape(layer.attention_axes)}: Keras keeps that order "
            "in the scores tensor, so it differs in layout (not in values) from the sorted order."
        )
    return tuple(lines)
