"""Keras 3 beside Keras 2 (``--keras all``): one configuration, identical weights, every difference named.

Both run in this process, on TensorFlow (Keras 2, the ``tf_keras`` package,
has no other backend; the two coexist). Each side is a whole explain, with its
checks, and ``--graph``'s serialized call; the weights and inputs come from one
NumPy generator, so they are identical, and that is checked on the arrays the
layers held. Then every way the two differ is said in a sentence, with the
versions that behave each way: the attended axes, shapes, equations,
execution path, keras.Input shapes, the recorded call, the config's keys and
whether Keras 3 loads Keras 2's config (as saved, and rewritten), and the
outputs. A difference the rules of the two versions do not account for is a
failure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, TOLERANCE, ExplainResult, Status, explain

if TYPE_CHECKING:
    from mha_cli.runtime.migration import MigrationRun

#: Keras 2 runs only on TensorFlow, so both run there.
BACKEND = "tensorflow"


@dataclass(frozen=True)
class MajorRun:
    """One Keras major's explain of the configuration, or why it refused it."""

    major: int
    result: ExplainResult | None
    #: Why it did not run: the layer (or our derivation of its rules) refused the configuration.
    refusal: ConfigError | None = None

    @property
    def problem(self) -> str | None:
        """The refusal's one line."""
        return None if self.refusal is None else str(self.refusal)

    @property
    def version(self) -> str:
        run = None if self.result is None else self.result.run
        return f"Keras {self.major}" if run is None else f"Keras {run.keras_version}"


@dataclass(frozen=True)
class Difference:
    """One way the two Keras majors differ here, in a sentence."""

    #: What differs: refused, attention_axes, shape, equation, execution_path, keras_symbolic, call,
    #: config_keys, config_load, output.
    topic: str
    sentence: str
    #: Whether the two versions' known rules account for it; an unexplained difference is a failure.
    explained: bool = True


@dataclass(frozen=True)
class MajorsRun:
    config: MHAConfig
    #: Keras 3 first, then Keras 2.
    runs: tuple[MajorRun, MajorRun]
    #: Both layers held identical weights and got identical inputs (None: not both ran).
    same_weights: bool | None
    output_max_abs_diff: float | None
    #: None when the scores' shapes differ (different attended axes) or not both ran.
    scores_max_abs_diff: float | None
    #: The same, for the call as a model makes it (no scores; Keras 3 may take its fused path).
    model_call_max_abs_diff: float | None
    tolerance: float
    #: Keras 2's config loaded in Keras 3, as saved and rewritten (None: Keras 2 did not run).
    migration: MigrationRun | None
    #: The migrated Keras 3 layer's output against Keras 2's (None: it did not run).
    migration_output_max_abs_diff: float | None
    differences: tuple[Difference, ...]

    @property
    def keras3(self) -> MajorRun:
        return self.runs[0]

    @property
    def keras2(self) -> MajorRun:
        return self.runs[1]

    @property
    def failures(self) -> tuple[str, ...]:
        """Unexplained differences, and checks that failed on either side."""
        unexplained = tuple(d.sentence for d in self.differences if not d.explained)
        failed = tuple(
            f"{run.version}: check {check.name} failed"
            for run in self.runs
            if run.result is not None
            for check in run.result.failed
        )
        return unexplained + failed


def _side(config: MHAConfig, major: int, max_memory: int) -> MajorRun:
    try:
        result = explain(replace(config, keras=major), BACKEND, max_memory=max_memory, graph=True)
    except ConfigError as error:
        return MajorRun(major, None, error)
    return MajorRun(major, result)


