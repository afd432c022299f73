"""Scan a model: every call of its attention layers, explained and proved on its own weights.

MultiHeadAttention and GroupQueryAttention calls alike (and their subclasses'):
each call is explained as its layer's kind (:mod:`mha_cli.core.kinds`).

Each call gets what ``explain`` gives one configuration (derivation, the
real layer's shapes, equations and weights, the NumPy re-execution, Keras's
symbolic shapes, the execution path), computed from the model's own layer on
the inputs that call received, plus one check of its own: that re-running the
layer reproduces the output the model's call produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mha_cli.core.cases import at_key
from mha_cli.core.config import MHAConfig
from mha_cli.core.derived import Derived
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig, GQADerivation
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.kinds import KINDS, derive_any
from mha_cli.core.models import IMPLICIT_MASKS, InputSpec, ModelSpec, merged_inputs, resolve_inputs
from mha_cli.core.other import Heads, OtherCheck, Verdict
from mha_cli.operations.explain import (
    DEFAULT_MAX_MEMORY,
    TOLERANCE,
    Check,
    ExplainResult,
    ModelCallCheck,
    PlainCallCheck,
    Status,
    SymbolicCheck,
    algebra_only,
    compare_with_layer,
    numpy_check,
    plain_call_check,
    symbolic_check,
)

if TYPE_CHECKING:
    import numpy as np

    from mha_cli.core.config import ExecutionPath
    from mha_cli.runtime.keras_adapter import LayerRun
    from mha_cli.runtime.migration import MigrationRun
    from mha_cli.runtime.models import CapturedCall, LoadedModel
    from mha_cli.runtime.others import OtherAttention


@dataclass(frozen=True)
class CallResult:
    """One call of one attention layer."""

    call: CapturedCall
    #: What explain gives for it; None when the call could not be explained (``error`` says why).
    result: ExplainResult | None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.result is not None and bool(self.result.failed))

    @property
    def summary_scores_wrong(self) -> bool:
        """The call returns its scores and Keras's symbolic shape for them (model.summary()) is wrong."""
        if not self.call.scores_requested or self.result is None:
            return False
        symbolic = self.result.check("keras_symbolic")
        return symbolic.status is Status.WARNING


@dataclass(frozen=True)
class LayerMigration:
    """``scan --keras all``: one Keras 2 layer's config loaded in Keras 3 and run on its first call."""

    #: The layer's path in the model.
    path: str
    migration: MigrationRun
    #: The Keras 3 layer's output against the Keras 2 layer's on that call (None: it did not run).
    output_max_abs_diff: float | None
    tolerance: float

    @property
    def failed(self) -> bool:
        """The rewritten config does not load in Keras 3, or does not give Keras 2's output."""
        if self.migration.problem is not None:
            return True
        return self.output_max_abs_diff is not None and self.output_max_abs_diff > self.tolerance


@dataclass(frozen=True)
class ScanResult:
    spec: ModelSpec
    model_name: str
    weights_from: str
    keras_version: str
    backend: str
    inputs: tuple[InputSpec, ...]
    calls: tuple[CallResult, ...]
    #: Why the real forward pass did not run (the memory guard), else None.
    not_executed_reason: str | None = None
    #: How many attention layers the model holds (a layer may be called several times).
    layer_count: int = 0
    #: ``--keras all``: each Keras 2 layer in Keras 3 (empty otherwise, or when nothing ran).
    migrations: tuple[LayerMigration, ...] = ()
    #: Calls of layers that compute attention and are not explained (KerasHub's LlamaAttention,
    #: keras.layers.Attention...), from the symbolic pass.
    other_attention: tuple[OtherAttention, ...] = ()
    #: Why other attention was not looked for (None: it was): a tf_keras model, or no inputs to trace.
    others_not_looked_for: str | None = None

    @property
    def others_run(self) -> bool:
        """Whether a real pass re-executed the calls of other attention (each says what it showed)."""
        return any(other.check is not None and other.check.ran for other in self.other_attention)

    @property
    def executed(self) -> bool:
        return self.not_executed_reason is None and bool(self.calls)

    @property
    def failed(self) -> tuple[CallResult, ...]:
        return tuple(call for call in self.calls if call.failed)

    @property
    def failed_migrations(self) -> tuple[LayerMigration, ...]:
        return tuple(migration for migration in self.migrations if migration.failed)

    def select(self, layer: str) -> tuple[CallResult, ...]:
        """The calls of the layer at path ``layer`` (or the one call ``path#index``)."""
        return tuple(c for c in self.calls if layer in (c.call.path, c.call.key))


