"""Run a real keras.layers.Attention or AdditiveAttention (``--layer dot|additive``) and read it back.

The layer is built from the user's arguments, its weights are set to seeded random values (so a
misplaced scale shows in the NumPy check), and it is called three ways on the same inputs and masks:
with the scores, without them (as a model calls it), and on ``keras.Input`` (the symbolic shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mha_cli.core.dense import DenseConfig, DenseDerivation, derive_dense, keras_kwargs
from mha_cli.core.other import OtherCheck, Step, Verdict
from mha_cli.runtime.keras_adapter import keras_rejects, load_keras


@dataclass(frozen=True)
class DenseRun:
    """What the real layer did: its version, weights, shapes, and every array as float64."""

    keras_version: str
    backend: str
    #: Weight shapes by name (scale, concat_score_weight), as the built layer holds them.
    weights: dict[str, tuple[int, ...]]
    #: Shapes of the forward pass: output, attention_scores.
    shapes: dict[str, tuple[int, ...]]
    #: Shapes of the call on keras.Input (what a functional model and model.summary() say).
    symbolic: dict[str, tuple[int | None, ...]]
    #: query, value, key, query_mask, value_mask (as fed), the weights by name, output,
    #: attention_scores, output_without_scores: float64 (masks bool).
    arrays: dict[str, np.ndarray] = field(repr=False)
    #: The layer's get_config() entries of its own (use_scale, score_mode, dropout).
    layer_config: dict[str, Any] = field(default_factory=dict)
    #: Keras's own words when its symbolic call refused what the forward pass ran.
    symbolic_refusal: str | None = None


def _lengths(rng: np.random.Generator, batch: int, size: int) -> np.ndarray:
    """How many leading positions each batch item keeps (padding at the end); the last item is padded
    whenever the axis has two or more positions, so a mask always blocks something."""
    lengths = rng.integers(1, size + 1, size=batch)
    if size > 1:
        lengths[-1] = max(1, size // 2)
    return lengths


def padding_mask(rng: np.random.Generator, batch: int, size: int) -> np.ndarray:
    """A (batch, size) boolean mask, True for each item's leading positions."""
    return np.arange(size)[None, :] < _lengths(rng, batch, size)[:, None]


def _weight_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded values unlike the initializers' (ones, Glorot), so the check sees each weight used."""
    if name == "scale" and shape:  # AdditiveAttention's per-feature scale
        return rng.normal(0.0, 1.0, shape)
    return rng.uniform(0.5, 1.5, shape)


def run_dense(d: DenseDerivation, backend: str) -> DenseRun:
    """Build the real layer, set its weights, call it with and without the scores and on keras.Input."""
    keras = load_keras(backend)
    config = d.config
    rng = np.random.default_rng(config.seed)
    fed = {
        name: rng.normal(0.0, 1.0, tensor.with_batch(config.batch))
        for name, tensor in d.inputs.items()
        if name != "key" or d.key_given
    }
    masks: dict[str, np.ndarray] = {}
    if config.query_mask:
        masks["query_mask"] = padding_mask(rng, config.batch, d.inputs["query"].shape[1] or 0)
    if config.value_mask:
        masks["value_mask"] = padding_mask(rng, config.batch, d.inputs["value"].shape[1] or 0)
    with keras_rejects():
        layer = getattr(keras.layers, d.keras_class)(**keras_kwargs(d))
        tensors = [keras.ops.convert_to_tensor(fed[name], dtype=config.dtype) for name in fed]
        layer.build([tuple(t.shape) for t in tensors])
        for variable in layer.weights:
            name = str(variable.path).rsplit("/", 1)[-1]
            variable.assign(_weight_values(rng, name, tuple(variable.shape)).astype(np.float64))
        mask = _mask_list(keras, masks)
        call = {"mask": mask, "use_causal_mask": config.causal, "training": False}
        output, scores = layer(tensors, return_attention_scores=True, **call)
        plain = layer(tensors, **call)
    arrays = {name: _float64(keras, t) for name, t in zip(fed, tensors, strict=True)}
    if not d.key_given:
        arrays["key"] = arrays["value"]
    arrays.update(masks)
    weights = {}
    for variable in layer.weights:
        name = str(variable.path).rsplit("/", 1)[-1]
        weights[name] = tuple(int(size) for size in variable.shape)
        arrays[name] = np.asarray(keras.ops.convert_to_numpy(variable.value), dtype=np.float64)
    arrays["output"] = _float64(keras, output)
    arrays["attention_scores"] = _float64(keras, scores)
    arrays["output_without_scores"] = _float64(keras, plain)
    symbolic, refusal = _symbolic(keras, d, masks)
    own = ("use_scale", "score_mode", "dropout")
    layer_config = {name: value for name, value in layer.get_config().items() if name in own}
    return DenseRun(
        keras_version=str(keras.__version__),
        backend=backend,
        weights=weights,
        shapes={name: tuple(arrays[name].shape) for name in ("output", "attention_scores")},
        symbolic=symbolic,
        arrays=arrays,
        layer_config=layer_config,
        symbolic_refusal=refusal,
    )