def both_kerases(config: MHAConfig, *, max_memory: int = DEFAULT_MAX_MEMORY) -> MajorsRun:
    """Explain ``config`` under Keras 3 and Keras 2 on identical weights, and name every difference.

    A configuration both refuse is bad input (the Keras 3 refusal is raised);
    tf_keras not installed is an EnvironmentProblem, from Keras 2's side.
    """
    keras3, keras2 = _side(config, 3, max_memory), _side(config, 2, max_memory)
    if keras3.refusal is not None and keras2.result is None:
        raise keras3.refusal
    tolerance = TOLERANCE[config.dtype]
    differences = _refusals(keras3, keras2)
    same = output_diff = scores_diff = model_call_diff = migration_diff = None
    migration = None
    r3, r2 = keras3.result, keras2.result
    if r3 is not None and r2 is not None:
        differences += _derived_differences(keras3, keras2)
        if r3.executed and r2.executed:
            from mha_cli.runtime.arrays import max_abs_diff, same_arrays

            assert r3.run is not None and r2.run is not None
            a3, a2 = r3.run.arrays, r2.run.arrays
            same = same_arrays(r3.run.fed(), r2.run.fed())
            if same:
                output_diff = max_abs_diff(a3["output"], a2["output"])
                if a3["attention_scores"].shape == a2["attention_scores"].shape:
                    scores_diff = max_abs_diff(a3["attention_scores"], a2["attention_scores"])
                plain = "output_without_scores"
                if plain in a3 and plain in a2:
                    model_call_diff = max_abs_diff(a3[plain], a2[plain])
                differences += _output_difference(keras3, keras2, output_diff, model_call_diff, tolerance)
            else:
                differences += (
                    Difference("output", "the two layers were not fed identical weights and inputs", False),
                )
    if r2 is not None and r2.executed:
        from mha_cli.runtime.arrays import max_abs_diff
        from mha_cli.runtime.migration import in_keras3

        assert r2.run is not None
        migration = in_keras3(
            r2.run.layer_config, r2.run.arrays, causal=config.causal, rank=r2.derivation.rank
        )
        if migration.output is not None:
            migration_diff = max_abs_diff(migration.output, r2.run.arrays["output"])
        differences += _migration_differences(keras2, migration, migration_diff, tolerance)
    return MajorsRun(
        config=config,
        runs=(keras3, keras2),
        same_weights=same,
        output_max_abs_diff=output_diff,
        scores_max_abs_diff=scores_diff,
        model_call_max_abs_diff=model_call_diff,
        tolerance=tolerance,
        migration=migration,
        migration_output_max_abs_diff=migration_diff,
        differences=differences,
    )


def _refusals(keras3: MajorRun, keras2: MajorRun) -> tuple[Difference, ...]:
    return tuple(
        Difference(
            "refused", f"not run under {refusing.version}: {refusing.problem}; {other.version} runs it"
        )
        for refusing, other in ((keras3, keras2), (keras2, keras3))
        if refusing.result is None and other.result is not None
    )


