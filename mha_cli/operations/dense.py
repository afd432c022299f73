"""Explain one keras.layers.Attention or AdditiveAttention configuration (``--layer dot|additive``).

Derive (core/dense.py), run the real layer (runtime/dense.py), re-execute its formula in NumPy
(runtime/dense_reference.py), and hold the three against each other. The checks are
MultiHeadAttention's kinds (derivation, numpy_reference, keras_symbolic, plain_call), so scripts read
them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mha_cli.core.dense import DenseConfig, DenseDerivation, derive_dense
from mha_cli.core.grammar import format_bytes, format_shape
from mha_cli.operations.explain import (
    DEFAULT_MAX_MEMORY,
    TOLERANCE,
    Check,
    DerivationCheck,
    Mismatch,
    NumpyCheck,
    PlainCallCheck,
    Status,
    SymbolicCheck,
)

if TYPE_CHECKING:
    from mha_cli.runtime.dense import DenseRun


@dataclass(frozen=True)
class DenseResult:
    derivation: DenseDerivation
    backend: str
    run: DenseRun | None
    checks: tuple[Check, ...]
    #: Why there was no forward pass (--no-run, or the memory guard), else None.
    not_executed_reason: str | None = None

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status is Status.FAILED)

    @property
    def executed(self) -> bool:
        return self.run is not None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.derivation.warnings + tuple(
            check.detail for check in self.checks if check.status is Status.WARNING
        )

    def check(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)


def explain_dense(
    config: DenseConfig, backend: str, *, execute: bool = True, max_memory: int = DEFAULT_MAX_MEMORY
) -> DenseResult:
    """Derive ``config``; unless ``execute`` is False or the memory guard says no, run and check it."""
    derivation = derive_dense(config)
    if not execute:
        return _algebra_only(derivation, backend, "--no-run", "--no-run: the shape algebra alone")
    estimate = derivation.forward_pass_bytes()
    if estimate > max_memory:
        reason = (
            f"the forward pass would take about {format_bytes(estimate)}, over --max-memory "
            f"{format_bytes(max_memory)}; raise --max-memory to run it"
        )
        return _algebra_only(derivation, backend, "--max-memory", reason)
    from mha_cli.runtime.dense import run_dense

    run = run_dense(derivation, backend)
    derivation_check = _against_layer(derivation, run)
    checks = (
        derivation_check,
        _numpy(derivation, run, shapes_agree=derivation_check.status is Status.PASSED),
        _symbolic(derivation, run),
        _plain_call(derivation, run),
    )
    return DenseResult(derivation, backend, run, checks)


def _algebra_only(derivation: DenseDerivation, backend: str, cause: str, reason: str) -> DenseResult:
    skipped = f"not run: {cause}"
    tolerance = TOLERANCE[derivation.config.dtype]
    checks = (
        DerivationCheck(Status.SKIPPED, skipped),
        NumpyCheck(Status.SKIPPED, skipped, tolerance),
        SymbolicCheck(Status.SKIPPED, skipped),
        PlainCallCheck(Status.SKIPPED, skipped, tolerance),
    )
    return DenseResult(derivation, backend, None, checks, not_executed_reason=reason)


def _against_layer(d: DenseDerivation, run: DenseRun) -> DerivationCheck:
    """Our shapes, weights and resolved arguments against the real layer's."""
    mismatches = []

    def compare(kind: str, name: str, ours: object, keras: object) -> None:
        if ours != keras:
            mismatches.append(Mismatch(kind, name, ours, keras))

    for name in ("output", "attention_scores"):
        compare("shape", name, d.shapes[name].with_batch(d.config.batch), run.shapes.get(name))
    ours = {weight.name: weight.shape for weight in d.weights}
    for name in sorted(ours.keys() | run.weights.keys()):
        compare("weight", name, ours.get(name), run.weights.get(name))
    compare("argument", "use_scale", d.use_scale, run.layer_config.get("use_scale"))
    if d.kind == "dot":
        compare("argument", "score_mode", d.score_mode, run.layer_config.get("score_mode"))
    if mismatches:
        first = mismatches[0]
        detail = (
            f"INTERNAL ERROR: derivation disagrees with the real layer on {len(mismatches)} item(s); "
            f"first: {first.kind} {first.name}: derived {first.derived}, Keras {first.keras}"
        )
        return DerivationCheck(Status.FAILED, detail, tuple(mismatches))
    counts = f"2 shapes, {len(ours)} weight{'s' if len(ours) != 1 else ''}, use_scale" + (
        ", score_mode" if d.kind == "dot" else ""
    )
    return DerivationCheck(Status.PASSED, f"shape algebra agrees with the real forward pass ({counts})")


