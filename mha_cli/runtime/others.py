"""The attention mha-explain does not explain: every call of a layer in whose own call a softmax
over rank >= 3 or ``ops.dot_product_attention`` runs (KerasHub's LlamaAttention, Keras's Attention,
a user's own class), found by tracing the model's call with each layer's ``call`` and those ops
wrapped. What decides is what runs, never a class's name.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mha_cli.core.grammar import format_shape
from mha_cli.core.models import InputSpec
from mha_cli.core.other import Heads, OtherCheck, Projection, read_heads
from mha_cli.runtime.keras_adapter import _to_numpy, is_keras2, uninterrupted
from mha_cli.runtime.models import (
    _LOGIT_SPREAD,
    LoadedModel,
    _drawn,
    _model_rejects,
    _structured,
    attention_bases,
)
from mha_cli.runtime.other_reference import (
    EinsumRan,
    FusedRan,
    Ran,
    SoftmaxRan,
    SublayerRan,
    grouped_logits,
    verify,
)
from mha_cli.runtime.quiet import native_output_silenced


@dataclass(frozen=True)
class OtherAttention:
    """One call of a layer mha-explain does not explain, in whose own call attention ran: a softmax
    over a tensor of rank 3 or more, or ``ops.dot_product_attention`` (KerasHub's LlamaAttention,
    keras.layers.Attention, a user's own attention class). Measured on the symbolic pass."""

    path: str
    class_name: str
    call_index: int
    #: The call's tensor arguments, by name (a list's items as ``inputs[0]``), batch axis included.
    inputs: tuple[tuple[str, tuple[int | None, ...]], ...]
    #: Its (first) output's shape, batch axis included (None: no tensor returned).
    output: tuple[int | None, ...] | None
    #: What its call attended with: ``softmax`` or ``dot_product_attention``.
    ran: str
    #: That tensor's shape: the softmax's input, or the query given to ops.dot_product_attention.
    traced: tuple[int | None, ...]
    #: Its own Dense and EinsumDense sublayers (not those of layers inside it).
    projections: tuple[Projection, ...]
    #: Its weights' element count, and the dtype it computes in.
    params: int = 0
    dtype: str = "float32"
    #: What the real pass showed (None: only the symbolic pass ran).
    check: OtherCheck | None = None

    @property
    def key(self) -> str:
        """``path`` for a layer called once, ``path#index`` for the later calls of a shared one."""
        return self.path if self.call_index == 0 else f"{self.path}#{self.call_index}"

    @property
    def evidence(self) -> str:
        """What ran, in words: ``softmax over (None, 4, 8, 8)``."""
        shown = format_shape(self.traced)
        if self.ran == "dot_product_attention":
            return f"ops.dot_product_attention, query {shown}"
        return f"softmax over {shown}"

    @property
    def heads(self) -> Heads | str:
        """Its heads, read from its own query/key/value kernels and agreeing with its call; or why not."""
        return read_heads(self.projections, self.ran, self.traced)


@uninterrupted
def other_attention(
    loaded: LoadedModel, inputs: tuple[InputSpec, ...], real: tuple[int, int] | None = None
) -> tuple[OtherAttention, ...]:
    """Every call of a layer that computes attention and is not MultiHeadAttention or
    GroupQueryAttention (or a subclass), from tracing the model's call on symbolic inputs; or,
    with ``real`` (batch, seed), from one forward pass on random inputs (runtime/models.py's), which
    also records what ran in each such call and re-executes it (runtime/other_reference.py).

    A call computes attention when a softmax over a tensor of rank 3 or more (a Softmax layer or
    ``ops.softmax``), or ``ops.dot_product_attention``, runs in its own call: not inside a Keras
    building block it calls (Dense, Softmax...), nor inside a layer scan explains. Keras's own
    layers never count except ``Attention`` and ``AdditiveAttention``; models never count. The
    class's name decides nothing. Keras 3 only (tf_keras models: none are looked for).
    """
    keras = loaded.keras
    if is_keras2(keras):
        return ()
    known = tuple(base for _, base in attention_bases(keras))
    plain = (keras.layers.Attention,)  # AdditiveAttention subclasses it
    layers = tuple(loaded.model._flatten_layers(include_self=False))
    frames: list[dict[str, Any]] = []
    # One list per pass over the model: torch's symbolic pass runs it twice, on batch and unknown
    # sizes 83 and then 89, to tell which sizes are unknown; the others run it once.
    passes: list[list[_Seen]] = []

    def ran(what: str, tensor: Any) -> None:
        # The layer whose own call ran it: a softmax inside a Keras building block (a Dense's
        # activation) or inside a layer scan explains belongs to neither.
        if frames and frames[-1]["role"] == "other":
            frames[-1].setdefault("evidence", (what, _dims(tensor)))  # the first it ran

    def record(event: Callable[[], Ran]) -> None:
        """On the real pass, what ran in an attention call's own frame, as arrays."""
        if real is not None and frames and frames[-1]["role"] == "other":
            frames[-1]["ran"].append(event())

    def array(tensor: Any) -> np.ndarray:
        return _to_numpy(keras, tensor)

    def role(layer: Any) -> str:
        if isinstance(layer, known):
            return "known"
        if isinstance(layer, keras.Model):
            return "model"
        if isinstance(layer, plain) or not type(layer).__module__.startswith("keras."):
            return "other"
        return "keras"  # a building block: what runs in it belongs to the layer that called it

    def wrapped(layer: Any) -> Any:
        original = layer.call
        kind = role(layer)

        def call(*args: Any, **kwargs: Any) -> Any:
            softmax_layer = isinstance(layer, keras.layers.Softmax) and args and len(_dims(args[0])) >= 3
            if softmax_layer:
                ran("softmax", args[0])  # before its own frame: its caller's
            frame: dict[str, Any] = {"role": kind, "ran": []}
            frames.append(frame)
            try:
                result = original(*args, **kwargs)
            finally:
                frames.pop()
            first = result[0] if isinstance(result, list | tuple) and result else result
            if softmax_layer:
                mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
                record(
                    lambda: SoftmaxRan(array(args[0]), None if mask is None else array(mask), array(first))
                )
            elif args:
                record(lambda: _sublayer_ran(keras, layer, array, args[0], first))
            if real is not None and isinstance(layer, plain) and "evidence" in frame:
                frame["dense"] = _listed_call(original, args, kwargs, array)
            if "evidence" in frame and passes:
                named = _tensor_arguments(original, args, kwargs)
                if isinstance(layer, plain):  # its list, by the names its docstring gives them
                    named = [(_ATTENTION_INPUTS.get(name, name), tensor) for name, tensor in named]
                passes[-1].append(
                    _Seen(
                        layer,
                        tuple((name, _dims(tensor)) for name, tensor in named),
                        _dims(first) if hasattr(first, "shape") else None,
                        frame["evidence"],
                        tuple(frame["ran"]),
                        array(first) if real is not None and hasattr(first, "shape") else None,
                        frame.get("dense"),
                    )
                )
            return result

        return call

    originals_by_name = {name: getattr(keras.src.ops, name) for name in _PATCHED}

    # Each stand-in keeps its function's signature (functools.wraps): layers inspect it to decide
    # their path (``"flash_attention" in inspect.signature(ops.dot_product_attention).parameters``).
    @functools.wraps(originals_by_name["softmax"])
    def softmax(x: Any, *args: Any, **kwargs: Any) -> Any:
        if len(_dims(x)) >= 3:
            ran("softmax", x)
        result = originals_by_name["softmax"](x, *args, **kwargs)
        record(lambda: SoftmaxRan(array(x), None, array(result)))
        return result

    @functools.wraps(originals_by_name["dot_product_attention"])
    def dot_product_attention(query: Any, *args: Any, **kwargs: Any) -> Any:
        ran("dot_product_attention", query)
        original = originals_by_name["dot_product_attention"]
        result = original(query, *args, **kwargs)
        record(lambda: _fused_ran(keras, original, array, (query, *args), kwargs, result))
        return result

    @functools.wraps(originals_by_name["einsum"])
    def einsum(subscripts: str, *operands: Any, **kwargs: Any) -> Any:
        result = originals_by_name["einsum"](subscripts, *operands, **kwargs)
        record(lambda: EinsumRan(subscripts, tuple(array(o) for o in operands), array(result)))
        return result

    stand_ins: dict[str, Callable[..., Any]] = {
        "softmax": softmax,
        "dot_product_attention": dot_product_attention,
        "einsum": einsum,
    }
    patched = [
        (module, name, getattr(module, name)) for module in (keras.src.ops, keras.ops) for name in _PATCHED
    ]

    def one_pass(structured: Any) -> Any:
        passes.append([])
        return loaded.model.call(structured)

    try:
        for layer in layers:
            layer.call = wrapped(layer)
        for module, name, _ in patched:
            setattr(module, name, stand_ins[name])
        with native_output_silenced(), warnings.catch_warnings(), _model_rejects(inputs):
            warnings.simplefilter("ignore")
            if real is None:
                tensors_in = [keras.KerasTensor((None, *s.shape), dtype=s.dtype or "float32") for s in inputs]
                keras.src.backend.compute_output_spec(one_pass, _structured(loaded.model, tensors_in))
            else:
                passes.append([])
                drawn = _drawn(loaded, inputs, *real)
                loaded.model(_structured(loaded.model, drawn), training=False)
    finally:
        for module, name, original in patched:
            setattr(module, name, original)
        for layer in layers:
            with contextlib.suppress(AttributeError):
                del layer.call
    return _as_found(keras, passes)


@dataclass(frozen=True)
class _Seen:
    """One call other_attention saw on one pass: shapes as traced, batch axis included."""

    layer: Any
    inputs: tuple[tuple[str, tuple[int | None, ...]], ...]
    output: tuple[int | None, ...] | None
    evidence: tuple[str, tuple[int | None, ...]]
    #: On the real pass: what ran in its own call, and its (first) output.
    ran: tuple[Ran, ...] = ()
    output_array: np.ndarray | None = None
    #: keras.layers.Attention's and AdditiveAttention's call on the real pass (runtime/dense.py's
    #: verify_call reads it): its inputs and masks as arrays, and use_causal_mask.
    dense_call: dict[str, Any] | None = None


def _listed_call(
    call: Any, args: tuple[Any, ...], kwargs: dict[str, Any], array: Callable[[Any], np.ndarray]
) -> dict[str, Any]:
    """What keras.layers.Attention.call received: ``inputs`` and ``mask`` as arrays, and the flag."""
    bound = inspect.signature(call).bind_partial(*args, **kwargs).arguments
    mask = bound.get("mask")
    return {
        "inputs": [array(tensor) for tensor in bound["inputs"]],
        "mask": None if mask is None else [None if m is None else array(m) for m in mask],
        "use_causal_mask": bool(bound.get("use_causal_mask", False)),
    }


def _sublayer_ran(keras: Any, layer: Any, array: Callable[[Any], np.ndarray], given: Any, result: Any) -> Ran:
    """A sublayer an attention call called: a Dense or EinsumDense with its weights and equation."""
    projection = isinstance(layer, keras.layers.EinsumDense | keras.layers.Dense)
    kernel = getattr(layer, "kernel", None) if projection else None
    bias = getattr(layer, "bias", None) if projection else None
    return SublayerRan(
        name=layer.name,
        class_name=type(layer).__name__,
        given=array(given) if hasattr(given, "shape") else None,
        result=array(result) if hasattr(result, "shape") else None,
        kernel=None if kernel is None else array(kernel),
        bias=None if bias is None else array(bias),
        equation=getattr(layer, "equation", None) if projection else None,
    )


def _fused_ran(
    keras: Any,
    original: Callable[..., Any],
    array: Callable[[Any], np.ndarray],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: Any,
) -> Ran:
    """A call of ops.dot_product_attention, with the same call re-run on a query multiplied so that
    its logits spread about _LOGIT_SPREAD (runtime/other_reference.py's FusedRan says why)."""
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    given = bound.arguments
    query, key = array(given["query"]), array(given["key"])
    scale = given.get("scale")
    cap = given.get("attn_logits_soft_cap")
    logits = (1 / math.sqrt(query.shape[-1]) if scale is None else float(scale)) * grouped_logits(query, key)
    spread = float(logits.std()) if logits.size else 0.0
    sharpened = None
    if spread > 0 and query.ndim == 4 and key.ndim == 4 and query.shape[2] % key.shape[2] == 0:
        factor = _LOGIT_SPREAD / spread
        again = dict(given, query=keras.ops.multiply(given["query"], factor))
        sharpened = (factor, array(original(**again)))

    def optional(name: str) -> np.ndarray | None:
        value = given.get(name)
        return None if value is None else array(value)

    return FusedRan(
        query=query,
        key=key,
        value=array(given["value"]),
        mask=optional("mask"),
        bias=optional("bias"),
        scale=None if scale is None else float(scale),
        is_causal=bool(given.get("is_causal")),
        soft_cap=None if cap is None else float(cap),
        result=array(result),
        sharpened=sharpened,
    )


def _soft_cap(layer: Any) -> float | None:
    """The logit soft cap the layer states (Gemma 2's ``logit_soft_cap``), if any: in its config, or,
    for a layer whose get_config does not list it (KerasHub's CachedGemmaAttention, 0.32), the
    attribute its constructor stores it in."""
    try:
        cap = layer.get_config().get("logit_soft_cap")
    except Exception:  # a user's get_config that fails: the attribute may still say
        cap = None
    if cap is None:
        cap = getattr(layer, "logit_soft_cap", None)
    return float(cap) if isinstance(cap, int | float) and not isinstance(cap, bool) else None


def _as_found(keras: Any, passes: list[list[_Seen]]) -> tuple[OtherAttention, ...]:
    """The calls of the passes, a size that differs between passes (or the batch's) unknown."""

    def merged(shapes: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        first = shapes[0]
        if len({len(shape) for shape in shapes}) > 1:
            return first
        return tuple(
            None if axis == 0 or len({shape[axis] for shape in shapes}) > 1 else size
            for axis, size in enumerate(first)
        )

    runs = [run for run in passes if run]
    if not runs or any(len(run) != len(runs[0]) for run in runs):
        runs = runs[:1]
    found = []
    counts: dict[int, int] = {}
    for calls in zip(*runs, strict=True):
        seen = calls[0]
        index = counts.get(id(seen.layer), 0)
        counts[id(seen.layer)] = index + 1
        what, _ = seen.evidence
        projections = _projections(keras, seen.layer)
        check = None
        if seen.output_array is not None and seen.dense_call is not None:
            from mha_cli.runtime.dense import verify_call

            check = verify_call(keras, seen.layer, seen.dense_call, seen.output_array)
        elif seen.output_array is not None:
            heads = read_heads(projections, what, seen.evidence[1])
            dtype = str(getattr(seen.layer, "compute_dtype", None) or "float32")
            check = verify(seen.ran, heads, seen.output_array, dtype, _soft_cap(seen.layer))
        found.append(
            OtherAttention(
                path=str(getattr(seen.layer, "path", seen.layer.name)),
                class_name=type(seen.layer).__name__,
                call_index=index,
                inputs=tuple(
                    (name, merged([call.inputs[number][1] for call in calls]))
                    for number, (name, _) in enumerate(seen.inputs)
                ),
                output=None if seen.output is None else merged([call.output or () for call in calls]),
                ran=what,
                traced=merged([call.evidence[1] for call in calls]),
                projections=projections,
                params=int(seen.layer.count_params()) if seen.layer.built else 0,
                dtype=str(getattr(seen.layer, "compute_dtype", None) or "float32"),
                check=check,
            )
        )
    return tuple(found)


def _dims(tensor: Any) -> tuple[int | None, ...]:
    """A traced tensor's shape, a size Keras leaves symbolic (JAX's) as None."""
    dims: list[int | None] = []
    try:
        for size in getattr(tensor, "shape", ()):
            try:
                dims.append(None if size is None else int(size))
            except Exception:  # a symbolic size (jax.export's), which refuses int()
                dims.append(None)
    except (TypeError, ValueError):  # a shape of unknown rank
        return ()
    return tuple(dims)


def _tensor_arguments(call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """A call's tensor arguments by parameter name (a list's items as ``inputs[0]``)."""
    try:
        bound = inspect.signature(call).bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = {**{f"arg{index}": arg for index, arg in enumerate(args)}, **kwargs}
    named = []
    for name, value in bound.items():
        items = value if isinstance(value, list | tuple) else [value]
        for index, item in enumerate(items):
            if hasattr(item, "shape") and hasattr(item, "dtype"):
                named.append((f"{name}[{index}]" if isinstance(value, list | tuple) else name, item))
    return named


#: keras.layers.Attention's list of inputs, by the names its docstring gives them.
_ATTENTION_INPUTS = {"inputs[0]": "query", "inputs[1]": "value", "inputs[2]": "key"}
#: The keras.ops functions whose call marks attention (other_attention).
_RAN = ("softmax", "dot_product_attention")
#: The keras.ops functions other_attention wraps: those, and einsum, which the real pass records.
_PATCHED = (*_RAN, "einsum")


def _projections(keras: Any, layer: Any) -> tuple[Projection, ...]:
    """The Dense and EinsumDense layers ``layer`` holds itself, with their kernels as built."""
    held = []
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        if isinstance(sub, keras.layers.EinsumDense | keras.layers.Dense) and getattr(sub, "built", False):
            kernel = getattr(sub, "kernel", None)
            held.append(
                Projection(
                    name=sub.name,
                    class_name=type(sub).__name__,
                    equation=getattr(sub, "equation", None),
                    kernel=() if kernel is None else tuple(int(size) for size in kernel.shape),
                )
            )
    return tuple(held)
