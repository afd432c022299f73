"""The shape algebra of keras.layers.MultiHeadAttention, without Keras.

Given input shapes and the layer's arguments this module derives what the real
layer does: the role of every input axis, the einsum equations (the same
strings, built the same way as ``keras/src/layers/attention/
multi_head_attention.py`` in Keras 3.12+), every intermediate shape, the
weights and the costs. It imports nothing beyond the standard library, so
answers that need no forward pass are instant, and the derivation can be
checked against the real layer (see :mod:`mha_cli.operations.explain`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace

from mha_cli.core.config import (
    DEFAULT_NUM_HEADS,
    LayerArgs,
    MHAConfig,
    Role,
    Shape,
)
from mha_cli.core.derived import Axis, Derivation, Einsum, Tensor, Weight, bind_einsum
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape
from mha_cli.core.limits import check_shape_limits
from mha_cli.core.masks import plan_mask
from mha_cli.core.summary import summarize
from mha_cli.core.validate import check_settings, positive

# Keras names einsum axes with ascii_lowercase (`_index_to_einsum_variable`).
_LETTERS = string.ascii_lowercase

_RESERVED_NAMES = frozenset({"batch", "heads", "feature", "key_dim", "value_dim", "out"})
_DEFAULT_AXIS_NAMES: dict[int, tuple[str, ...]] = {
    1: ("seq",),
    2: ("height", "width"),
    3: ("depth", "height", "width"),
    4: ("time", "depth", "height", "width"),
}


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


def _resolve_axes(given: tuple[int, ...] | None, rank: int, keras: int = 3) -> tuple[int, ...]:
    """Keras's resolution: None -> 1..rank-2; negative a -> rank + a (3.12+).

    Keras 2 resolves a negative axis against the projected rank instead (batch,
    the axes between, heads, key_dim): a -> rank + 1 + a, so -2 is the heads
    axis and -3 the last axis before the features (measured, tf_keras 2.21).

    The resolved axes index the projected query (batch, ..., heads, key_dim), so
    axis rank - 1, the input's feature axis, is the heads axis there: both Keras
    versions attend over the heads when given it. Axis 0, the
    batch, also runs (attending across a batch's items), but mha-explain does not
    explain it; the key_dim axis is what the real layer refuses.
    """
    if given is None:
        return tuple(range(1, rank - 1))
    shown = format_shape(given)
    if not given:
        raise ConfigError("--axes", "()", "no axes given; write e.g. 1 or 1,2, or none for all axes")
    shift = 1 if keras == 2 else 0
    legal = f"attention axes are 1..{rank - 2} (or {-(rank - 1) - shift}..{-2 - shift})"
    if keras == 2:
        legal += " in Keras 2, which counts negative axes from the end of the projected query"
    resolved = []
    for axis in given:
        positive = axis + rank + shift if axis < 0 else axis
        if not 0 <= positive < rank:
            where = (
                "the key_dim axis of the projected query (batch, ..., heads, key_dim)"
                if positive == rank
                else f"out of range for a rank-{rank} input"
            )
            fails = "the real layer fails on it (its einsum would repeat a letter)"
            if positive == rank and keras == 3 and rank == 3:
                # measured, Keras 3.15: the fused path of a plain call never reads attention_axes
                fails = (
                    "the real layer fails on it whenever it computes its scores (its einsum would repeat "
                    "a letter; only a plain call without dropout runs, on the fused path, which ignores "
                    "attention_axes)"
                )
            raise ConfigError("--axes", shown, f"axis {axis} is {where}; {fails}; " + legal)
        if positive == 0:
            raise ConfigError(
                "--axes",
                shown,
                f"axis {axis} is the batch axis: Keras runs it, attending across the items of a batch "
                f"(never what a model means), and mha-explain does not explain it; {legal}",
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
    for name in names:
        # The labels the derivation writes: _q/_k once query and key positions meet, out/outN for
        # output_shape's axes. A name like them would label two axes alike.
        if name.endswith(("_q", "_k")):
            raise ConfigError(
                "--axis-names",
                shown,
                f"{name!r} ends in {name[-2:]}, which marks an attended axis's query or key side; "
                "choose another name",
            )
        if name in _RESERVED_NAMES or re.fullmatch(r"out\d+", name):
            raise ConfigError("--axis-names", shown, f"{name!r} is reserved; choose another name")
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
    positive("--num-heads", config.num_heads)
    positive("--key-dim", config.key_dim)
    positive("--value-dim", config.value_dim)
    if config.output_shape is not None:
        if not config.output_shape:
            raise ConfigError("--output-shape", "()", "give at least one size, or leave it out")
        for size in config.output_shape:
            positive("--output-shape", size)
    check_settings(
        dropout=config.dropout,
        dtype=config.dtype,
        batch=config.batch,
        sliding_window=config.sliding_window,
        keras=config.keras,
    )
    if config.keras == 2:
        for option, present, since in (
            ("--gate", config.use_gate, "use_gate (Keras 3.14)"),
            ("--sliding-window", config.sliding_window is not None, "sliding_window (Keras 3.15)"),
        ):
            if present:
                raise ConfigError(option, None, f"Keras 2 has no {since}; leave it out, or use --keras 3")

    attended = _resolve_axes(config.attention_axes, rank, config.keras)
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

    # attention_axes index the projected query (batch, ..., heads, key_dim): axis rank - 1 is the
    # heads there, not the input's feature axis.
    heads_axis = rank - 1

    def role(i: int) -> Role:
        if i == 0:
            return Role.BATCH
        if i == heads_axis:
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

    def projected_labels(suffix: str) -> tuple[str, ...]:
        """batch, the axes between, heads: the projected tensors' axes before key_dim / value_dim."""
        head = "heads_" + suffix if heads_axis in attended else "heads"
        return ("batch", *(side(i, suffix) for i in middle), head)

    def projected(name: str, shape: Shape, suffix: str, channel: str, size: int) -> Tensor:
        return Tensor(name, (None, *shape[:-1], heads, size), (*projected_labels(suffix), channel))

    inputs = {
        "query": input_tensor("query", query),
        "key": input_tensor("key", key),
        "value": input_tensor("value", value),
    }
    q_proj = projected("query_projected", query, "q", "key_dim", key_dim)
    k_proj = projected("key_projected", key, "k", "key_dim", key_dim)
    v_proj = projected("value_projected", value, "k", "value_dim", value_dim)
    # Keras's _build_attention_equation: the axes not attended (batch, free, heads) lead the scores
    # in their order, then the attended axes in the order given, the query's and then the key's.
    q_sizes, k_sizes = (None, *query[:-1], heads), (None, *key[:-1], heads)
    q_labels, k_labels = projected_labels("q"), projected_labels("k")
    kept = [i for i in range(rank) if i not in attended]
    scores = Tensor(
        "attention_scores",
        (
            *(q_sizes[i] for i in kept),
            *(q_sizes[i] for i in attended),
            *(k_sizes[i] for i in attended),
        ),
        (
            *(q_labels[i] for i in kept),
            *(q_labels[i] for i in attended),
            *(k_labels[i] for i in attended),
        ),
    )
    attention_output = projected("attention_output", query, "q", "value_dim", value_dim)
    output = Tensor("output", (None, *query[:-1], *out_dims), ("batch", *names, *out_labels))
    shapes = {
        "query_projected": q_proj,
        "key_projected": k_proj,
        "value_projected": v_proj,
    }

    einsums: dict[str, Einsum] = {}
    weights: list[Weight] = []

    def project(
        step: str, source: Tensor, kernel_shape: Shape, kernel_labels: tuple[str, ...], result: Tensor
    ) -> None:
        """One projection, its einsum and its weight from one statement of the kernel.

        EinsumDense's bias has the kernel's output axes: all but the contracted ones.
        """
        weight = "attention_output" if step == "output" else step
        contracted = len(kernel_shape) - len(result.shape[rank - 1 :])
        equation = projection_equation(rank - 1, contracted, len(kernel_shape) - contracted)
        operands = (source, Tensor(f"{weight}/kernel", kernel_shape, kernel_labels))
        einsums[step] = bind_einsum(step, equation, operands, result)
        bias = kernel_shape[contracted:] if layer.use_bias and weight not in config.unbiased else None
        weights.append(Weight(weight, kernel_shape, bias))

    per_head = ("feature", "heads")
    project("query", inputs["query"], (query[-1], heads, key_dim), (*per_head, "key_dim"), q_proj)
    project("key", inputs["key"], (key[-1], heads, key_dim), (*per_head, "key_dim"), k_proj)
    project("value", inputs["value"], (value[-1], heads, value_dim), (*per_head, "value_dim"), v_proj)
    if layer.use_gate:
        # Keras >= 3.14: a sigmoid projection of the query, multiplied into the
        # attention output before the output projection.
        gate = projected("gate", query, "q", "value_dim", value_dim)
        shapes["gate"] = gate
        project("gate", inputs["query"], (query[-1], heads, value_dim), (*per_head, "value_dim"), gate)
    dot_eq, combine_eq = attention_equations(rank + 1, attended)
    einsums["dot_product"] = bind_einsum("dot_product", dot_eq, (k_proj, q_proj), scores)
    einsums["combine"] = bind_einsum("combine", combine_eq, (scores, v_proj), attention_output)
    project(
        "output", attention_output, (heads, value_dim, *out_dims), ("heads", "value_dim", *out_labels), output
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


def shrunk(config: MHAConfig, most: int = 4) -> MHAConfig:
    """The same layer on inputs with at most ``most`` positions along every axis but the features.

    Equations, axis roles and weight shapes depend on the rank, the axes and the
    feature sizes only, so they are this configuration's own; the sizes that
    make a forward pass big (attended and free positions) are what shrink.
    """

    def small(shape: Shape | None) -> Shape | None:
        return None if shape is None else (*(min(size, most) for size in shape[:-1]), shape[-1])

    mask = config.mask_shape
    if mask is not None:
        # A mask's axes are the scores' positions (size 1 broadcasts and stays), except a leading
        # batch axis when the mask has every axis of the scores but the heads.
        scores_rank = len(derive(config).shapes["attention_scores"].shape)
        positions = mask[1:] if len(mask) == scores_rank - 1 else mask
        shrunk_positions = tuple(size if size in (None, 1) else min(size, most) for size in positions)
        mask = (*mask[: len(mask) - len(positions)], *shrunk_positions)
    return replace(
        config,
        query_shape=small(config.query_shape) or config.query_shape,
        value_shape=small(config.value_shape),
        key_shape=small(config.key_shape),
        mask_shape=mask,
    )


@dataclass(frozen=True)
class MultiHeadAttentionKind:
    """``keras.layers.MultiHeadAttention`` as a layer kind (see :mod:`mha_cli.core.kinds`)."""

    name: str = "mha"
    keras_class: str = "MultiHeadAttention"
    saved_class: str = "MultiHeadAttention"
    config_type: type = MHAConfig
    own_arguments: tuple[str, ...] = (
        "num_heads",
        "key_dim",
        "value_dim",
        "output_shape",
        "axes",
        "axis_names",
    )

    def derive(self, config: MHAConfig) -> Derivation:
        return derive(config)

    def check_backend(self, derived: Derivation, backend: str) -> None:
        check_shape_limits(derived, backend)

    def shrunk(self, config: MHAConfig, most: int) -> MHAConfig:
        return shrunk(config, most)

    def keras_kwargs(self, derived: Derivation) -> dict[str, object]:
        # The axes as the user gave them: the real layer resolves them itself, and the check
        # compares its resolution with ours.
        return derived.layer.keras_kwargs(derived.config.attention_axes)

    def examples(self) -> tuple[MHAConfig, ...]:
        return (
            MHAConfig(query_shape=(8, 16)),
            MHAConfig(query_shape=(8, 16), value_shape=(4, 12), num_heads=3, key_dim=5, value_dim=7),
            MHAConfig(query_shape=(6, 5, 4), attention_axes=(1,), mask_shape=(None, 5, 6, 6)),
            MHAConfig(query_shape=(5, 8), output_shape=(2, 5), use_bias=False, causal=True),
        )


MHA = MultiHeadAttentionKind()