def _numpy(d: DenseDerivation, run: DenseRun, *, shapes_agree: bool) -> NumpyCheck:
    tolerance = TOLERANCE[d.config.dtype]
    if not shapes_agree:
        return NumpyCheck(
            Status.FAILED, "not run: the derived shapes disagree with the real layer", tolerance
        )
    from mha_cli.runtime.arrays import max_abs_diff
    from mha_cli.runtime.dense_reference import reexecute_dense

    ours = reexecute_dense(d, run.arrays)
    diffs = {name: max_abs_diff(ours[name], run.arrays[name]) for name in ("output", "attention_scores")}
    worst = max(diffs.values())
    detail = (
        f"the {d.score_mode} formula re-executed in NumPy float64 with the layer's weights and masks: "
        f"max |diff| output {diffs['output']:.1e}, scores {diffs['attention_scores']:.1e} "
        f"(tolerance {tolerance:.0e} for {d.config.dtype})"
    )
    return NumpyCheck(
        Status.PASSED if worst <= tolerance else Status.FAILED,
        detail,
        tolerance,
        max_abs_diff=worst,
        output_max_abs_diff=diffs["output"],
        attention_scores_max_abs_diff=diffs["attention_scores"],
    )


def _symbolic(d: DenseDerivation, run: DenseRun) -> SymbolicCheck:
    """The shapes keras.Input gives (a functional model, model.summary()) against the real ones."""
    real = {name: (None, *run.shapes[name][1:]) for name in ("output", "attention_scores")}
    if run.symbolic_refusal is not None:
        return SymbolicCheck(
            Status.WARNING,
            f"keras.Input (and so a functional model) refuses what the call runs: {run.symbolic_refusal}",
            real=real,
            refusal=run.symbolic_refusal,
        )
    wrong = {name: shape for name, shape in real.items() if run.symbolic.get(name) != shape}
    output, scores = run.symbolic.get("output"), run.symbolic.get("attention_scores")
    if wrong:
        shown = "; ".join(
            f"{name.replace('_', ' ')} {format_shape(run.symbolic.get(name) or ())}, the real shape is "
            f"{format_shape(shape)}"
            for name, shape in wrong.items()
        )
        return SymbolicCheck(
            Status.WARNING,
            f"keras.Input gives {shown}",
            output=output,
            attention_scores=scores,
            real=wrong,
        )
    return SymbolicCheck(
        Status.PASSED,
        "Keras's symbolic shapes (keras.Input, masks as keras.Input too) match the forward pass",
        output=output,
        attention_scores=scores,
    )


def _plain_call(d: DenseDerivation, run: DenseRun) -> PlainCallCheck:
    from mha_cli.runtime.arrays import max_abs_diff

    tolerance = TOLERANCE[d.config.dtype]
    difference = max_abs_diff(run.arrays["output_without_scores"], run.arrays["output"])
    called = "the call without return_attention_scores, as a model makes it"
    if difference <= tolerance:
        return PlainCallCheck(
            Status.PASSED,
            f"{called}: max |diff| {difference:.1e} from the checked output",
            tolerance,
            output_max_abs_diff=difference,
        )
    detail = (
        f"{called}, computes another output than the call with scores: max |diff| {difference:.1e} "
        f"(tolerance {tolerance:.0e} for {d.config.dtype}); Keras disagrees with itself here"
    )
    return PlainCallCheck(Status.WARNING, detail, tolerance, output_max_abs_diff=difference)
