"""Weight maps between Keras's attention layers and PyTorch: which configurations map, and the formulas.

Pure: the formulas are NumPy expressions as text, for people to read and run
(:mod:`mha_cli.output.code` prints them as a script); the runtime
(:mod:`mha_cli.runtime.torch_port`) computes the same maps on arrays and
checks them against torch.

Keras keeps each projection as an einsum kernel: query ``(features, heads,
key_dim)``, output ``(heads, value_dim, output features)``. PyTorch keeps
``(out, in)`` matrices whose ``out`` axis is heads-major, ``h * head_dim + d``,
which is exactly a row-major reshape of Keras's ``(heads, dim)`` axes. So
every map is a reshape and a transpose; nothing is permuted inside a head.

GroupQueryAttention's kernels are the same with ``num_key_value_heads`` in
the key's and value's heads axis; both of its targets are four Linear layers
(Llama's q_proj, k_proj, v_proj, o_proj), attending through
``scaled_dot_product_attention(..., enable_gqa=True)`` (torch) or with the
repeat spelled out (linear).
"""

from __future__ import annotations

from dataclasses import dataclass

from mha_cli.core.config import LayerArgs
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAArgs, GQADerivation
from mha_cli.core.grammar import format_shape

#: Where a map goes (``--to``) or comes from (``--from``).
TARGETS = ("torch", "linear")
#: What each target is, as people know it.
TARGET_NAMES = {
    "torch": "torch.nn.MultiheadAttention",
    "linear": "four torch.nn.Linear layers (q_proj, k_proj, v_proj, o_proj)",
}
#: GroupQueryAttention's targets: PyTorch has no grouped-query module, so both are four Linear layers.
GQA_TARGET_NAMES = {
    "torch": "scaled_dot_product_attention(..., enable_gqa=True) over four Linear layers",
    "linear": "four torch.nn.Linear layers, the key/value repeat spelled out (any torch)",
}


@dataclass(frozen=True)
class Parameter:
    """One PyTorch parameter and the Keras weights it is made of (or, reversed, one Keras weight)."""

    name: str
    shape: tuple[int, ...]
    #: A NumPy expression over ``w``, the other side's weights by name,
    #: e.g. ``w["query/kernel"].reshape(8, 8).T``.
    formula: str
    #: For a concatenation, the expressions joined, in order (a script puts one per line).
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightMap:
    """How one configuration's weights move between Keras and ``target``, in ``direction``."""

    target: str
    #: "to" (Keras weights into PyTorch) or "from" (PyTorch weights into Keras).
    direction: str
    #: The PyTorch module's constructor, as code.
    module: str
    #: The parameters of the receiving side, in order, each with its formula.
    parameters: tuple[Parameter, ...]
    #: How the call and its masks translate, one sentence each.
    call_notes: tuple[str, ...]
    num_heads: int
    key_dim: int
    value_dim: int
    #: Feature sizes of query, key, value and the output.
    query_features: int
    key_features: int
    value_features: int
    output_features: int
    use_bias: bool
    #: torch.nn.MultiheadAttention only: one packed in_proj_weight (key and value widths equal embed_dim).
    packed: bool
    causal: bool
    mask: bool
    dropout: float
    #: GroupQueryAttention: the key/value heads the num_heads query heads share (None: MultiHeadAttention).
    num_key_value_heads: int | None = None

    @property
    def keras_class(self) -> str:
        return "MultiHeadAttention" if self.num_key_value_heads is None else "GroupQueryAttention"

    @property
    def target_name(self) -> str:
        """What the target is, as people know it."""
        names = TARGET_NAMES if self.num_key_value_heads is None else GQA_TARGET_NAMES
        return names[self.target]

    @property
    def four_linear(self) -> bool:
        """Whether the PyTorch side is q_proj, k_proj, v_proj and o_proj (linear, and GQA's targets)."""
        return self.target == "linear" or self.num_key_value_heads is not None

    @property
    def kv_heads(self) -> int:
        """The key's and value's heads: num_key_value_heads, or MultiHeadAttention's num_heads."""
        return self.num_heads if self.num_key_value_heads is None else self.num_key_value_heads