def _derived_differences(keras3: MajorRun, keras2: MajorRun) -> tuple[Difference, ...]:
    """What the two layers hold and report, apart from their numbers."""
    r3, r2 = keras3.result, keras2.result
    assert r3 is not None and r2 is not None
    v3, v2 = keras3.version, keras2.version
    d3, d2 = r3.mha, r2.mha
    found: list[Difference] = []
    axes_differ = d3.layer.attention_axes != d2.layer.attention_axes
    if axes_differ:
        given = format_shape(d3.config.attention_axes or ())
        found.append(
            Difference(
                "attention_axes",
                f"attention_axes={given} attends over input axes {format_shape(d3.layer.attention_axes)} in "
                f"{v3} and {format_shape(d2.layer.attention_axes)} in {v2}: Keras 2 counts a negative axis "
                "from the end of the projected tensor (batch, ..., heads, key_dim), Keras 3.12+ from the end "
                f"of the input; write {format_shape(d2.layer.attention_axes)} for Keras 2's meaning in both",
            )
        )
    for name in d3.shapes.keys() & d2.shapes.keys():
        s3, s2 = d3.shapes[name].shape, d2.shapes[name].shape
        if s3 != s2:
            found.append(
                Difference(
                    "shape",
                    f"{name}: {format_shape(s3)} in {v3}, {format_shape(s2)} in {v2}",
                    explained=axes_differ,
                )
            )
    if r3.run is not None and r2.run is not None:
        for step, e3 in r3.run.equations.items():
            e2 = r2.run.equations.get(step)
            if e2 is not None and e2 != e3:
                found.append(
                    Difference(
                        "equation", f"the {step} einsum: {e3} in {v3}, {e2} in {v2}", explained=axes_differ
                    )
                )
        if r3.run.weights != r2.run.weights:
            found.append(
                Difference(
                    "weights",
                    f"the weights' shapes differ: {v3} {r3.run.weights}, {v2} {r2.run.weights}",
                    explained=False,
                )
            )
    if d3.execution_path != d2.execution_path:
        found.append(
            Difference(
                "execution_path",
                f"called without return_attention_scores, {v3} takes the {d3.execution_path} path "
                f"and {v2} the {d2.execution_path} path (Keras 2 has only its einsums and softmax); each "
                "side's plain_call check compares that call with the verified one",
            )
        )
    found += _symbolic_differences(keras3, keras2)
    found += _call_differences(keras3, keras2)
    if r3.run is not None and r2.run is not None:
        keys3, keys2 = set(r3.run.layer_config), set(r2.run.layer_config)
        if keys3 != keys2:
            only3, only2 = sorted(keys3 - keys2), sorted(keys2 - keys3)
            parts = [f"only {v3}'s has {', '.join(only3)}"] if only3 else []
            parts += [f"only {v2}'s has {', '.join(only2)}"] if only2 else []
            found.append(Difference("config_keys", f"get_config(): {'; '.join(parts)}"))
    return tuple(found)


def _symbolic_differences(keras3: MajorRun, keras2: MajorRun) -> tuple[Difference, ...]:
    """keras.Input shapes (model.summary()), and which side has the real one."""
    r3, r2 = keras3.result, keras2.result
    assert r3 is not None and r2 is not None
    if r3.run is None or r2.run is None:
        return ()
    found = []
    for name in ("output", "attention_scores"):
        s3, s2 = r3.run.symbolic[name], r2.run.symbolic[name]
        if s3 == s2:
            continue
        wrong = [
            run.version
            for run in (keras3, keras2)
            if run.result is not None
            and run.result.check("keras_symbolic").status is Status.WARNING
            and name in getattr(run.result.check("keras_symbolic"), "real", {})
        ]
        verdict = f"; {' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong" if wrong else ""
        bug = " (keras-team/keras#19303, since Keras 3.3)" if keras3.version in wrong else ""
        found.append(
            Difference(
                "keras_symbolic",
                f"model.summary() shows {name} {format_shape(s3)} in {keras3.version} and "
                f"{format_shape(s2)} in {keras2.version}{verdict}{bug}",
                explained=bool(wrong)
                or r3.derivation.layer.attention_axes != r2.derivation.layer.attention_axes,
            )
        )
    return tuple(found)


def _call_differences(keras3: MajorRun, keras2: MajorRun) -> tuple[Difference, ...]:
    """How a functional model records ``mha(query, value)``: value positional or a keyword."""
    r3, r2 = keras3.result, keras2.result
    assert r3 is not None and r2 is not None
    if r3.call_convention is None or r2.call_convention is None:
        return ()
    c3, c2 = r3.call_convention["multi_head_attention"], r2.call_convention["multi_head_attention"]
    positional3, positional2 = len(c3["args"]), len(c2["args"])
    keywords3, keywords2 = sorted(c3["kwargs"]), sorted(c2["kwargs"])
    if (positional3, keywords3) == (positional2, keywords2):
        return ()
    moved = sorted(set(keywords2) - set(keywords3))
    return (
        Difference(
            "call",
            f"a functional model records {c3['call']} with {positional3} positional argument"
            f"{'s' if positional3 != 1 else ''} in {keras3.version} and {positional2} in {keras2.version}, "
            f"where {', '.join(moved) or 'the rest'} {'is' if len(moved) == 1 else 'are'} a keyword "
            "(inbound_nodes [[input, 0, 0, {'value': [...]}]]); a converter reads value from the second "
            "positional argument, else from the keyword",
        ),
    )


