"""Run a real keras.layers.Attention or AdditiveAttention (``--layer dot|additive``) and read it back.

The layer is built from the user's arguments, its weights are set to seeded random values (so a
misplaced scale shows in the NumPy check), and it is called three ways on the same inputs and masks:
with the scores, without them (as a model calls it), and on ``keras.Input`` (the symbolic shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mha_cli.core.dense import DenseDerivation, keras_kwargs
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
