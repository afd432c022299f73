"""A user's own attention layer and tensors, from Python (the public API, mha_cli.api).

The layer is called as the user would call it, on their tensors, with every call recorded as
scan records a model's (runtime/models.py's ``_captured``): the arguments it was built with, the
masks Keras combined (their ``mask_zero`` masks too), the inputs and the output as arrays. What
is explained is then that call, re-run on the layer's own weights.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from mha_cli.core.config import ExecutionPath
from mha_cli.core.errors import ConfigError, EnvironmentProblem
from mha_cli.runtime.keras_adapter import _to_numpy, path_observed
from mha_cli.runtime.models import CapturedCall, _captured, attention_bases
from mha_cli.runtime.quiet import native_output_silenced


def running_keras() -> Any:
    """The Keras this process has imported (a live layer means it has), or an EnvironmentProblem."""
    keras = sys.modules.get("keras")
    if keras is None:
        raise EnvironmentProblem("a live layer needs Keras imported in this process; import keras first")
    return keras


def layer_kind(layer: Any) -> str:
    """``mha``, ``gqa``, ``dot`` or ``additive``, by the Keras class the layer is (or subclasses);
    ConfigError for any other object."""
    keras = running_keras()
    for name, base in attention_bases(keras):
        if isinstance(layer, base):
            return str(name)
    if isinstance(layer, keras.layers.AdditiveAttention):
        return "additive"
    if isinstance(layer, keras.layers.Attention):
        return "dot"
    raise ConfigError(
        "layer",
        type(layer).__name__,
        "not a keras.layers.MultiHeadAttention, GroupQueryAttention, Attention or AdditiveAttention "
        "(or a subclass); for a model, use mha_cli.scan(model)",
    )


def captured_call(
    layer: Any, query: Any, value: Any, key: Any, call_kwargs: dict[str, Any]
) -> tuple[CapturedCall, tuple[ExecutionPath, np.ndarray] | None]:
    """MultiHeadAttention's or GroupQueryAttention's call on the user's tensors, recorded, with the
    path it took and its output when it is the kind's own call without scores (for run_captured's
    ``observed``: the call is not made a third time to see its path).

    The call is the user's own: an error it raises is theirs and propagates unchanged.
    """
    keras = running_keras()
    kwargs = {name: value for name, value in call_kwargs.items() if name != "training"}
    with path_observed(layer) as taken, native_output_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _captured(keras, (layer,), real=True) as seen:
            layer(query, query if value is None else value, key=key, training=False, **kwargs)
    call = seen[-1]
    output = call.arrays.get("output")
    if call.scores_requested or "call" in call.overrides or output is None:
        return call, None
    return call, (taken(), output)


def listed_call(
    layer: Any, inputs: list[Any], mask: list[Any] | None, use_causal_mask: bool
) -> tuple[dict[str, Any], np.ndarray]:
    """Attention's or AdditiveAttention's call on the user's list, as runtime/dense.verify_call reads
    it, and its output; the call is the user's own, its errors theirs."""
    keras = running_keras()

    def array(tensor: Any) -> np.ndarray:
        return _to_numpy(keras, tensor)

    with native_output_silenced():
        output = layer(list(inputs), mask=mask, use_causal_mask=use_causal_mask, training=False)
    call = {
        "inputs": [array(tensor).astype(np.float64) for tensor in inputs],
        "mask": None if mask is None else [None if m is None else array(m).astype(bool) for m in mask],
        "use_causal_mask": use_causal_mask,
    }
    return call, array(output).astype(np.float64)
