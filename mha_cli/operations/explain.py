"""Explain one configuration: derive, run the real layer, and check the two agree.

The result is a frozen object; :mod:`mha_cli.output.explain` turns it into JSON and
into rich tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from mha_cli.core.config import ExecutionPath, MHAConfig
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.errors import ConfigError, InternalError
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.core.kinds import derive_any, kind_of
from mha_cli.core.summary import configuration_warnings

if TYPE_CHECKING:
    from mha_cli.runtime.keras_adapter import LayerRun

#: Max abs difference allowed between Keras's output/scores and ours, by the
#: layer's dtype. Inputs are N(0, 1) and biases N(0, 0.5), so outputs are O(1).
#: float64 is not 1e-12: Keras 3.15 casts the Python float 1/sqrt(key_dim)
#: through float32 before scaling (`ops.cast(self._inverse_sqrt_key_dim, ...)`),
#: a relative error of ~3e-8 we measured; rounding it likewise gives 1e-15.
TOLERANCE = {"float64": 1e-6, "float32": 1e-4, "float16": 5e-2, "bfloat16": 2.5e-1}

#: Default bound on a forward pass's estimated peak memory.
DEFAULT_MAX_MEMORY = 2 * 2**30


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # exit 1
    WARNING = "warning"  # Keras is inconsistent with itself; not our failure
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One verification: its verdict and one line for people; each kind adds what it measured."""

    name: ClassVar[str]
    status: Status
    detail: str

    @property
    def brief(self) -> str:
        """One short line for people; ``detail`` is the whole explanation (--verbose, JSON)."""
        return self.detail

    @property
    def passed(self) -> bool | None:
        """None when it did not run; a warning did not pass."""
        return None if self.status is Status.SKIPPED else self.status is Status.PASSED


@dataclass(frozen=True)
class Mismatch:
    """One thing the derivation and the real layer disagree on."""

    kind: str  # attention_axes, execution_path, shape, equation, weight
    name: str
    derived: object
    keras: object


@dataclass(frozen=True)
class DerivationCheck(Check):
    """Our shapes, equations, weights, axes and path against the real layer's."""

    name: ClassVar[str] = "derivation"
    mismatches: tuple[Mismatch, ...] = ()


@dataclass(frozen=True)
class NumpyCheck(Check):
    """Our einsums re-executed in NumPy float64 against Keras's output and scores."""

    name: ClassVar[str] = "numpy_reference"
    tolerance: float = 0.0
    #: None when it did not run; the three diffs and the bugs are there when it did.
    max_abs_diff: float | None = None
    output_max_abs_diff: float | None = None
    attention_scores_max_abs_diff: float | None = None
    known_keras_bugs: tuple[str, ...] = ()

    @property
    def ran(self) -> bool:
        return self.max_abs_diff is not None


@dataclass(frozen=True)
class SymbolicCheck(Check):
    """Keras's symbolic shapes (keras.Input, model.summary()) against the real ones."""

    name: ClassVar[str] = "keras_symbolic"
    output: tuple[int | None, ...] | None = None
    attention_scores: tuple[int | None, ...] | None = None
    #: The shapes the real forward pass (or, without one, the algebra) gives, where Keras's differ.
    real: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    #: Whether ``real`` comes from a forward pass (else from the shape algebra).
    measured: bool = True
    #: Keras's words when its symbolic call refused what the forward pass ran (no shapes then).
    refusal: str | None = None

    @property
    def brief(self) -> str:
        if self.status is not Status.WARNING:
            return self.detail
        if self.refusal is not None and self.output is not None:  # it answered, without the scores
            return f"keras.Input (and so a functional model) {self.refusal}"
        if self.refusal is not None:
            return f"keras.Input (and so a functional model) refuses what the call runs: {self.refusal}"
        shown = {"output": self.output, "attention_scores": self.attention_scores}
        wrong = "; ".join(
            f"{name.replace('_', ' ')} {format_shape(shown[name] or ())}, "
            f"{'the real shape is' if self.measured else 'the shape algebra derives'} {format_shape(real)}"
            for name, real in self.real.items()
        )
        return f"model.summary() shows {wrong} (a Keras bug, keras-team/keras#19303; --verbose says more)"


