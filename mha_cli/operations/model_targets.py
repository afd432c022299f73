"""``scan --targets``: which converter takes each attention call of a model (core/targets.py's rules).

Each explained call of MultiHeadAttention or GroupQueryAttention is read for the features it uses,
from its derivation as scan made it (the shapes that call received, its masks as Keras combined them,
whether it returns its scores); calls that use the same features share one table. Attention the
rules do not cover (KerasHub's own classes, keras.layers.Attention) is listed as such, and makes a
target's verdict on the model at best unknown.
"""

from __future__ import annotations

from dataclasses import replace

from mha_cli.core.config import MHAConfig
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import format_shape
from mha_cli.core.targets import Feature, ModelTargets, features_of, model_targets
from mha_cli.operations.roundtrip import RoundTrip
from mha_cli.operations.scan import CallResult, ScanResult

_COVERED = "the rules cover keras.layers.MultiHeadAttention and GroupQueryAttention (and their subclasses)"


def _features(call: CallResult, dynamic: bool) -> tuple[Feature, ...]:
    """The call's features; its mask said with where Keras made it from (a tensor's own mask from
    mask_zero or Masking is one a converter that drops the call's masks loses too)."""
    assert call.result is not None
    found = features_of(call.result.derivation, scores=call.call.scores_requested, dynamic=dynamic)
    sources = [source for source in call.call.mask_sources if source != "use_causal_mask"]
    if not sources or call.call.mask_shape is None:
        return found
    shown = f"a mask {format_shape(call.call.mask_shape)} Keras made from {' & '.join(sources)}"
    return tuple(replace(f, shown=shown) if f.name == "attention_mask" else f for f in found)


def scan_targets(result: ScanResult, only: tuple[str, ...] = (), dynamic: bool = False) -> ModelTargets:
    calls = []
    uncovered = []
    for call in result.calls:
        if call.result is None:
            uncovered.append((call.call.key, call.call.class_name, f"not explained: {call.error}"))
            continue
        calls.append((call.call.key, call.result.derivation.kind, _features(call, dynamic)))
    for other in result.other_attention:
        uncovered.append((other.key, other.class_name, f"{other.class_name}: {_COVERED}"))
    return model_targets(tuple(calls), tuple(uncovered), only)


def scan_round_trips(
    result: ScanResult, targets: tuple[str, ...], worker: tuple[str, ...], timeout: float
) -> tuple[tuple[str, RoundTrip], ...]:
    """``scan --targets --run``: each explained call converted as its own layer, with its layer's
    weights, run on the inputs and mask that call received; (call, round trip) for each target."""
    from mha_cli.operations.roundtrip import round_trips

    found = []
    for call in result.calls:
        if call.result is None or call.result.run is None or not call.result.executed:
            continue
        config = call.result.derivation.config
        assert isinstance(config, MHAConfig | GQAConfig)
        arrays = call.result.run.arrays
        names = ["query"]
        names += ["value"] if config.value_shape is not None else []
        names += ["key"] if config.key_shape is not None else []
        names += ["attention_mask"] if "attention_mask" in arrays else []
        given = {name: arrays[name] for name in names}
        given.update({name: array for name, array in arrays.items() if "/" in name})
        for trip in round_trips(config, targets, worker, timeout=timeout, given=given):
            found.append((call.call.key, trip))
    return tuple(found)