#: Case-file keys a call's refusal names, in the terms of the call (nobody typed an option).
_CALL_TERMS = {
    "mask_shape": "the call's attention_mask, combined",
    "shape": "the query",
    "value_shape": "the value",
    "key_shape": "the key",
}


def in_call_terms(error: ConfigError) -> str:
    """Why a captured call cannot be explained, naming the layer's arguments and the call's tensors
    (``attention_axes (-2,): ...``), not the command-line options explain would take."""
    key, problem = at_key(error, "attention_axes")
    if key in _CALL_TERMS:
        problem = _CALL_TERMS[key] + problem[len(key) :]
    return problem


def config_of(call: CapturedCall, batch: int, seed: int, keras: int = 3) -> MHAConfig | GQAConfig:
    """The configuration one call states: the layer's arguments and the shapes and mask it received.

    A call whose only masks are the ones the layer makes itself (use_causal_mask, sliding_window)
    states no attention_mask: the layer is called with none, as the model called it.
    """
    arguments = call.arguments
    # What both kinds' configurations hold: the call's tensors and masks, and the shared arguments.
    # A combined mask already holds the causal and sliding-window masks; ANDing them again (as the
    # derivation and the re-run do) changes nothing.
    shared: dict[str, Any] = {
        "query_shape": call.query_shape,
        "value_shape": None if call.value_is_query else call.value_shape,
        "key_shape": call.key_shape if call.key_given else None,
        "batch": batch,
        "seed": seed,
        "mask_shape": call.mask_shape if set(call.mask_sources) - IMPLICIT_MASKS else None,
        "causal": call.causal,
        "keras": keras,
    }
    shared.update(
        {
            name: arguments[name]
            for name in ("use_bias", "use_gate", "dropout", "dtype", "sliding_window", "unbiased")
        }
    )
    if call.kind == "gqa":
        gqa = ("head_dim", "num_query_heads", "num_key_value_heads")
        return GQAConfig(**shared, **{name: arguments[name] for name in gqa})
    mha = ("num_heads", "key_dim", "value_dim", "output_shape", "attention_axes")
    return MHAConfig(**shared, **{name: arguments[name] for name in mha})