@dataclass(frozen=True)
class PlainCallCheck(Check):
    """The call a model makes, without scores, against the checked call."""

    name: ClassVar[str] = "plain_call"
    tolerance: float = 0.0
    path: ExecutionPath | None = None
    output_max_abs_diff: float | None = None


@dataclass(frozen=True)
class ModelCallCheck(Check):
    """scan: the model's layer, re-run on one call's inputs, against the output that call produced."""

    name: ClassVar[str] = "model_call"
    tolerance: float = 0.0
    output_max_abs_diff: float | None = None


@dataclass(frozen=True)
class ReducedRunCheck(Check):
    """--verify-small: the same layer run on shrunken inputs."""

    name: ClassVar[str] = "reduced_run"
    #: The shrunken inputs' shapes without batch.
    inputs: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    #: Each check of the reduced run and its verdict; None when it did not run.
    checks: dict[str, Status] | None = None


@dataclass(frozen=True)
class ExplainResult:
    derivation: Derived
    backend: str
    run: LayerRun | None
    checks: tuple[Check, ...]
    #: Why there was no forward pass (--no-run, or the memory guard), else None.
    #: With the memory guard, ``run`` holds what the built layer reported.
    not_executed_reason: str | None = None
    #: How a functional model records the call (--graph), from keras_adapter.call_convention.
    call_convention: dict[str, dict[str, Any]] | None = None

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status is Status.FAILED)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the configuration itself warns of (heads attended), then the checks' warnings."""
        checks = tuple(check.detail for check in self.checks if check.status is Status.WARNING)
        return configuration_warnings(self.derivation) + checks

    @property
    def executed(self) -> bool:
        """A real forward pass ran (the memory guard builds the layer without one)."""
        return self.run is not None and self.run.executed

    def check(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)

    @property
    def mha(self) -> Derivation:
        """The derivation, where only MultiHeadAttention's is meant (scan, --keras all, map, vectors,
        --graph, compare --axes): those refuse or skip other kinds before they get here."""
        if not isinstance(self.derivation, Derivation):
            raise InternalError(f"a {self.derivation.kind} derivation reached code for MultiHeadAttention")
        return self.derivation


def explain(
    config: MHAConfig | GQAConfig,
    backend: str,
    *,
    execute: bool = True,
    max_memory: int = DEFAULT_MAX_MEMORY,
    verify_small: bool = False,
    observe_path: bool = True,
    graph: bool = False,
    intermediates: bool = False,
) -> ExplainResult:
    """Derive ``config``, run it through the real layer and verify.

    Without ``execute``, answer from the shape algebra alone (no Keras). When
    the forward pass would need more than ``max_memory`` bytes, build the layer
    without running it and check what it reports, and with ``verify_small``
    also run it on shrunken inputs. Either way, say why. With ``observe_path``,
    also call it without scores, as a model does: which execution path that
    takes, and whether its output is the verified one (plain_call; one more
    forward pass, which ``check`` leaves out for speed). With ``graph``,
    also record how a functional model serializes the call (symbolic tensors
    only, so it runs whatever the memory guard says). With ``intermediates``,
    the run keeps the tensors inside the forward pass (test vectors).
    """
    if graph and not isinstance(config, MHAConfig):  # call_convention builds MultiHeadAttention's model
        raise ConfigError(
            "--graph",
            None,
            "it records how a functional model saves MultiHeadAttention's call; GroupQueryAttention is "
            "called the same way, layer(query, value, key=None, ...): leave out --graph",
        )
    result = _explain(
        config,
        backend,
        execute=execute,
        max_memory=max_memory,
        verify_small=verify_small,
        observe_path=observe_path,
        intermediates=intermediates,
    )
    if not graph:
        return result
    from mha_cli.runtime.keras_adapter import call_convention

    return replace(result, call_convention=call_convention(result.mha, backend))


