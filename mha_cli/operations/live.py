"""Explain a user's own layer on their own tensors (the public API's ``explain(layer, query, ...)``).

MultiHeadAttention and GroupQueryAttention: the call is recorded and explained as scan explains a
model's call (operations/scan.py's ``explain_call``): derived from the layer's arguments and the
call's shapes and masks, re-run on the layer's own weights and inputs, the NumPy re-execution held
against it, and the re-run against the output the call produced. Attention and AdditiveAttention:
their configuration is explained and verified as ``--layer dot|additive`` does, and the user's call
is re-executed by the same formula on its own inputs, masks and weights (a ``model_call`` check).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ConfigError
from mha_cli.core.models import ModelSpec
from mha_cli.core.other import Verdict
from mha_cli.operations.dense import DenseResult, explain_dense
from mha_cli.operations.explain import TOLERANCE, ExplainResult, ModelCallCheck, Status
from mha_cli.operations.scan import explain_call, in_call_terms


def explain_layer(
    layer: Any, query: Any, value: Any = None, key: Any = None, **call_kwargs: Any
) -> ExplainResult | DenseResult:
    """The user's call ``layer(query, value, key, **call_kwargs)`` (Attention's: ``layer([query, value,
    key], mask=..., use_causal_mask=...)``, or ``query`` as that list), explained and verified."""
    from mha_cli.runtime.live import layer_kind, running_keras

    kind = layer_kind(layer)
    keras = running_keras()
    backend = str(keras.backend.backend())
    if kind in ("dot", "additive"):
        return _listed(layer, kind, backend, query, value, key, call_kwargs)
    from mha_cli.runtime.live import captured_call

    call, observed = captured_call(layer, query, value, key, call_kwargs)
    fed = call.arrays.get("query")
    batch = 2 if fed is None else int(fed.shape[0])
    found = explain_call(call, ModelSpec(batch=batch), backend, observed=observed)
    if found.result is None:
        raise ConfigError("layer", type(layer).__name__, found.error or "cannot be explained")
    return found.result


def _listed(
    layer: Any, kind: str, backend: str, query: Any, value: Any, key: Any, call_kwargs: dict[str, Any]
) -> DenseResult:
    from mha_cli.runtime.dense import verify_call
    from mha_cli.runtime.live import listed_call, running_keras

    if isinstance(query, list | tuple):
        inputs = list(query)
    else:
        inputs = [query, query if value is None else value, *([] if key is None else [key])]
    unknown = set(call_kwargs) - {"mask", "use_causal_mask", "training"}
    if unknown:
        raise ConfigError(
            sorted(unknown)[0], None, f"{type(layer).__name__} takes mask=[...] and use_causal_mask, not this"
        )
    mask = call_kwargs.get("mask")
    causal = bool(call_kwargs.get("use_causal_mask", False))
    call, output = listed_call(layer, inputs, None if mask is None else list(mask), causal)
    arrays = call["inputs"]
    masks = call["mask"] or [None, None]
    dtype = str(layer.compute_dtype)
    try:
        config = DenseConfig(
            kind=kind,
            query_shape=tuple(arrays[0].shape[1:]),
            value_shape=tuple(arrays[1].shape[1:]),
            key_shape=tuple(arrays[2].shape[1:]) if len(arrays) > 2 else None,
            use_scale=bool(layer.use_scale),
            score_mode=None if kind == "additive" else str(layer.score_mode),
            dropout=float(layer.dropout),
            dtype=dtype,
            batch=int(arrays[0].shape[0]),
            query_mask=masks[0] is not None,
            value_mask=len(masks) > 1 and masks[1] is not None,
            causal=causal,
        )
        result = explain_dense(config, backend)
    except ConfigError as error:
        raise ConfigError("layer", type(layer).__name__, in_call_terms(error)) from None
    check = verify_call(running_keras(), layer, call, output)
    # verify_call holds the difference relative to the output's largest value: the same bound, absolute.
    largest = float(abs(output).max()) if output.size else 0.0
    tolerance = (check.tolerance or TOLERANCE.get(dtype, 1e-4)) * (largest or 1.0)
    status = {Verdict.VERIFIED: Status.PASSED, Verdict.NOT_REPRODUCED: Status.FAILED}.get(
        check.verdict, Status.SKIPPED
    )
    difference = check.steps[0].max_abs_diff if check.steps else None
    detail = f"your call, re-executed on its own inputs, masks and weights: {check.detail}"
    return replace(result, checks=(*result.checks, ModelCallCheck(status, detail, tolerance, difference)))