def scan(
    spec: ModelSpec,
    backend: str,
    *,
    max_memory: int = DEFAULT_MAX_MEMORY,
    migrate: bool = False,
    intermediates: bool = False,
    live: Any = None,
) -> ScanResult:
    """Load ``spec``'s model, find every attention call, and explain each one.

    Shapes come from a symbolic pass first; the memory guard then decides
    whether the real forward pass (and with it every check) runs. With
    ``migrate`` (a Keras 2 model), also load each attention layer's config in
    Keras 3, as saved and rewritten, and run it on the layer's weights and its
    first call's inputs. With ``intermediates``, each run keeps the tensors
    inside its forward pass (test vectors). ``live``: a model handed over in Python (the public
    API's ``scan(model)``), which ``spec.live`` names.
    """
    from mha_cli.runtime.models import built, load, real_calls, symbolic_calls

    loaded = load(spec, backend, live)
    if not loaded.attention_layers and not loaded.model.built:
        # Its layers may not exist yet (made by its build() or first call): run it once to see.
        unbuilt_inputs = resolve_inputs(loaded.inputs, spec.inputs, spec.shown)
        loaded = built(loaded, unbuilt_inputs, batch=spec.batch, seed=spec.seed)
    base = ScanResult(
        spec,
        loaded.name,
        loaded.weights_from,
        loaded.keras_version,
        backend,
        loaded.inputs,
        (),
        layer_count=len(loaded.attention_layers),
    )
    if spec.keras == 2:
        base = replace(base, others_not_looked_for="scan looks for other attention in Keras 3 models only")
    if not loaded.attention_layers:
        # Nothing to explain; whether the model computes attention some other way is seen by
        # tracing it, sizes left unknown where the model and --input give none.
        traced = merged_inputs(loaded.inputs, spec.inputs, spec.shown)
        if not traced:
            return replace(
                base,
                others_not_looked_for="it declares no inputs to trace it on (a subclassed model); give "
                "them with --input",
            )
        return replace(base, inputs=traced, other_attention=_others(loaded, traced, spec, max_memory))
    inputs = resolve_inputs(loaded.inputs, spec.inputs, spec.shown)
    base = replace(base, inputs=inputs, other_attention=_others(loaded, inputs, spec, max_memory))
    symbolic = symbolic_calls(loaded, inputs)
    # Each call's derivation, or why there is none; the memory guard's estimate and, when it
    # stops the run, the answers come from these.
    derived: list[Derived | ConfigError] = []
    for call in symbolic:
        try:
            derived.append(derive_any(config_of(call, spec.batch, spec.seed, spec.keras)))
        except ConfigError as error:
            derived.append(error)
    estimate = sum(d.forward_pass_bytes() for d in derived if not isinstance(d, ConfigError))
    if estimate > max_memory:
        reason = (
            f"the attention layers' forward pass and checks would need about {format_bytes(estimate)}, "
            f"above --max-memory {format_bytes(max_memory)}; shapes are from a symbolic pass over the model "
            "(raise --max-memory, or lower --batch or --input sizes, to run it)"
        )
        return replace(
            base,
            calls=tuple(
                CallResult(call, None, in_call_terms(d))
                if isinstance(d, ConfigError)
                else CallResult(call, algebra_only(d, backend, "memory guard", reason))
                for call, d in zip(symbolic, derived, strict=True)
            ),
            not_executed_reason=reason,
        )
    real = real_calls(loaded, inputs, batch=spec.batch, seed=spec.seed)
    calls = tuple(explain_call(call, spec, backend, intermediates) for call in real)
    migrations = _migrations(calls, backend) if migrate else ()
    return replace(base, calls=calls, migrations=migrations)


def _others(
    loaded: LoadedModel, inputs: tuple[InputSpec, ...], spec: ModelSpec, max_memory: int
) -> tuple[OtherAttention, ...]:
    """The calls of attention scan does not explain, shapes from the symbolic pass; and, where every
    size is known and the memory guard allows, what one real pass re-executes of each."""
    from mha_cli.runtime.others import other_attention

    found = other_attention(loaded, inputs)
    if not found:
        return found
    unknown = [spec_.name for spec_ in inputs if any(size is None for size in spec_.shape)]
    # Its scores and the copies the re-execution holds of them: logits, weights, ours, in float64.
    scores = [spec.batch * math.prod(size or 0 for size in other.traced[1:]) for other in found]
    estimate = 4 * 8 * sum(scores)
    if unknown:
        why = f"the model leaves the sizes of {', '.join(unknown)} unknown; give them with --input to run it"
    elif estimate > max_memory:
        why = (
            f"its real pass would need about {format_bytes(estimate)}, above --max-memory "
            f"{format_bytes(max_memory)}"
        )
    else:
        ran = {other.key: other for other in other_attention(loaded, inputs, real=(spec.batch, spec.seed))}
        unseen = OtherCheck(
            Verdict.NOT_VERIFIED, "not verified: the real pass did not make this call", ran=True
        )
        return tuple(
            replace(other, check=ran[other.key].check if other.key in ran else unseen) for other in found
        )
    return tuple(
        replace(other, check=OtherCheck(Verdict.NOT_VERIFIED, f"not verified: {why}", ran=False))
        for other in found
    )


