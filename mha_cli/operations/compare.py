"""Several configurations side by side, and whether they compute the same thing.

Every configuration is explained as by ``mha-explain explain`` (a real forward
pass and its checks). Configurations that differ only in ``attention_axes`` have
the same weight shapes, and the same seed feeds them the same weights and
inputs: whether that really happened is checked on the arrays the layers held,
and then their outputs are compared. That answers "for a sentence, is
attention_axes=(1) the same as None?" with a number, not an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mha_cli.core.config import MHAConfig
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, TOLERANCE, ExplainResult, explain


@dataclass(frozen=True)
class Equivalence:
    """The outputs of configurations fed identical weights and inputs."""

    #: Every layer held the same weights (shapes and values) and got the same inputs.
    same_weights: bool
    #: Every output is within the dtype's tolerance of the first configuration's.
    outputs_equal: bool | None
    #: The largest |difference| from the first configuration's output (None: not compared).
    max_abs_diff: float | None
    tolerance: float


@dataclass(frozen=True)
class Comparison:
    results: tuple[ExplainResult, ...]
    equivalence: Equivalence | None
    #: Why the outputs were not compared, when they were not.
    not_compared_reason: str | None = None


def compare(
    configs: Sequence[MHAConfig], backend: str, *, execute: bool = True, max_memory: int = DEFAULT_MAX_MEMORY
) -> Comparison:
    results = tuple(explain(config, backend, execute=execute, max_memory=max_memory) for config in configs)
    skipped = [result for result in results if not result.executed]
    if skipped:
        reason = skipped[0].not_executed_reason or "not executed"
        return Comparison(results, None, f"a configuration had no forward pass ({reason})")
    return Comparison(results, equivalence(results))


def equivalence(results: Sequence[ExplainResult]) -> Equivalence:
    """Compare what the layers were fed, then what they returned."""
    from mha_cli.runtime.arrays import max_abs_diff, same_arrays

    runs = [result.run for result in results]
    assert all(run is not None for run in runs)  # callers pass executed results
    first = runs[0]
    tolerance = TOLERANCE[results[0].derivation.layer.dtype]
    assert first is not None
    fed = first.fed()
    same = all(run is not None and same_arrays(run.fed(), fed) for run in runs[1:])
    if not same:
        return Equivalence(same_weights=False, outputs_equal=None, max_abs_diff=None, tolerance=tolerance)
    diff = max(max_abs_diff(run.arrays["output"], first.arrays["output"]) for run in runs[1:] if run)
    return Equivalence(True, diff <= tolerance, diff, tolerance)