def _explain(
    config: MHAConfig | GQAConfig,
    backend: str,
    *,
    execute: bool,
    max_memory: int,
    verify_small: bool,
    observe_path: bool,
    intermediates: bool = False,
) -> ExplainResult:
    """:func:`explain` without the call convention."""
    kind = kind_of(config)
    derivation = kind.derive(config)
    kind.check_backend(derivation, backend)  # what a backend rejects whatever the machine, even --no-run
    if not execute:
        return algebra_only(
            derivation, backend, "--no-run", "--no-run: answered from the shape algebra alone"
        )
    estimate = derivation.forward_pass_bytes()
    if derivation.weights_bytes() > max_memory:  # too big even to build
        weights = format_bytes(derivation.weights_bytes())
        reason = (
            f"the layer's {derivation.params:,} weights alone would need about {weights}, above --max-memory "
            f"{format_bytes(max_memory)}; answered from the shape algebra alone, without building the layer"
        )
        result = algebra_only(derivation, backend, "memory guard", reason)
        if verify_small:  # says why shrinking the inputs cannot help
            result = replace(result, checks=(*result.checks, reduced_check(derivation, backend, max_memory)))
        return result
    if estimate > max_memory:
        return _built_not_run(derivation, backend, estimate, max_memory, verify_small)
    from mha_cli.runtime.keras_adapter import run_layer  # lazy: Keras only when running

    run = run_layer(derivation, backend, observe_path=observe_path, intermediates=intermediates)
    derivation_check = compare_with_layer(derivation, run)
    checks = (
        derivation_check,
        numpy_check(derivation, run, shapes_agree=derivation_check.status is Status.PASSED),
        symbolic_check(derivation, run),
        plain_call_check(derivation, run),
    )
    return ExplainResult(derivation=derivation, backend=backend, run=run, checks=checks)


def _built_not_run(
    derivation: Derived, backend: str, estimate: int, max_memory: int, verify_small: bool
) -> ExplainResult:
    """The memory guard: check what the built layer reports, skip the forward pass."""
    from mha_cli.runtime.keras_adapter import inspect_layer

    reason = (
        f"the forward pass and its checks would need about {format_bytes(estimate)}, above "
        f"--max-memory {format_bytes(max_memory)}; the layer was built and checked without running it "
        "(raise --max-memory, or lower --batch or the attended sizes, to run it)"
    )
    run = inspect_layer(derivation, backend)
    checks: tuple[Check, ...] = (
        compare_with_layer(derivation, run),
        _numpy_skipped(derivation, "not run: memory guard (no forward pass to compare with)"),
        symbolic_check(derivation, run),
        _plain_call_skipped(derivation, "not run: memory guard"),
    )
    if verify_small:
        checks += (reduced_check(derivation, backend, max_memory),)
    return ExplainResult(derivation, backend, run, checks, not_executed_reason=reason)


