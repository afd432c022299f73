"""keras.layers.Attention and AdditiveAttention (``--layer dot|additive``): their algebra.

These two are not kinds of :mod:`mha_cli.core.kinds`: a kind's derivation
(:class:`~mha_cli.core.derived.Derived`) is made of projections, heads and
einsums, and these layers have none of them. They take the query, value and key
as they are, score every query position against every key position along axis 1,
and return a weighted sum of the values. So they have an algebra of their own,
and their own runtime, renderer and JSON document beside MultiHeadAttention's.

What they compute, as Keras 3.12-3.15 writes it (``keras/src/layers/attention/
attention.py`` and ``additive_attention.py``), for query ``(B, Tq, dim)``, value
``(B, Tv, dv)``, key ``(B, Tv, dim)`` (the value when not given):

- Attention, ``score_mode="dot"``: ``scores = query @ key^T``, times the scalar
  ``scale`` when ``use_scale`` (initialised to 1; no 1/sqrt(dim) at all).
- Attention, ``score_mode="concat"``: ``scores = concat_score_weight x
  sum(tanh(scale x (query[:, :, None] + key[:, None])), -1)`` (scale inside tanh).
- AdditiveAttention: ``scores = sum(scale x tanh(query[:, :, None] +
  key[:, None]), -1)``, ``scale`` a ``(dim,)`` vector (outside tanh), used by default.
- A ``value_mask`` (B, Tv) and ``use_causal_mask`` (key position j > query
  position i) subtract 1e9 (65504 in float16) from the scores they block; the
  softmax runs over the key axis; ``output = weights @ value``; a ``query_mask``
  (B, Tq) zeroes the output rows it blocks. Dropout acts on the weights when
  training only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mha_cli.core.config import DTYPE_BYTES, Shape
from mha_cli.core.derived import Tensor
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.validate import check_settings, positive

#: --layer's names for them, and their classes in keras.layers.
DENSE_CLASSES = {"dot": "Attention", "additive": "AdditiveAttention"}
SCORE_MODES = ("dot", "concat")
_BROADCAST = "q = query[:, :, None], k = key[:, None]"
#: What a blocked score loses before the softmax (Attention._apply_scores): 65504 is float16's largest.
MASK_PENALTY = {"float16": 65504.0}
DEFAULT_MASK_PENALTY = 1.0e9


@dataclass(frozen=True)
class DenseConfig:
    """One Attention or AdditiveAttention configuration, as a user states it (shapes without batch)."""

    kind: str  # "dot" (Attention) or "additive" (AdditiveAttention)
    query_shape: Shape
    value_shape: Shape | None = None
    #: None: not given, so the call is [query, value] and the value is the key.
    key_shape: Shape | None = None
    #: None: the class's default (Attention False, AdditiveAttention True).
    use_scale: bool | None = None
    #: Attention only; None: "dot".
    score_mode: str | None = None
    dropout: float = 0.0
    dtype: str = "float32"
    batch: int = 2
    seed: int = 0
    #: mask=[query_mask, value_mask] in the call: whether each is given (random padding at the end).
    query_mask: bool = False
    value_mask: bool = False
    #: use_causal_mask=True in the call.
    causal: bool = False

    @property
    def keras_class(self) -> str:
        return DENSE_CLASSES[self.kind]


@dataclass(frozen=True)
class DenseWeight:
    """One weight the layer builds (only use_scale and score_mode="concat" build any)."""

    name: str
    shape: Shape
    initializer: str
    meaning: str

    @property
    def params(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Step:
    """One step of the computation: what it computes, in the layer's own terms, and its result."""

    name: str
    formula: str
    result: Tensor


@dataclass(frozen=True)
class DenseMask:
    """One mask the scores or the output see: where it comes from, its shape (batch as None), its rule."""

    name: str  # query_mask, value_mask, causal
    shape: tuple[int | None, ...]
    effect: str