def _refuse(option: str, target: str, reason: str) -> ConfigError:
    return ConfigError(option, target, reason)


def plan(derivation: Derived, target: str, direction: str = "to") -> WeightMap:
    """The map for ``derivation``'s layer, or a ConfigError saying why there is none and what would work."""
    option = f"--{direction}"
    if target not in TARGETS:
        raise _refuse(option, target, f"unknown target; choose {' or '.join(TARGETS)}")
    mask = derivation.config.mask_shape
    if mask is not None and len(mask) > 3:
        raise _refuse(
            "--mask-shape",
            format_shape(mask),
            f"a rank-{len(mask)} mask holds a heads axis, which the map's mask does not: PyTorch's attention "
            "takes (batch, T, S) here (repeated per head by the script); give the mask without heads",
        )
    if isinstance(derivation, GQADerivation):
        return _plan_gqa(derivation, target, direction)
    assert isinstance(derivation, Derivation)
    layer, config = derivation.layer, derivation.config
    if derivation.rank != 3:
        raise _refuse(
            option,
            target,
            f"the inputs have rank {derivation.rank} (batch, {derivation.rank - 2} axes, features); "
            "PyTorch's attention takes (batch, sequence, features): reshape the axes into one sequence "
            "first, e.g. --shape 2048,4 for a 32x64 image attending over every pixel",
        )
    if layer.attention_axes != (1,):
        raise _refuse(option, target, "attention over the one sequence axis only: leave out --axes")
    _refuse_what_the_call_adds(layer, option, target, gqa=False)
    output = layer.output_shape
    if output is not None and len(output) != 1:
        raise _refuse(
            option,
            target,
            f"output_shape {format_shape(output)} has {len(output)} axes; a Linear output projection has "
            "one: give --output-shape one size, or reshape o_proj's output yourself",
        )
    query_features, key_features, value_features = (
        _features(derivation, name) for name in ("query", "key", "value")
    )
    output_features = query_features if output is None else output[0]
    heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
    embed = heads * key_dim
    if target == "torch":
        needs = []
        if value_dim != key_dim:
            needs.append(f"value_dim equal to key_dim (here {value_dim} and {key_dim})")
        if query_features != embed:
            needs.append(
                f"query features equal to num_heads x key_dim (here {query_features} and {heads} x {key_dim})"
            )
        if output_features != query_features:
            needs.append(
                f"output features equal to the query's (here {output_features} and {query_features})"
            )
        if needs:
            raise _refuse(
                option,
                target,
                "torch.nn.MultiheadAttention needs "
                + "; and ".join(needs)
                + "; use --"
                + direction
                + " linear, "
                "which maps any widths",
            )
    packed = target == "torch" and key_features == embed and value_features == embed
    common = {
        "num_heads": heads,
        "key_dim": key_dim,
        "value_dim": value_dim,
        "query_features": query_features,
        "key_features": key_features,
        "value_features": value_features,
        "output_features": output_features,
        "use_bias": layer.use_bias,
        "packed": packed,
        "causal": config.causal,
        "mask": config.mask_shape is not None,
        "dropout": layer.dropout,
    }
    sizes = (query_features, key_features, value_features, output_features, heads, key_dim, value_dim)
    if direction == "to":
        parameters = _to_torch(target, packed, layer.use_bias, *sizes)
    else:
        parameters = _to_keras(target, packed, layer.use_bias, *sizes)
    module = _module(target, packed, layer.use_bias, layer.dropout, *sizes)
    notes = _call_notes(target, heads, config.causal, config.mask_shape is not None, layer.dropout)
    return WeightMap(target, direction, module, parameters, notes, **common)  # type: ignore[arg-type]