def reduced_check(derivation: Derived, backend: str, max_memory: int) -> ReducedRunCheck:
    """--verify-small: the same layer, run and fully checked on shrunken inputs.

    Honest because what is claimed for the full configuration (equations, axis
    roles, weight shapes, parameters) is compared with the shrunken one first.
    """
    from mha_cli.runtime.keras_adapter import known_wrong_results

    # Keras's bias-add bug depends on the size of axis 1 (known_wrong_results):
    # shrink to a size where it applies exactly when it applies to the full inputs.
    buggy = bool(known_wrong_results(derivation, backend))
    scores = derivation.shapes["attention_scores"]
    heads = next(label for label in scores.labels if label in ("heads", "heads_q"))  # heads_q: attended
    sizes = (4, 5, 3, 6, scores.shape[scores.labels.index(heads)] or 1)
    kind = kind_of(derivation.config)
    shrunken = [kind.shrunk(derivation.config, most) for most in sizes]
    candidates = [(small, derive_any(small)) for small in shrunken]
    small, small_derivation = next(
        ((c, d) for c, d in candidates if bool(known_wrong_results(d, backend)) == buggy), candidates[0]
    )
    shapes = {name: format_shape(tensor.shape[1:]) for name, tensor in small_derivation.inputs.items()}
    inputs = {name: tensor.shape[1:] for name, tensor in small_derivation.inputs.items()}
    shown = f"query {shapes['query']}, key {shapes['key']}, value {shapes['value']}"
    if small_derivation.forward_pass_bytes() > max_memory:
        need = format_bytes(small_derivation.forward_pass_bytes())
        why = f"even on {shown} it would need {need}"
        if derivation.weights_bytes() > max_memory:
            why = f"the weights alone need {format_bytes(derivation.weights_bytes())}, whatever the inputs"
        return ReducedRunCheck(Status.SKIPPED, f"not run: {why}", inputs)
    same = (
        small_derivation.equations == derivation.equations
        and small_derivation.weights == derivation.weights
        and [axis.role for axis in small_derivation.axes] == [axis.role for axis in derivation.axes]
    )
    if not same:  # shrinking must not change what the reduced run stands in for
        detail = "INTERNAL ERROR: the shrunken configuration has other equations, weights or axis roles"
        return ReducedRunCheck(Status.FAILED, detail, inputs)
    result = explain(small, backend, max_memory=max_memory)
    verdicts = {check.name: check.status for check in result.checks}
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        detail = f"the same layer on {shown} failed {names}: {result.failed[0].detail}"
        return ReducedRunCheck(Status.FAILED, detail, inputs, verdicts)
    return ReducedRunCheck(
        Status.PASSED,
        f"the same layer run on {shown} passed every check; its equations, axis roles and weights "
        "are this configuration's, which do not depend on the number of positions",
        inputs,
        verdicts,
    )


def _numpy_skipped(derivation: Derived, detail: str) -> NumpyCheck:
    return NumpyCheck(Status.SKIPPED, detail, TOLERANCE[derivation.layer.dtype])


def algebra_only(derivation: Derived, backend: str, cause: str, reason: str) -> ExplainResult:
    """The shape algebra alone, no Keras: --no-run, or weights too big to build."""
    skipped = f"not run: {cause}"
    checks = (
        DerivationCheck(Status.SKIPPED, skipped),
        _numpy_skipped(derivation, skipped),
        SymbolicCheck(Status.SKIPPED, skipped),
        _plain_call_skipped(derivation, skipped),
    )
    return ExplainResult(derivation, backend, None, checks, not_executed_reason=reason)


def compare_with_layer(derivation: Derived, run: LayerRun) -> DerivationCheck:
    """Our shapes, equations, weights and axes against the real layer's."""
    batch = derivation.config.batch
    mismatches: list[Mismatch] = []

    def compare(kind: str, name: str, ours: object, keras: object) -> None:
        if ours != keras:
            mismatches.append(Mismatch(kind, name, ours, keras))

    if run.resolved_axes is not None:  # a layer with an attention_axes argument
        compare("attention_axes", "attention_axes", derivation.layer.attention_axes, run.resolved_axes)
    if run.execution_path is not None:
        compare("execution_path", "execution_path", derivation.execution_path, run.execution_path)
    # Without a forward pass the layer reports only its output shape (compute_output_shape).
    shapes = {name: t for name, t in derivation.shapes.items() if run.executed or name in run.shapes}
    for name, tensor in shapes.items():
        compare("shape", name, tensor.with_batch(batch), run.shapes.get(name))
    for name, equation in derivation.equations.items():
        compare("equation", name, equation, run.equations.get(name))
    ours_weights = {}
    for weight in derivation.weights:
        ours_weights[f"{weight.projection}/kernel"] = weight.kernel
        if weight.bias is not None:
            ours_weights[f"{weight.projection}/bias"] = weight.bias
    for name in sorted(ours_weights.keys() | run.weights.keys()):
        compare("weight", name, ours_weights.get(name), run.weights.get(name))
    counts = (
        f"{len(shapes)} shape{'s' if len(shapes) != 1 else ''}, {len(derivation.equations)} equations, "
        f"{len(ours_weights)} weights"
        + (", the resolved axes" if run.resolved_axes is not None else "")
        + (", the execution path" if run.execution_path is not None else "")
    )
    against = "the real forward pass" if run.executed else "the real layer, built but not run"
    if mismatches:
        first = mismatches[0]
        detail = (
            f"INTERNAL ERROR: derivation disagrees with the real layer on {len(mismatches)} item(s); "
            f"first: {first.kind} {first.name}: derived {first.derived}, Keras {first.keras}"
        )
        return DerivationCheck(Status.FAILED, detail, tuple(mismatches))
    return DerivationCheck(Status.PASSED, f"shape algebra agrees with {against} ({counts})")