@dataclass(frozen=True)
class DenseDerivation:
    """Everything the algebra says about one Attention or AdditiveAttention configuration."""

    config: DenseConfig
    use_scale: bool
    score_mode: str  # "dot" or "concat" for Attention; "additive" for AdditiveAttention
    #: Width the scores are summed over: query and key features (broadcast when one is 1).
    score_width: int
    inputs: dict[str, Tensor]  # query, value, key
    shapes: dict[str, Tensor]  # attention_scores, output (and the additive sum's intermediate)
    steps: tuple[Step, ...]
    weights: tuple[DenseWeight, ...]
    masks: tuple[DenseMask, ...]
    #: The arguments left to the class's defaults.
    defaulted: frozenset[str]
    #: How this layer differs from MultiHeadAttention, in plain sentences.
    differences: tuple[str, ...]
    #: Plain sentences about this configuration.
    summary: tuple[str, ...] = field(default=())
    #: What the user should know before trusting the answer (one line each).
    warnings: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def keras_class(self) -> str:
        return self.config.keras_class

    @property
    def key_given(self) -> bool:
        return self.config.key_shape is not None

    @property
    def params(self) -> int:
        return sum(weight.params for weight in self.weights)

    @property
    def intermediate(self) -> Tensor | None:
        """The (B, Tq, Tv, dim) sum that concat and additive scores materialise; None for dot scores."""
        return self.shapes.get("query_plus_key")

    @property
    def flops_per_item(self) -> int:
        """Floating-point operations for one batch item, counting tanh as one.

        Dot scores: 2 Tq Tv dim, and Tq Tv for the scale; concat and additive: per (query, key, feature)
        an add, the tanh and the sum's add, and the scale's multiply with use_scale (3 or 4 Tq Tv dim),
        and concat's Tq Tv for concat_score_weight; then the softmax's 5 Tq Tv (max, subtract, exp,
        sum, divide) and the combine's 2 Tq Tv dv.
        """
        query, value = self.inputs["query"].shape, self.inputs["value"].shape
        tq, tv, dv = query[1] or 0, value[1] or 0, value[2] or 0
        pairs = tq * tv
        if self.score_mode == "dot":
            scores = 2 * pairs * self.score_width + (pairs if self.use_scale else 0)
        else:
            per_feature = 4 if self.use_scale else 3
            scores = per_feature * pairs * self.score_width + (pairs if self.score_mode == "concat" else 0)
        return scores + 5 * pairs + 2 * pairs * dv

    def bytes_per_item(self, tensor: Tensor) -> int:
        return tensor.per_item_size() * DTYPE_BYTES[self.config.dtype]

    def forward_pass_bytes(self) -> int:
        """Rough peak memory of the verified forward pass: every tensor in the layer's dtype and twice
        in float64 (our copy and the NumPy re-execution), the intermediate three times on each side."""
        tensors = sum(t.per_item_size() for t in (*self.inputs.values(), *self.shapes.values()))
        middle = self.intermediate.per_item_size() if self.intermediate is not None else 0
        itemsize = DTYPE_BYTES[self.config.dtype]
        return self.config.batch * ((tensors + 2 * middle) * itemsize + (2 * tensors + 2 * middle) * 8)


def _two(option: str, shape: Shape, what: str) -> tuple[int, int]:
    if len(shape) != 2:
        sizes = ",".join(str(size) for size in shape)
        raise ConfigError(
            option,
            sizes,
            f"{what} is (batch, T, features) for Attention and AdditiveAttention: give two sizes, "
            "T,features (the batch is --batch)",
        )
    for size in shape:
        positive(option, size)
    return shape[0], shape[1]