def _refuse_what_the_call_adds(layer: LayerArgs | GQAArgs, option: str, target: str, *, gqa: bool) -> None:
    """The gate and the sliding window, which Keras adds inside the call and no PyTorch side has."""
    if layer.use_gate:
        holder = (
            "the four-Linear layout has not"
            if gqa
            else "neither torch.nn.MultiheadAttention nor the four-Linear layout has"
        )
        raise _refuse(
            option,
            target,
            f"use_gate multiplies the attention output by sigmoid(query projection), which {holder}; "
            "leave out --gate",
        )
    if layer.sliding_window is not None:
        # scaled_dot_product_attention's boolean mask attends where True; MultiheadAttention's blocks.
        rule = "attend where |i - j| < window" if gqa else "blocked where |i - j| >= window"
        raise _refuse(
            option,
            target,
            f"sliding_window is a mask Keras builds inside the call; give it to PyTorch as attn_mask "
            f"({rule}) and map the layer without it: leave out --sliding-window",
        )


def _plan_gqa(derivation: GQADerivation, target: str, direction: str) -> WeightMap:
    """GroupQueryAttention's map: four Linear layers for either target (the module differs)."""
    layer, config = derivation.layer, derivation.config
    _refuse_what_the_call_adds(layer, f"--{direction}", target, gqa=True)
    dq, dk, dv = (_features(derivation, name) for name in ("query", "key", "value"))
    u, g, h = layer.num_query_heads, layer.num_key_value_heads, layer.head_dim
    sizes = (dq, dk, dv, dq, u, h, h)
    if direction == "to":
        parameters = _to_torch("linear", False, layer.use_bias, *sizes, kv_heads=g)
    else:
        parameters = _to_keras("linear", False, layer.use_bias, *sizes, kv_heads=g)
    module = (
        f"KerasLayoutGQA({dq}, {dk}, {dv}, num_query_heads={u}, num_key_value_heads={g}, head_dim={h}, "
        f"bias={layer.use_bias}, fused={target == 'torch'})"
    )
    mask = config.mask_shape is not None
    return WeightMap(
        target,
        direction,
        module,
        parameters,
        _gqa_call_notes(target, layer.num_repeats, config.causal, mask, layer.dropout),
        num_heads=u,
        key_dim=h,
        value_dim=h,
        query_features=dq,
        key_features=dk,
        value_features=dv,
        output_features=dq,
        use_bias=layer.use_bias,
        packed=False,
        causal=config.causal,
        mask=mask,
        dropout=layer.dropout,
        num_key_value_heads=g,
    )


def _gqa_call_notes(target: str, repeats: int, causal: bool, mask: bool, dropout: float) -> tuple[str, ...]:
    notes = [
        "--code's script defines KerasLayoutGQA: four Linear layers called in Keras's order, "
        "module(query, value, key, attention_mask), (batch, sequence, features) in, the output and the "
        "scores per query head out."
    ]
    grouping = (
        f"as Keras's ops.repeat(x, {repeats}, axis=2) does: query head i reads key/value head i // {repeats}"
    )
    if target == "torch":
        notes.append(
            "The attention is torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, "
            "enable_gqa=True) on (batch, heads, sequence, head_dim) tensors (torch >= 2.5), which repeats "
            f"each key/value head for its {repeats} query head(s) {grouping}. Before torch 2.5: --to linear."
        )
    else:
        notes.append(
            f"The repeat is spelled out, k.repeat_interleave({repeats}, dim=1) and the same for v, "
            f"{grouping}; it runs on any torch."
        )
    if mask:
        notes.append(
            "attention_mask: scaled_dot_product_attention's boolean attn_mask means what Keras's does "
            "(True: attend), as (batch, 1, T, S): mask[:, None]. The module takes Keras's (batch, T, S)."
        )
    if causal:
        notes.append(
            "use_causal_mask=True: Keras's lower triangle from the top-left corner, "
            "np.tril(np.ones((T, S), bool)); scaled_dot_product_attention's is_causal=True is that same "
            "triangle, but cannot be given with an attn_mask."
        )
    notes.append(
        "A query row with no key to attend to (fully masked) is NaN in PyTorch; Keras 3 gives it zero "
        "scores with return_attention_scores=True."
    )
    if dropout:
        notes.append(
            "dropout: run the PyTorch module in inference mode, module.train(False), as Keras's "
            "training=False."
        )
    return tuple(notes)