def _migrations(calls: tuple[CallResult, ...], backend: str) -> tuple[LayerMigration, ...]:
    """Each layer's config in Keras 3, on its first explained call's weights and inputs."""
    from mha_cli.runtime.arrays import max_abs_diff
    from mha_cli.runtime.migration import in_keras3

    found: dict[str, LayerMigration] = {}
    for call in calls:
        result = call.result
        if call.call.path in found or result is None or result.run is None or not result.executed:
            continue
        run = result.run
        migration = in_keras3(
            run.layer_config,
            run.arrays,
            causal=call.call.causal,
            backend=backend,
            rank=result.derivation.rank,
        )
        diff = None if migration.output is None else max_abs_diff(migration.output, run.arrays["output"])
        found[call.call.path] = LayerMigration(
            call.call.path, migration, diff, TOLERANCE[result.derivation.layer.dtype]
        )
    return tuple(found.values())


def explain_call(
    call: CapturedCall,
    spec: ModelSpec,
    backend: str,
    intermediates: bool = False,
    observed: tuple[ExecutionPath, np.ndarray] | None = None,
) -> CallResult:
    """One recorded call, derived and re-run on its layer (see run_captured), and its five checks.

    ``observed``: the path the call itself took and its output, when it was made without scores by
    the kind's own call (a user's call, mha_cli.explain(layer, ...)): the re-run is then made with
    scores alone, and the call's output is held against that (model_call and plain_call agree).
    """
    from mha_cli.runtime.arrays import max_abs_diff
    from mha_cli.runtime.keras_adapter import run_captured

    try:
        derivation = derive_any(config_of(call, spec.batch, spec.seed, spec.keras))
        run = run_captured(
            call.layer,
            derivation,
            backend,
            call.arrays,
            causal=call.causal,
            base_call="call" in call.overrides,
            intermediates=intermediates,
            observed=observed,
        )
    except ConfigError as error:
        return CallResult(call, None, in_call_terms(error))
    derivation_check = compare_with_layer(derivation, run)
    tolerance = TOLERANCE[derivation.layer.dtype]
    model_output = call.arrays["output"]
    assert model_output is not None
    # A call without scores is re-run as the model made it (Keras's fused path may compute otherwise).
    plain = run.arrays.get("output_without_scores")
    plain_check = plain_call_check(derivation, run)
    if observed is not None:
        model_check = _own_call_check(derivation, run, plain_check, tolerance)
    else:
        rerun = run.arrays["output"] if call.scores_requested or plain is None else plain
        difference = max_abs_diff(rerun, model_output.astype("float64"))
        model_check = _model_call_check(call, difference, tolerance)
    checks: tuple[Check, ...] = (
        derivation_check,
        numpy_check(derivation, run, shapes_agree=derivation_check.status is Status.PASSED),
        _symbolic_in_model(call, symbolic_check(derivation, run), derivation),
        plain_check,
        model_check,
    )
    return CallResult(call, ExplainResult(derivation, backend, run, checks))