def derive_dense(config: DenseConfig) -> DenseDerivation:
    """Validate ``config`` (a ConfigError naming the option) and derive its shapes, steps and weights."""
    if config.kind not in DENSE_CLASSES:
        raise ConfigError("--layer", config.kind, f"choose one of {', '.join(DENSE_CLASSES)}")
    check_settings(
        dropout=config.dropout, dtype=config.dtype, batch=config.batch, sliding_window=None, keras=3
    )
    additive = config.kind == "additive"
    if additive and config.score_mode is not None:
        raise ConfigError(
            "--score-mode",
            config.score_mode,
            "AdditiveAttention has no score_mode (its scores are always additive); "
            "--layer dot --score-mode concat is Attention's tanh form",
        )
    score_mode = "additive" if additive else (config.score_mode or "dot")
    if score_mode not in (*SCORE_MODES, "additive"):
        raise ConfigError("--score-mode", score_mode, f"choose one of {', '.join(SCORE_MODES)}")
    use_scale = config.use_scale if config.use_scale is not None else additive
    tq, dq = _two("--shape", config.query_shape, "the query")
    tv, dv = _two("--value-shape", config.value_shape or config.query_shape, "the value")
    key_shape = config.key_shape or (tv, dv)
    tk, dk = _two("--key-shape", key_shape, "the key")
    if tk != tv:
        raise ConfigError(
            "--key-shape",
            ",".join(map(str, key_shape)),
            f"the key needs the value's {tv} positions (one weight per key position picks a value); "
            f"give {tv},{dk}",
        )
    key_option = "--key-shape" if config.key_shape is not None else "--value-shape"
    if score_mode == "dot" and dk != dq:
        raise ConfigError(
            key_option,
            ",".join(map(str, key_shape)),
            f"dot scores are query @ key^T, so the key needs the query's {dq} features (it has {dk}); "
            f"give {tk},{dq}" + ("" if config.key_shape is not None else f" (or --key-shape {tv},{dq})"),
        )
    if score_mode != "dot" and dk != dq and 1 not in (dk, dq):
        raise ConfigError(
            key_option,
            ",".join(map(str, key_shape)),
            f"{score_mode} scores add query and key, so they need equal features (query {dq}, key {dk}) "
            "or one of them 1",
        )
    width = max(dq, dk)

    query = Tensor("query", (None, tq, dq), ("batch", "seq_q", "feature"))
    value = Tensor("value", (None, tv, dv), ("batch", "seq_k", "value_feature"))
    key = Tensor("key", (None, tk, dk), ("batch", "seq_k", "feature"))
    scores = Tensor("attention_scores", (None, tq, tv), ("batch", "seq_q", "seq_k"))
    output = Tensor("output", (None, tq, dv), ("batch", "seq_q", "value_feature"))
    shapes = {"attention_scores": scores, "output": output}
    weights = _weights(config.kind, score_mode, use_scale, dq)
    steps = _steps(config, score_mode, use_scale, query, key, scores, output)
    if score_mode != "dot":
        middle = Tensor("query_plus_key", (None, tq, tv, width), ("batch", "seq_q", "seq_k", "feature"))
        shapes = {"query_plus_key": middle, **shapes}
    masks = _masks(config, tq, tv)
    defaulted = frozenset(
        name
        for name, given in (("use_scale", config.use_scale), ("score_mode", config.score_mode))
        if given is None and not (additive and name == "score_mode")
    ) | ({"dropout"} if config.dropout == 0.0 else frozenset())
    derivation = DenseDerivation(
        config=config,
        use_scale=use_scale,
        score_mode=score_mode,
        score_width=width,
        inputs={"query": query, "value": value, "key": key},
        shapes=shapes,
        steps=steps,
        weights=weights,
        masks=masks,
        defaulted=defaulted,
        differences=_differences(config.kind, score_mode, use_scale, dq),
    )
    return _with_sentences(derivation)


def _weights(kind: str, score_mode: str, use_scale: bool, dim: int) -> tuple[DenseWeight, ...]:
    if kind == "additive":
        if not use_scale:
            return ()
        meaning = "multiplies tanh(query + key) per feature before the sum"
        return (DenseWeight("scale", (dim,), "glorot_uniform", meaning),)
    weights = []
    if use_scale:
        meaning = "multiplies query @ key^T" if score_mode == "dot" else "multiplies query + key inside tanh"
        weights.append(DenseWeight("scale", (), "ones", meaning))
    if score_mode == "concat":
        weights.append(DenseWeight("concat_score_weight", (), "ones", "multiplies the sum of tanh"))
    return tuple(weights)


def _steps(
    config: DenseConfig,
    score_mode: str,
    use_scale: bool,
    query: Tensor,
    key: Tensor,
    scores: Tensor,
    output: Tensor,
) -> tuple[Step, ...]:
    if score_mode == "dot":
        formula = "query @ key^T" + (" x scale" if use_scale else "") + "  (matmul, no 1/sqrt(dim))"
    elif score_mode == "concat":
        inner = "scale x (q + k)" if use_scale else "q + k"
        formula = f"concat_score_weight x sum(tanh({inner}), axis=-1),  {_BROADCAST}"
    else:
        inner = "scale x tanh(q + k)" if use_scale else "tanh(q + k)"
        formula = f"sum({inner}, axis=-1),  {_BROADCAST}"
    steps = [Step("scores", formula, scores)]
    blocked = [
        words
        for given, words in (
            (config.value_mask, "value_mask is False"),
            (config.causal, "the key position is after the query position"),
        )
        if given
    ]
    if blocked:
        penalty = "65504" if config.dtype == "float16" else "1e9"
        steps.append(
            Step("mask", f"scores - {penalty} where {' or '.join(blocked)}", scores),
        )
    steps.append(Step("softmax", "softmax(scores) over the key positions (axis -1)", scores))
    if config.dropout:
        steps.append(Step("dropout", f"drop {config.dropout:g} of the weights, in training only", scores))
    steps.append(Step("combine", "attention_scores @ value  (matmul)", output))
    if config.query_mask:
        steps.append(Step("query_mask", "output rows where query_mask is False set to 0", output))
    return tuple(steps)


def _masks(config: DenseConfig, tq: int, tv: int) -> tuple[DenseMask, ...]:
    masks = []
    if config.query_mask:
        masks.append(
            DenseMask("query_mask", (None, tq), "zeroes the output at query positions it marks False")
        )
    if config.value_mask:
        masks.append(
            DenseMask("value_mask", (None, tv), "key positions it marks False get no weight (padding)")
        )
    if config.causal:
        masks.append(
            DenseMask(
                "causal", (1, tq, tv), "query position i attends to key positions j <= i (use_causal_mask)"
            )
        )
    return tuple(masks)


