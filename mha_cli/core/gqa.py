"""The shape algebra of keras.layers.GroupQueryAttention, without Keras: a second layer kind.

``keras.layers.GroupQueryAttention`` (class ``GroupedQueryAttention`` in
``keras/src/layers/attention/grouped_query_attention.py``, Keras 3.15) is not a
MultiHeadAttention subclass. Its inputs are rank 3, ``(batch, sequence,
features)``; query is projected to ``num_query_heads`` heads, key and value to
``num_key_value_heads`` heads of ``head_dim`` each, and key and value are then
repeated ``num_query_heads // num_key_value_heads`` times along the heads axis
(``ops.repeat``, so query heads ``g*r .. g*r + r - 1`` share key/value head
``g``). Its equations are fixed strings, which this module writes as Keras
does; the output keeps the query's width. Fewer key/value heads is the point:
the key/value cache a decoder keeps per token shrinks by the same factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mha_cli.core.config import DTYPE_BYTES, ExecutionPath, Role, Shape
from mha_cli.core.derived import Axis, Costs, Einsum, MaskPlan, Tensor, Weight, bind_einsum
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape
from mha_cli.core.masks import plan_mask
from mha_cli.core.summary import join_words, masked_reach
from mha_cli.core.validate import check_settings, positive

#: Tool defaults for the three arguments Keras requires: four query heads sharing two
#: key/value heads, so the grouping shows; head_dim keeps the width (heads x head_dim == features).
DEFAULT_QUERY_HEADS = 4
DEFAULT_KEY_VALUE_HEADS = 2


@dataclass(frozen=True)
class GQAConfig:
    """One GroupQueryAttention configuration, as a user states it (shapes without the batch axis)."""

    query_shape: Shape
    value_shape: Shape | None = None
    key_shape: Shape | None = None
    head_dim: int | None = None
    num_query_heads: int | None = None
    num_key_value_heads: int | None = None
    use_bias: bool = True
    use_gate: bool = False
    dropout: float = 0.0
    dtype: str = "float32"
    batch: int = 2
    seed: int = 0
    #: The call's attention_mask shape, batch included (None there means --batch); None: no mask.
    mask_shape: tuple[int | None, ...] | None = None
    causal: bool = False
    sliding_window: int | None = None
    keras: int = 3
    #: Projections a subclass builds without a bias although use_bias (KerasHub Whisper's key):
    #: "query", "key", "value", "gate" or "attention_output". Read by scan from the layer's weights.
    unbiased: tuple[str, ...] = ()


@dataclass(frozen=True)
class GQAArgs:
    """The layer's shape-relevant constructor arguments, resolved."""

    head_dim: int
    num_query_heads: int
    num_key_value_heads: int
    dropout: float
    use_bias: bool
    use_gate: bool
    dtype: str
    sliding_window: int | None = None
    defaulted: frozenset[str] = frozenset()

    @property
    def num_repeats(self) -> int:
        """How many query heads share one key/value head (Keras's ``num_repeats``)."""
        return self.num_query_heads // self.num_key_value_heads

    @property
    def attention_axes(self) -> tuple[int, ...]:
        """The sequence axis: the only one GroupQueryAttention attends over."""
        return (1,)

    def keras_kwargs(self) -> dict[str, object]:
        """Constructor kwargs for ``keras.layers.GroupQueryAttention``."""
        kwargs: dict[str, object] = {
            "head_dim": self.head_dim,
            "num_query_heads": self.num_query_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "dtype": self.dtype,
        }
        if self.use_gate:  # only Keras >= 3.14 knows the argument
            kwargs["use_gate"] = True
        if self.sliding_window is not None:  # only Keras >= 3.15 knows the argument
            kwargs["sliding_window"] = self.sliding_window
        return kwargs

    def groups(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """Each key/value head with the query heads that read it (``ops.repeat`` on axis 2)."""
        r = self.num_repeats
        return tuple((g, tuple(range(g * r, (g + 1) * r))) for g in range(self.num_key_value_heads))


@dataclass(frozen=True)
class GQADerivation(Costs):
    """Everything the shape algebra says about one GroupQueryAttention configuration."""

    config: GQAConfig
    layer: GQAArgs
    axes: tuple[Axis, ...]
    inputs: dict[str, Tensor]  # query, key, value
    #: query/key/value projected, key/value repeated, [gate], attention_scores, attention_output, output.
    shapes: dict[str, Tensor]
    einsums: dict[str, Einsum]  # query, key, value, [gate], dot_product, combine, output
    weights: tuple[Weight, ...]
    mask: MaskPlan | None = None
    summary: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        return "gqa"

    @property
    def weights_per_query(self) -> int:
        """Attention weights one query position gets, per head: one per key position."""
        return self.axes[1].key_size or 0

    @property
    def heads_attended(self) -> bool:
        """GroupQueryAttention attends along the sequence only."""
        return False

    @property
    def execution_path(self) -> ExecutionPath:
        """The path a call without return_attention_scores takes (``_compute_attention``, Keras 3.15):
        ``ops.dot_product_attention`` unless dropout > 0 (inputs are always rank 3)."""
        return ExecutionPath.FUSED if self.layer.dropout == 0.0 else ExecutionPath.EINSUM

    def kv_cache_bytes_per_token(self, key_value_heads: int | None = None) -> int:
        """What a decoder caches per token for this layer: a key and a value per key/value head
        (for ``key_value_heads`` heads, if given: as many as the query heads is MultiHeadAttention's)."""
        heads = self.layer.num_key_value_heads if key_value_heads is None else key_value_heads
        return 2 * heads * self.layer.head_dim * DTYPE_BYTES[self.layer.dtype]

    def kv_cache_bytes_per_sequence(self) -> int:
        """The same, for the key/value sequence as configured (one batch item)."""
        return self.kv_cache_bytes_per_token() * (self.inputs["value"].shape[1] or 0)


def default_key_value_heads(query_heads: int) -> int:
    """The tool's default: 2 key/value heads where they divide the query heads, else 1."""
    return DEFAULT_KEY_VALUE_HEADS if query_heads % DEFAULT_KEY_VALUE_HEADS == 0 else 1


def _check_rank(option: str, shape: Shape) -> None:
    if len(shape) != 2:
        raise ConfigError(
            option,
            format_shape(shape),
            f"GroupQueryAttention takes rank-3 inputs (batch, sequence, features), so give 2 sizes, "
            f"not {len(shape)}; fold other axes into the sequence, or use --layer mha with --axes",
        )
    for size in shape:
        positive(option, size)


def derive_gqa(config: GQAConfig) -> GQADerivation:
    """Validate ``config`` (ConfigError naming the option, as the real layer would refuse it) and derive."""
    query = config.query_shape
    value = config.value_shape if config.value_shape is not None else query
    key = config.key_shape if config.key_shape is not None else value
    _check_rank("--shape", query)
    _check_rank("--value-shape", value)
    _check_rank("--key-shape", key)
    if key[0] != value[0]:
        raise ConfigError(
            "--key-shape",
            format_shape(key),
            f"key and value must have the same sequence length (Keras: 'must be equal'); value is "
            f"{format_shape(value)}",
        )
    for option, given in (
        ("--head-dim", config.head_dim),
        ("--num-query-heads", config.num_query_heads),
        ("--num-key-value-heads", config.num_key_value_heads),
    ):
        positive(option, given)
    check_settings(
        dropout=config.dropout,
        dtype=config.dtype,
        batch=config.batch,
        sliding_window=config.sliding_window,
        keras=config.keras,
    )
    if config.keras == 2:
        raise ConfigError(
            "--keras", 2, "Keras 2 (tf_keras) has no GroupQueryAttention; it came with Keras 3 (3.1)"
        )
    query_heads = config.num_query_heads or DEFAULT_QUERY_HEADS
    kv_heads = config.num_key_value_heads or default_key_value_heads(query_heads)
    if query_heads % kv_heads:
        divisors = [n for n in range(1, query_heads + 1) if query_heads % n == 0]
        raise ConfigError(
            "--num-key-value-heads",
            kv_heads,
            f"must divide --num-query-heads {query_heads} (Keras: 'must be divisible'); "
            f"choose one of {', '.join(map(str, divisors))}",
        )
    defaulted = frozenset(
        name
        for name, given in (
            ("head_dim", config.head_dim),
            ("num_query_heads", config.num_query_heads),
            ("num_key_value_heads", config.num_key_value_heads),
        )
        if given is None
    )
    layer = GQAArgs(
        head_dim=config.head_dim or max(1, query[-1] // query_heads),
        num_query_heads=query_heads,
        num_key_value_heads=kv_heads,
        dropout=config.dropout,
        use_bias=config.use_bias,
        use_gate=config.use_gate,
        dtype=config.dtype,
        sliding_window=config.sliding_window,
        defaulted=defaulted,
    )
    return _derive_valid(config, layer, query, key, value)


def _derive_valid(config: GQAConfig, layer: GQAArgs, query: Shape, key: Shape, value: Shape) -> GQADerivation:
    (t, dq), (s, dk), dv = query, key, value[-1]
    u, v, h = layer.num_query_heads, layer.num_key_value_heads, layer.head_dim
    axes = (
        Axis(0, -3, "batch", Role.BATCH, None, None, None),
        Axis(1, -2, "seq", Role.ATTENDED, t, s, s),
        Axis(2, -1, "feature", Role.FEATURE, dq, dk, dv),
    )
    inputs = {
        "query": Tensor("query", (None, t, dq), ("batch", "seq_q", "feature_q")),
        "key": Tensor("key", (None, s, dk), ("batch", "seq_k", "feature_k")),
        "value": Tensor("value", (None, s, dv), ("batch", "seq_k", "feature_v")),
    }
    heads = ("heads", "kv_heads")  # the query heads are the scores' heads
    shapes = {
        "query_projected": Tensor(
            "query_projected", (None, t, u, h), ("batch", "seq_q", heads[0], "head_dim")
        ),
        "key_projected": Tensor("key_projected", (None, s, v, h), ("batch", "seq_k", heads[1], "head_dim")),
        "value_projected": Tensor(
            "value_projected", (None, s, v, h), ("batch", "seq_k", heads[1], "head_dim")
        ),
        "key_repeated": Tensor("key_repeated", (None, s, u, h), ("batch", "seq_k", heads[0], "head_dim")),
        "value_repeated": Tensor("value_repeated", (None, s, u, h), ("batch", "seq_k", heads[0], "head_dim")),
    }
    if layer.use_gate:
        shapes["gate"] = Tensor("gate", (None, t, u, h), ("batch", "seq_q", heads[0], "head_dim"))
    shapes["attention_scores"] = Tensor(
        "attention_scores", (None, u, t, s), ("batch", "heads", "seq_q", "seq_k")
    )
    shapes["attention_output"] = Tensor(
        "attention_output", (None, t, u, h), ("batch", "seq_q", heads[0], "head_dim")
    )
    shapes["output"] = Tensor("output", (None, t, dq), ("batch", "seq_q", "feature_q"))

    def kernel(name: str, shape: Shape, labels: tuple[str, ...]) -> Tensor:
        return Tensor(name, shape, labels)

    q_kernel = kernel("query/kernel", (dq, u, h), ("feature_q", heads[0], "head_dim"))
    k_kernel = kernel("key/kernel", (dk, v, h), ("feature_k", heads[1], "head_dim"))
    v_kernel = kernel("value/kernel", (dv, v, h), ("feature_v", heads[1], "head_dim"))
    o_kernel = kernel("attention_output/kernel", (u, h, dq), (heads[0], "head_dim", "feature_q"))
    # The equations are Keras's own strings (GroupedQueryAttention.build).
    einsums = {
        "query": bind_einsum(
            "query", "bqm,muh->bquh", (inputs["query"], q_kernel), shapes["query_projected"]
        ),
        "key": bind_einsum("key", "bkm,mvh->bkvh", (inputs["key"], k_kernel), shapes["key_projected"]),
        "value": bind_einsum(
            "value", "bkm,mvh->bkvh", (inputs["value"], v_kernel), shapes["value_projected"]
        ),
    }
    if layer.use_gate:
        g_kernel = kernel("gate/kernel", (dq, u, h), ("feature_q", heads[0], "head_dim"))
        einsums["gate"] = bind_einsum("gate", "bqm,muh->bquh", (inputs["query"], g_kernel), shapes["gate"])
    einsums["dot_product"] = bind_einsum(
        "dot_product",
        "bquh,bkuh->buqk",
        (shapes["query_projected"], shapes["key_repeated"]),
        shapes["attention_scores"],
    )
    einsums["combine"] = bind_einsum(
        "combine",
        "buqk,bkuh->bquh",
        (shapes["attention_scores"], shapes["value_repeated"]),
        shapes["attention_output"],
    )
    einsums["output"] = bind_einsum(
        "output", "bquh,uhm->bqm", (shapes["attention_output"], o_kernel), shapes["output"]
    )

    def bias(name: str, shape: Shape) -> Shape | None:
        return shape if layer.use_bias and name not in config.unbiased else None

    weights = (
        Weight("query", (dq, u, h), bias("query", (u, h))),
        Weight("key", (dk, v, h), bias("key", (v, h))),
        Weight("value", (dv, v, h), bias("value", (v, h))),
        *((Weight("gate", (dq, u, h), bias("gate", (u, h))),) if layer.use_gate else ()),
        Weight("attention_output", (u, h, dq), bias("attention_output", (dq,))),
    )
    derived = GQADerivation(config, layer, axes, inputs, shapes, einsums, weights)
    # Keras's GroupedQueryAttention._masked_softmax inserts missing mask axes at -3, just before the
    # query's axis, as MultiHeadAttention does for one attended axis: the same plan holds.
    mask = plan_mask(derived)
    derived = GQADerivation(config, layer, axes, inputs, shapes, einsums, weights, mask)
    return GQADerivation(config, layer, axes, inputs, shapes, einsums, weights, mask, _summarize(derived))


def _summarize(d: GQADerivation) -> tuple[str, ...]:
    layer = d.layer
    u, v, r, h = layer.num_query_heads, layer.num_key_value_heads, layer.num_repeats, layer.head_dim
    t, s = d.axes[1].query_size or 0, d.axes[1].key_size or 0
    if v == u:
        grouping = f"Each of the {u} query heads has a key/value head of its own: this is MultiHeadAttention."
    elif v == 1:
        grouping = f"All {u} query heads share one key/value head: multi-query attention (MQA)."
    else:
        shared = join_words([f"{heads[0]}-{heads[-1]}" for _, heads in layer.groups()])
        grouping = (
            f"{u} query heads share {v} key/value heads, {r} each (query heads {shared}): "
            "key and value are projected once per group and repeated along the heads axis."
        )
    saved = "" if v == u else f", {u // v}x less than MultiHeadAttention with {u} heads"
    reached, decided, none_left = masked_reach(d, s, "seq")
    return (
        f"Each query position attends to {reached} of the same batch item{decided}, in each of {u} heads."
        + none_left,
        grouping,
        f"A decoder caches {2 * v * h:,} numbers per token for this layer (key and value, {v} head(s) x "
        f"{h}): {d.kv_cache_bytes_per_token():,} bytes in {layer.dtype}{saved}.",
        f"Attention scores: {u} x {t:,} x {s:,} = {u * t * s:,} weights per batch item "
        f"({d.scores_bytes_per_item():,} bytes).",
    )


@dataclass(frozen=True)
class GroupQueryAttentionKind:
    """``keras.layers.GroupQueryAttention`` as a layer kind (see :mod:`mha_cli.core.kinds`)."""

    name: str = "gqa"
    keras_class: str = "GroupQueryAttention"
    saved_class: str = "GroupedQueryAttention"
    config_type: type = GQAConfig
    own_arguments: tuple[str, ...] = ("num_query_heads", "num_key_value_heads", "head_dim")

    def derive(self, config: GQAConfig) -> GQADerivation:
        return derive_gqa(config)

    def check_backend(self, derived: GQADerivation, backend: str) -> None:
        """Rank-4 scores over one axis: none of the backends' shape limits applies (core/limits.py)."""

    def shrunk(self, config: GQAConfig, most: int) -> GQAConfig:
        def small(shape: Shape | None) -> Shape | None:
            return None if shape is None else (min(shape[0], most), shape[-1])

        mask = config.mask_shape
        if mask is not None:  # (batch?, T, S): the positions shrink, a size 1 broadcasts and stays
            mask = (*mask[:-2], *(s if s in (None, 1) else min(s, most) for s in mask[-2:]))
        return replace(
            config,
            query_shape=small(config.query_shape) or config.query_shape,
            value_shape=small(config.value_shape),
            key_shape=small(config.key_shape),
            mask_shape=mask,
        )

    def keras_kwargs(self, derived: GQADerivation) -> dict[str, object]:
        return derived.layer.keras_kwargs()

    def examples(self) -> tuple[GQAConfig, ...]:
        return (
            GQAConfig(query_shape=(10, 64), num_query_heads=8, num_key_value_heads=2, head_dim=8),
            GQAConfig(query_shape=(6, 16), value_shape=(4, 12), num_query_heads=6, num_key_value_heads=3),
            GQAConfig(
                query_shape=(5, 8), num_query_heads=4, num_key_value_heads=1, use_bias=False, causal=True
            ),
            GQAConfig(query_shape=(5, 8), mask_shape=(None, 5, 5), num_key_value_heads=4),
        )


GQA = GroupQueryAttentionKind()