def numpy_check(derivation: Derived, run: LayerRun, *, shapes_agree: bool) -> NumpyCheck:
    """Re-execute our equations in float64 and compare with Keras's numbers."""
    tolerance = TOLERANCE[derivation.layer.dtype]
    if not shapes_agree:
        return NumpyCheck(
            Status.FAILED, "not run: the derived shapes disagree with the real layer", tolerance
        )
    from mha_cli.runtime.keras_adapter import known_wrong_results
    from mha_cli.runtime.reference import max_abs_diffs

    diffs = max_abs_diffs(derivation, run.arrays)
    worst = max(diffs.values())
    passed = worst <= tolerance
    detail = (
        f"our einsums re-executed in NumPy float64 with the layer's weights: max |diff| "
        f"output {diffs['output']:.1e}, scores {diffs['attention_scores']:.1e} "
        f"(tolerance {tolerance:.0e} for {derivation.layer.dtype})"
    )
    known = known_wrong_results(derivation, run.backend)
    if not passed and known:
        way_out = _bias_bug_way_out(derivation, known)
        detail += (
            f". Keras computes this configuration wrongly on {run.backend}: {'; '.join(known)} "
            f"(a Keras bug: ops.add takes tf.nn.bias_add's NCHW path; {way_out}, "
            "or use --no-bias, or another backend)"
        )
    return NumpyCheck(
        Status.PASSED if passed else Status.FAILED,
        detail,
        tolerance,
        max_abs_diff=worst,
        output_max_abs_diff=diffs["output"],
        attention_scores_max_abs_diff=diffs["attention_scores"],
        known_keras_bugs=known,
    )


def _bias_bug_way_out(derivation: Derived, known: tuple[str, ...]) -> str:
    """What avoids the misplaced-bias bug for the projections it hits (known_wrong_results)."""
    ways = []
    if any("attention_output bias" in found for found in known):
        out = (derivation.layer.output_shape if isinstance(derivation, Derivation) else None) or ()
        ways.append(
            f"give output_shape another shape: {format_shape(out)} ends in 1, so its bias squeezes to one "
            f"axis that Keras adds along axis 1 (size {derivation.axes[1].query_size})"
        )
    if any("attention_output bias" not in found for found in known):
        ways.append(
            "change head_dim from 1" if derivation.kind == "gqa" else "change key_dim/value_dim from 1"
        )
    return "; ".join(ways)


def plain_call_check(derivation: Derived, run: LayerRun) -> PlainCallCheck:
    """The call a model makes, ``layer(query, value)`` without scores, against the checked call.

    Without return_attention_scores Keras may take another path (the fused
    ``ops.dot_product_attention``; ``execution_path``): its output must be the
    one numpy_reference verified. A difference is Keras disagreeing with itself,
    so a warning, not our failure.
    """
    if "output_without_scores" not in run.arrays:
        return _plain_call_skipped(derivation, "not run: the execution path was not observed")
    from mha_cli.runtime.arrays import max_abs_diff

    tolerance = TOLERANCE[derivation.layer.dtype]
    difference = max_abs_diff(run.arrays["output_without_scores"], run.arrays["output"])
    path = run.execution_path
    called = f"layer(query, value) as a model calls it ({path} path)"
    compared = f"max |diff| {difference:.1e} from the checked output"
    if difference <= tolerance:
        return PlainCallCheck(Status.PASSED, f"{called}: {compared}", tolerance, path, difference)
    from mha_cli.runtime.reference import fully_masked_rows

    empty = fully_masked_rows(derivation, run.arrays)
    why = (
        f": {empty} (item, head, query) rows of the scores have no key position left to attend to, which "
        "the call with scores gives zero weights and the fused path does not"
        if empty
        else ""
    )
    detail = (
        f"{called}, without scores, computes another output than the call with them: {compared} "
        f"(tolerance {tolerance:.0e} for {derivation.layer.dtype}). Keras disagrees with itself here{why}; "
        "a model gets this output"
    )
    return PlainCallCheck(Status.WARNING, detail, tolerance, path, difference)