def _own_call_check(
    derivation: Derived, run: LayerRun, plain: PlainCallCheck, tolerance: float
) -> ModelCallCheck:
    """The user's own call (without scores) against the layer re-run with scores on its inputs (the
    numbers plain_call holds). Only Keras's fused path with a query row that has no key left is known
    to differ (Keras disagreeing with itself: a warning); any other difference means the re-run missed
    the call, a failure."""
    from mha_cli.core.config import ExecutionPath
    from mha_cli.runtime.reference import fully_masked_rows

    difference = plain.output_max_abs_diff or 0.0
    if plain.status is Status.PASSED:
        detail = (
            f"your call's output ({plain.path} path) is reproduced by re-running the layer with scores on "
            f"its inputs: max |diff| {difference:.1e}"
        )
        return ModelCallCheck(Status.PASSED, detail, tolerance, difference)
    empty = fully_masked_rows(derivation, run.arrays) if plain.path is ExecutionPath.FUSED else 0
    if empty:
        detail = (
            f"your call's output differs from the layer re-run with scores on its inputs (max |diff| "
            f"{difference:.1e}) where {empty} (item, head, query) rows of the scores have no key left: "
            "Keras's fused path disagrees with its path with scores there, see plain_call"
        )
        return ModelCallCheck(Status.WARNING, detail, tolerance, difference)
    detail = (
        f"re-running the layer with scores on your call's inputs gives another output than your call "
        f"({plain.path} path; max |diff| {difference:.1e}, tolerance {tolerance:.0e})"
    )
    return ModelCallCheck(Status.FAILED, detail, tolerance, difference)


def _symbolic_in_model(call: CapturedCall, check: SymbolicCheck, derivation: Derived) -> SymbolicCheck:
    """Keras's wrong (or missing) symbolic scores matter to a model only where the call returns its
    scores: otherwise neither its graph nor model.summary() ever shows them (a passed check, saying so)."""
    if check.status is not Status.WARNING or call.scores_requested or check.output is None:
        return check
    if check.output != derivation.shapes["output"].shape:
        return check
    scores = (
        f"its symbolic call {check.refusal}"
        if check.refusal is not None
        else f"its symbolic scores shape {format_shape(check.attention_scores or ())} is wrong "
        "(keras-team/keras#19303)"
    )
    return replace(
        check,
        status=Status.PASSED,
        detail=f"Keras's symbolic output shape matches the forward pass; {scores}, but this call does not "
        "return its scores, so neither the model's graph nor model.summary() shows them",
    )


def _model_call_check(call: CapturedCall, difference: float, tolerance: float) -> ModelCallCheck:
    """Whether re-running the layer reproduces the model's call, and for a subclass, whether its own
    call still agrees with its Keras class's once the weights make the logits matter."""
    base = KINDS[call.kind].keras_class
    sharp = call.sharpened

    def check(status: Status, detail: str) -> ModelCallCheck:
        return ModelCallCheck(status, detail, tolerance, difference)

    if difference > tolerance and "call" not in call.overrides:
        return check(
            Status.FAILED,
            f"re-running the layer on this call's inputs gives another output than the model's call "
            f"(max |diff| {difference:.1e}, tolerance {tolerance:.0e})",
        )
    verified = (
        f"what is verified here is {base}'s computation with this layer's weights, not the subclass's own"
    )
    if difference > tolerance:
        return check(
            Status.WARNING,
            f"it computes another output than {base}.call on the same inputs and weights "
            f"(max |diff| {difference:.1e}); {verified}",
        )
    rerun = (
        f"{base}.call, with this layer's weights on this call's inputs,"
        if "call" in call.overrides
        else "re-running the layer on this call's inputs"
    )
    reproduced = f"{rerun} reproduces the model's output: max |diff| {difference:.1e}"
    if sharp is None:
        return check(Status.PASSED, reproduced)
    sharpened = (
        f"with the query and key kernels x{sharp.scale:.3g} (attention logits spread about 3)"
        if sharp.scale > 1
        else "with its own weights (their attention logits already spread 3 or more)"
    )
    if sharp.problem is not None:
        return check(
            Status.WARNING,
            f"{reproduced}, but its own call could not be re-run {sharpened} ({sharp.problem}), and with "
            "fresh weights the logits are too small for a changed attention to show",
        )
    if not sharp.agrees(tolerance):
        assert sharp.max_abs_diff is not None and sharp.output_size is not None
        return check(
            Status.WARNING,
            f"{reproduced}, but only because these weights make the attention logits small: {sharpened} its "
            f"own call and {base}.call differ by {sharp.max_abs_diff:.1e} (outputs up to "
            f"{sharp.output_size:.1e}); {verified}",
        )
    return check(
        Status.PASSED,
        f"{reproduced}; {sharpened} its own call and {base}.call agree: max |diff| {sharp.max_abs_diff:.1e}",
    )