def _features(derivation: Derived, name: str) -> int:
    size = derivation.inputs[name].shape[-1]
    assert size is not None  # only the batch axis is None
    return size


def _to_torch(
    target: str,
    packed: bool,
    bias: bool,
    dq: int,
    dk: int,
    dv: int,
    do: int,
    h: int,
    kd: int,
    vd: int,
    *,
    kv_heads: int | None = None,
) -> tuple[Parameter, ...]:
    """PyTorch's parameters from Keras's weights; ``kv_heads``: the key's and value's heads (GQA)."""
    e = h * kd
    g = h if kv_heads is None else kv_heads
    q = f'w["query/kernel"].reshape({dq}, {e}).T'
    o = f'w["attention_output/kernel"].reshape({h * vd}, {do}).T'
    found = []
    if target == "linear":
        k = f'w["key/kernel"].reshape({dk}, {g * kd}).T'
        v = f'w["value/kernel"].reshape({dv}, {g * vd}).T'
        found += [Parameter("q_proj.weight", (e, dq), q), Parameter("k_proj.weight", (g * kd, dk), k)]
        found += [Parameter("v_proj.weight", (g * vd, dv), v), Parameter("o_proj.weight", (do, h * vd), o)]
        if bias:
            found += [
                Parameter("q_proj.bias", (e,), f'w["query/bias"].reshape({e})'),
                Parameter("k_proj.bias", (g * kd,), f'w["key/bias"].reshape({g * kd})'),
                Parameter("v_proj.bias", (g * vd,), f'w["value/bias"].reshape({g * vd})'),
                Parameter("o_proj.bias", (do,), 'w["attention_output/bias"]'),
            ]
        return tuple(found)
    k = f'w["key/kernel"].reshape({dk}, {e}).T'
    v = f'w["value/kernel"].reshape({dv}, {h * vd}).T'
    if packed:
        found.append(Parameter("in_proj_weight", (3 * e, e), f"np.concatenate([{q}, {k}, {v}])", (q, k, v)))
    else:
        found += [
            Parameter("q_proj_weight", (e, dq), q),
            Parameter("k_proj_weight", (e, dk), k),
            Parameter("v_proj_weight", (e, dv), v),
        ]
    if bias:
        biases = tuple(f'w["{name}/bias"].reshape({e})' for name in ("query", "key", "value"))
        found.append(Parameter("in_proj_bias", (3 * e,), f"np.concatenate([{', '.join(biases)}])", biases))
    found.append(Parameter("out_proj.weight", (do, e), o))
    if bias:
        found.append(Parameter("out_proj.bias", (do,), 'w["attention_output/bias"]'))
    return tuple(found)