def _differences(kind: str, score_mode: str, use_scale: bool, dim: int) -> tuple[str, ...]:
    name = DENSE_CLASSES[kind]
    how = (
        "the raw dot products of query and key, not divided by sqrt(features)"
        + (" (use_scale learns one scalar for them instead)" if use_scale else "")
        if score_mode == "dot"
        else "tanh of query + key summed over the features (Bahdanau's additive score), not a dot product"
    )
    return (
        f"{name} has no projections and no heads: it scores the query and key as given, with {how}, "
        "and weights the value as given; MultiHeadAttention first projects each into heads "
        "(key_dim per head), divides by sqrt(key_dim), and projects the result back.",
        "It attends along axis 1 only (Tq against Tv, features last); MultiHeadAttention's "
        "attention_axes can attend over any axes of a rank-4 or higher input.",
        "It is called on one list, layer([query, value]) or layer([query, value, key]), with masks as "
        "a list, mask=[query_mask, value_mask] of shapes (B, Tq) and (B, Tv); MultiHeadAttention is "
        "called mha(query, value, key=None) with one attention_mask (B, Tq, Tv).",
    )


def _with_sentences(d: DenseDerivation) -> DenseDerivation:
    config = d.config
    query, value = d.inputs["query"].shape, d.inputs["value"].shape
    tq, tv, dv = query[1], value[1], value[2]
    summary = [
        f"Each of the {tq} query positions weighs all {tv} key positions of its own batch item: "
        f"attention_scores {format_shape(d.shapes['attention_scores'].shape)}, each row summing to 1, "
        f"and the output {format_shape(d.shapes['output'].shape)} is that weighted sum of the value's "
        f"{dv} features.",
    ]
    if d.intermediate is not None:
        summary.append(
            f"The {d.score_mode} scores broadcast query + key to {format_shape(d.intermediate.shape)} "
            f"before the sum: {format_bytes(d.bytes_per_item(d.intermediate))} per batch item in "
            f"{config.dtype}, "
            f"{d.score_width} times the scores' size; dot scores need no such tensor."
        )
    if not d.key_given:
        summary.append("No key is given, so the value is the key: the call is layer([query, value]).")
    warnings = []
    if config.dropout:
        warnings.append(
            f"dropout {config.dropout:g} drops attention weights only when the layer is called with "
            "training=True; the forward pass here is inference, where it does nothing"
        )
    if config.value_mask:
        masks = "value_mask (with the causal mask)" if config.causal else "value_mask"
        penalty = "65504" if config.dtype == "float16" else "1e9"
        summary.append(
            f"Where {masks} leaves a query row no key, that row is not zeroed: every score in it loses the "
            f"same {penalty}, so its weights come out as if unmasked where the dtype keeps the scores "
            f"(float64), and flat, 1/{tv} each, where rounding swallows them (float32): padding included "
            "either way; a False in query_mask is what zeroes such a row of the output."
        )
    return DenseDerivation(**{**d.__dict__, "summary": tuple(summary), "warnings": tuple(warnings)})


def keras_kwargs(d: DenseDerivation) -> dict[str, object]:
    """The real layer's constructor arguments, as the user gave them (the class's defaults left out)."""
    kwargs: dict[str, object] = {}
    if d.config.use_scale is not None:
        kwargs["use_scale"] = d.config.use_scale
    if d.config.score_mode is not None:
        kwargs["score_mode"] = d.config.score_mode
    if d.config.dropout:
        kwargs["dropout"] = d.config.dropout
    if d.config.dtype != "float32":
        kwargs["dtype"] = d.config.dtype
    return kwargs


def constructor(d: DenseDerivation) -> str:
    """``keras.layers.Attention(use_scale=True)``: the layer as the user builds it."""
    arguments = ", ".join(f"{name}={value!r}" for name, value in keras_kwargs(d).items())
    return f"keras.layers.{d.keras_class}({arguments})"


def call_line(d: DenseDerivation) -> str:
    """The call as the user writes it, with the scores asked for."""
    inputs = "[query, value, key]" if d.key_given else "[query, value]"
    parts = [inputs]
    if d.config.query_mask or d.config.value_mask:
        query_mask = "query_mask" if d.config.query_mask else "None"
        value_mask = "value_mask" if d.config.value_mask else "None"
        parts.append(f"mask=[{query_mask}, {value_mask}]")
    if d.config.causal:
        parts.append("use_causal_mask=True")
    parts.append("return_attention_scores=True")
    return f"output, scores = layer({', '.join(parts)})"