def _mask_list(keras: Any, masks: dict[str, np.ndarray]) -> list[Any] | None:
    """mask=[query_mask, value_mask] as the layer takes it (None for the one not given), or None."""
    if not masks:
        return None
    return [
        None if name not in masks else keras.ops.convert_to_tensor(masks[name], dtype="bool")
        for name in ("query_mask", "value_mask")
    ]


def _float64(keras: Any, tensor: Any) -> np.ndarray:
    """A tensor as float64 (through float32 for the half types, which not every backend hands NumPy)."""
    if str(tensor.dtype).rsplit(".", 1)[-1] in ("float16", "bfloat16"):
        tensor = keras.ops.cast(tensor, "float32")
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


def _symbolic(
    keras: Any, d: DenseDerivation, masks: dict[str, np.ndarray]
) -> tuple[dict[str, tuple[int | None, ...]], str | None]:
    """The shapes the layer reports when called on keras.Input, or Keras's words when it refuses."""
    inputs = [
        keras.Input(shape=tensor.shape[1:], dtype=d.config.dtype)
        for name, tensor in d.inputs.items()
        if name != "key" or d.key_given
    ]
    mask = None
    if masks:
        mask = [
            None if name not in masks else keras.Input(shape=masks[name].shape[1:], dtype="bool")
            for name in ("query_mask", "value_mask")
        ]
    layer = getattr(keras.layers, d.keras_class)(**keras_kwargs(d))
    try:
        output, scores = layer(
            inputs, mask=mask, return_attention_scores=True, use_causal_mask=d.config.causal
        )
    except Exception as error:  # Keras's own refusal is the finding, whatever its type
        return {}, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return {"output": tuple(output.shape), "attention_scores": tuple(scores.shape)}, None


def verify_call(keras: Any, layer: Any, call: dict[str, Any], output: np.ndarray) -> OtherCheck:
    """One real call of a model's keras.layers.Attention or AdditiveAttention, re-executed.

    ``call`` holds what the call received as float64 arrays (``inputs``: query, value[, key];
    ``mask``: [query_mask, value_mask] or None) and ``use_causal_mask``. The layer's own settings
    (use_scale, score_mode) and weights go into explain --layer dot|additive's derivation and its
    NumPy formula, which must reproduce the call's output, relative to its largest value.
    """
    from mha_cli.core.errors import ConfigError
    from mha_cli.runtime.dense_reference import reexecute_dense
    from mha_cli.runtime.other_reference import RELATIVE_TOLERANCE

    inputs, mask = call["inputs"], call.get("mask") or [None, None]
    kind = "additive" if isinstance(layer, keras.layers.AdditiveAttention) else "dot"
    dtype = str(getattr(layer, "compute_dtype", None) or "float32")
    try:
        config = DenseConfig(
            kind=kind,
            query_shape=tuple(inputs[0].shape[1:]),
            value_shape=tuple(inputs[1].shape[1:]),
            key_shape=tuple(inputs[2].shape[1:]) if len(inputs) > 2 else None,
            use_scale=bool(layer.use_scale),
            score_mode=None if kind == "additive" else str(layer.score_mode),
            dtype=dtype if dtype in ("float16", "bfloat16", "float32", "float64") else "float32",
            batch=int(inputs[0].shape[0]),
            query_mask=len(mask) > 0 and mask[0] is not None,
            value_mask=len(mask) > 1 and mask[1] is not None,
            causal=bool(call.get("use_causal_mask")),
        )
        d = derive_dense(config)
    except ConfigError as error:
        return OtherCheck(
            Verdict.NOT_VERIFIED, f"not verified: explain --layer {kind} refuses its call: {error}"
        )
    arrays = {"query": inputs[0], "value": inputs[1], "key": inputs[2] if len(inputs) > 2 else inputs[1]}
    if config.query_mask:
        arrays["query_mask"] = np.asarray(mask[0], dtype=bool)
    if config.value_mask:
        arrays["value_mask"] = np.asarray(mask[1], dtype=bool)
    for variable in layer.weights:
        arrays[str(variable.path).rsplit("/", 1)[-1]] = np.asarray(
            keras.ops.convert_to_numpy(keras.ops.cast(variable.value, "float32")), dtype=np.float64
        )
    ours = reexecute_dense(d, arrays)["output"]
    if ours.shape != output.shape:
        detail = f"not reproduced: the formula gives {ours.shape}, the call returned {output.shape}"
        return OtherCheck(Verdict.NOT_REPRODUCED, detail)
    difference = float(np.abs(ours - output).max()) if output.size else 0.0
    largest = float(np.abs(output).max()) if output.size else 0.0
    relative = difference / largest if largest else difference
    tolerance = RELATIVE_TOLERANCE.get(dtype, 1e-4)
    formula = f"{d.keras_class}'s {d.score_mode} formula (explain --layer {kind})"
    step = Step(f"output: {formula} on the call's own inputs, masks and weights", difference, relative)
    if relative > tolerance:
        detail = f"not reproduced: {formula} differs from its output by {relative:.1e} of its largest value"
        return OtherCheck(Verdict.NOT_REPRODUCED, detail, (step,), tolerance)
    masks = ", ".join(m.name for m in d.masks) or "no mask"
    detail = (
        f"verified: {formula}, re-executed in NumPy on the call's inputs ({masks}), reproduced its output"
    )
    return OtherCheck(Verdict.VERIFIED, detail, (step,), tolerance, mask=masks if d.masks else None)