def _plain_call_skipped(derivation: Derived, detail: str) -> PlainCallCheck:
    return PlainCallCheck(Status.SKIPPED, detail, TOLERANCE[derivation.layer.dtype])


def symbolic_check(derivation: Derived, run: LayerRun) -> SymbolicCheck:
    """Keras's symbolic shapes (keras.Input, model.summary()) against the real ones."""
    real: dict[str, tuple[int | None, ...]] = {
        name: derivation.shapes[name].shape for name in ("output", "attention_scores")
    }
    if run.symbolic_refusal is not None:
        query, value = derivation.inputs["query"].shape[-1], derivation.inputs["value"].shape[-1]
        detail = (
            f"Keras's symbolic call (keras.Input, and so a functional model and model.summary()) refuses "
            f"this configuration, which the forward pass runs: {run.symbolic_refusal}"
            + (
                f". GroupQueryAttention's compute_output_shape wants the query's and the value's last axes "
                f"equal (here {query} and {value}), its call does not; to hold it in a functional model, "
                "project the value to the query's width first"
                if derivation.kind == "gqa" and query != value
                else ""
            )
        )
        return SymbolicCheck(Status.WARNING, detail, measured=run.executed, refusal=run.symbolic_refusal)
    if "attention_scores" not in run.symbolic:
        output = run.symbolic["output"]
        detail = (
            "Keras's symbolic call (keras.Input, and so a functional model and model.summary()) returns the "
            f"output {format_shape(output)} alone for return_attention_scores=True: a functional model "
            "cannot take this layer's scores (GroupQueryAttention before Keras 3.15; keras-team/keras#22642)"
        )
        missing = "returns no attention scores for return_attention_scores=True (fixed in Keras 3.15)"
        return SymbolicCheck(Status.WARNING, detail, output, measured=run.executed, refusal=missing)
    output, scores = run.symbolic["output"], run.symbolic["attention_scores"]
    if all(run.symbolic[name] == real[name] for name in real):
        return SymbolicCheck(
            Status.PASSED,
            "Keras's symbolic shapes (keras.Input, model.summary()) match the forward pass",
            output,
            scores,
        )
    wrong = [name for name in real if run.symbolic[name] != real[name]]
    source = "the real forward pass gives" if run.executed else "the shape algebra derives"
    parts = [
        f"{name.replace('_', ' ')} {format_shape(run.symbolic[name])}, {source} {format_shape(real[name])}"
        for name in wrong
    ]
    why = (
        "Keras assumes scores are (batch, heads, T, T) with T = query.shape[1] (wrong since Keras 3.3 "
        "whenever the real scores are not that: cross-attention, free axes or several attended axes; "
        "keras-team/keras#19303)"
        if derivation.kind == "mha"
        else "GroupQueryAttention's symbolic scores were fixed in Keras 3.15 (keras-team/keras#22642)"
    )
    detail = (
        f"Keras's symbolic call (keras.Input, and so model.summary()) reports {'; '.join(parts)}. "
        f"The forward-pass shape is right: {why}. Layers a functional model stacks "
        "on the scores are built for the wrong shape, so build them from the real one."
    )
    wrong_shapes = {name: real[name] for name in wrong}
    return SymbolicCheck(Status.WARNING, detail, output, scores, wrong_shapes, run.executed)