def observed_other(other: OtherAttention) -> dict[str, Any]:
    """What a case file pins for a call scan does not explain: its class, the heads read from its
    kernels, its first tensor argument's and its output's shapes (where the trace knows every size,
    batch left out) and params. ``explained = false`` says it is no more than that."""
    values: dict[str, Any] = {"class": other.class_name, "explained": False}
    heads = other.heads
    if isinstance(heads, Heads):
        values.update(
            num_query_heads=heads.query_heads,
            num_key_value_heads=heads.key_value_heads,
            head_dim=heads.head_dim,
        )
    shapes = {"query": other.inputs[0][1] if other.inputs else None, "output": other.output}
    for field, shape in shapes.items():
        if shape is not None and all(size is not None for size in shape[1:]):
            values[field] = list(shape[1:])
    values["params"] = other.params
    return values


def observed_call(found: CallResult) -> dict[str, Any]:
    """What a case file pins for one call (CALL_FIELDS), as record writes it: shapes without batch."""
    call = found.call
    arguments = call.arguments
    values: dict[str, Any] = {"class": call.class_name}
    if call.kind == "gqa":
        return _observed_gqa_call(found, values)
    for name in ("num_heads", "key_dim", "value_dim", "output_shape", "attention_axes"):
        value = arguments[name]
        values[name] = list(value) if isinstance(value, tuple) else value
    values.update(use_bias=arguments["use_bias"], use_gate=arguments["use_gate"], dtype=arguments["dtype"])
    values.update(query=list(call.query_shape), value=list(call.value_shape), key=list(call.key_shape))
    if found.result is not None:
        d = found.result.mha
        values["value_dim"] = d.layer.value_dim  # None in the layer's config means key_dim
        values["output_shape"] = list(d.shapes["output"].shape[d.rank - 1 :])
        values.update(
            attention_scores=list(d.shapes["attention_scores"].shape[1:]),
            output=list(d.shapes["output"].shape[1:]),
            params=d.params,
        )
    return values


def _observed_gqa_call(found: CallResult, values: dict[str, Any]) -> dict[str, Any]:
    """observed_call for a GroupQueryAttention call: its own arguments, the same shapes and params."""
    call = found.call
    arguments = call.arguments
    for name in ("num_query_heads", "num_key_value_heads", "head_dim", "use_bias", "use_gate", "dtype"):
        values[name] = arguments[name]
    values.update(query=list(call.query_shape), value=list(call.value_shape), key=list(call.key_shape))
    if found.result is not None:
        d = found.result.derivation
        assert isinstance(d, GQADerivation)
        values.update(
            attention_scores=list(d.shapes["attention_scores"].shape[1:]),
            output=list(d.shapes["output"].shape[1:]),
            params=d.params,
        )
    return values


def shapes_line(result: CallResult) -> str:
    """``(8,16) -> (2,8,4) -> (8,16)``: query, scores and output shapes without batch, written
    without inner spaces so that a narrow table wraps between shapes, never inside one."""

    def compact(shape: tuple[int | None, ...]) -> str:
        return format_shape(shape).replace(" ", "")

    if result.result is None:
        return compact(result.call.query_shape)
    shapes = result.result.derivation.shapes
    return " -> ".join(
        compact(shape)
        for shape in (
            result.call.query_shape,
            shapes["attention_scores"].shape[1:],
            shapes["output"].shape[1:],
        )
    )