def _to_keras(
    target: str,
    packed: bool,
    bias: bool,
    dq: int,
    dk: int,
    dv: int,
    do: int,
    h: int,
    kd: int,
    vd: int,
    *,
    kv_heads: int | None = None,
) -> tuple[Parameter, ...]:
    """Keras's weights from PyTorch's parameters; ``kv_heads``: the key's and value's heads (GQA)."""
    e = h * kd
    g = h if kv_heads is None else kv_heads
    if target == "linear":
        sources = {"query": "q_proj.weight", "key": "k_proj.weight", "value": "v_proj.weight"}
        bias_of = {"query": "q_proj.bias", "key": "k_proj.bias", "value": "v_proj.bias"}
        output, output_bias = "o_proj.weight", "o_proj.bias"
    elif packed:
        sources = {
            "query": f"in_proj_weight[0:{e}]",
            "key": f"in_proj_weight[{e}:{2 * e}]",
            "value": f"in_proj_weight[{2 * e}:{3 * e}]",
        }
        bias_of = {}
        output, output_bias = "out_proj.weight", "out_proj.bias"
    else:
        sources = {"query": "q_proj_weight", "key": "k_proj_weight", "value": "v_proj_weight"}
        bias_of = {}
        output, output_bias = "out_proj.weight", "out_proj.bias"
    if target == "torch":
        bias_of = {
            name: f"in_proj_bias[{start}:{start + e}]"
            for name, start in (("query", 0), ("key", e), ("value", 2 * e))
        }

    def read(source: str) -> str:
        name, bracket, rest = source.partition("[")
        return f'w["{name}"]' + (f"[{rest}" if bracket else "")

    features = {"query": dq, "key": dk, "value": dv}
    dims = {"query": kd, "key": kd, "value": vd}
    heads = {"query": h, "key": g, "value": g}
    found = [
        Parameter(
            f"{name}/kernel",
            (features[name], heads[name], dims[name]),
            f"{read(sources[name])}.T.reshape({features[name]}, {heads[name]}, {dims[name]})",
        )
        for name in ("query", "key", "value")
    ]
    if bias:
        found += [
            Parameter(
                f"{name}/bias",
                (heads[name], dims[name]),
                f"{read(bias_of[name])}.reshape({heads[name]}, {dims[name]})",
            )
            for name in ("query", "key", "value")
        ]
    found.append(
        Parameter("attention_output/kernel", (h, vd, do), f"{read(output)}.T.reshape({h}, {vd}, {do})")
    )
    if bias:
        found.append(Parameter("attention_output/bias", (do,), read(output_bias)))
    return tuple(found)


def _module(
    target: str,
    packed: bool,
    bias: bool,
    dropout: float,
    dq: int,
    dk: int,
    dv: int,
    do: int,
    h: int,
    kd: int,
    vd: int,
) -> str:
    if target == "linear":
        sizes = f"{dq}, {dk}, {dv}, {do}"
        return f"KerasLayoutAttention({sizes}, num_heads={h}, key_dim={kd}, value_dim={vd}, bias={bias})"
    widths = "" if packed else f", kdim={dk}, vdim={dv}"
    rate = f", dropout={dropout}" if dropout else ""
    return f"torch.nn.MultiheadAttention({dq}, {h}, bias={bias}{rate}, batch_first=True{widths})"


def _call_notes(target: str, heads: int, causal: bool, mask: bool, dropout: float) -> tuple[str, ...]:
    notes = []
    if target == "torch":
        notes.append(
            "Keras calls layer(query, value, key); PyTorch calls mha(query, key, value): key and value swap "
            "places (without a key, Keras uses value for both)."
        )
        notes.append(
            "batch_first=True keeps Keras's (batch, sequence, features); need_weights=True with "
            "average_attn_weights=False returns the scores per head, (batch, heads, T, S), as Keras's "
            "return_attention_scores=True."
        )
    else:
        notes.append(
            "--code's script defines KerasLayoutAttention: four Linear layers called in Keras's order, "
            "module(query, value, key, attention_mask), (batch, sequence, features) in, per-head scores out."
        )
    if mask:
        if target == "torch":
            notes.append(
                "attention_mask: Keras's True means attend, PyTorch's bool attn_mask True means blocked: "
                "pass ~mask, repeated per head to PyTorch's 3-D layout (batch * heads, T, S), "
                f"row b * {heads} + h: np.repeat(~mask, {heads}, axis=0). A (T, S) mask shared by the "
                "batch may go in as ~mask."
            )
        else:
            notes.append(
                "attention_mask: the module takes Keras's mask as it is (True: attend), (batch, T, S)."
            )
    if causal:
        notes.append(
            "use_causal_mask=True: Keras's lower triangle from the top-left corner, "
            "np.tril(np.ones((T, S), bool)); PyTorch: blocked = ~that (or is_causal=True with T == S)."
        )
    notes.append(
        "A query row with no key to attend to (fully masked) is NaN in PyTorch; Keras 3 gives it zero "
        "scores with return_attention_scores=True, Keras 2 equal ones."
    )
    if dropout:
        notes.append(
            "dropout: run the PyTorch module in inference mode, module.train(False), as Keras's "
            "training=False."
        )
    return tuple(notes)