def _output_difference(
    keras3: MajorRun, keras2: MajorRun, diff: float, model_call: float | None, tolerance: float
) -> tuple[Difference, ...]:
    """The outputs with scores requested, and as a model calls the layer (without)."""
    r3, r2 = keras3.result, keras2.result
    assert r3 is not None and r2 is not None and r3.run is not None
    v3, v2 = keras3.version, keras2.version
    model_differs = model_call is not None and model_call > tolerance
    if diff <= tolerance and not model_differs:
        return ()
    if r3.derivation.layer.attention_axes != r2.derivation.layer.attention_axes:
        return (
            Difference(
                "output", f"the outputs differ (max |diff| {diff:.2g}): they attend over different axes"
            ),
        )
    if diff <= tolerance:  # only the call without scores differs: Keras 3's plain_call says why
        own = r3.check("plain_call").status is Status.WARNING
        return (
            Difference(
                "output",
                f"called with return_attention_scores=True they agree, but as a model calls them (no scores) "
                f"they differ by {model_call:.2g}: {v3}'s {r3.derivation.execution_path} path computes "
                "another output than its own einsums (its plain_call check)",
                explained=own,
            ),
        )
    rows = _fully_masked_rows(keras3)
    modelled = all(result.check("numpy_reference").status is Status.PASSED for result in (r3, r2))
    if not (rows and modelled):
        return (
            Difference(
                "output",
                f"the outputs differ (max |diff| {diff:.2g}, tolerance {tolerance:g}) on identical weights "
                "and inputs, and no known rule of the two versions accounts for it",
                explained=False,
            ),
        )
    if model_call is None:
        as_model = ""
    elif model_differs:
        as_model = f"; as a model calls them (no scores) they differ too, by {model_call:.2g}"
    else:
        as_model = (
            f"; as a model calls them (no scores) they agree (max |diff| {model_call:.2g}): {v3}'s "
            f"{r3.derivation.execution_path} path gives those rows equal weights too"
        )
    return (
        Difference(
            "output",
            f"with return_attention_scores=True the outputs differ (max |diff| {diff:.2g}) in the {rows} "
            f"(item, head, query) row{'s' if rows != 1 else ''} the mask leaves no key to attend to: {v3} "
            f"gives them zero weights, {v2} equal weights 1/keys (each side's NumPy check models its own "
            f"rule and passed){as_model}",
        ),
    )


def _migration_differences(
    keras2: MajorRun, migration: MigrationRun, diff: float | None, tolerance: float
) -> tuple[Difference, ...]:
    found = []
    v2, v3 = keras2.version, f"Keras {migration.keras_version}"
    if migration.as_saved_refused is not None:
        found.append(
            Difference(
                "config_load",
                f"{v3}'s MultiHeadAttention.from_config refuses {v2}'s get_config() as saved "
                f"({migration.as_saved_refused})",
            )
        )
    changes = "; ".join(change.sentence for change in migration.migration.changes) or "nothing to change"
    if migration.problem is not None:
        found.append(
            Difference(
                "config_load",
                f"rewritten ({changes}), it still does not run in {v3}: {migration.problem}",
                explained=False,
            )
        )
    elif diff is not None and diff > tolerance:
        found.append(
            Difference(
                "config_load",
                f"rewritten ({changes}), it loads in {v3}, but on {v2}'s weights and inputs its output "
                f"differs from {v2}'s by {diff:.2g} (tolerance {tolerance:g})",
                explained=_fully_masked_rows(keras2) > 0,
            )
        )
    return tuple(found)


def _fully_masked_rows(run: MajorRun) -> int:
    """Rows the mask leaves no key to attend to (where the two softmaxes differ); 0 without a run."""
    result = run.result
    if result is None or result.run is None or not result.executed:
        return 0
    from mha_cli.runtime.reference import fully_masked_rows

    return fully_masked_rows(result.mha, result.run.arrays)
