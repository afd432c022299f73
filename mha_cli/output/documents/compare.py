"""compare's JSON documents: configurations side by side, and every attention_axes choice."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mha_cli.core.choices import group_letter
from mha_cli.core.version import __version__
from mha_cli.operations.compare import Comparison
from mha_cli.operations.explore import Exploration
from mha_cli.output.documents import SCHEMA_VERSION, shape_list
from mha_cli.output.documents.explain import config_document, to_document


def compare_document(comparison: Comparison) -> dict[str, Any]:
    """The document of ``mha-explain compare --json`` (schema in docs/scripts.md)."""
    configs = [to_document(result) for result in comparison.results]
    found = comparison.equivalence
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": next(
            (config["keras_version"] for config in configs if config["keras_version"]), None
        ),
        "backend": comparison.results[0].backend,
        "configs": configs,
        "equivalence": None if found is None else asdict(found),
        "not_compared_reason": comparison.not_compared_reason,
    }


def choices_document(found: Exploration) -> dict[str, Any]:
    """The document of ``mha-explain compare --axes all --json`` (schema in docs/scripts.md)."""

    choices = found.choices
    first = choices.choices[0].derivation
    runs = found.runs
    config = config_document(first)
    del config["attention_axes"]
    entries = []
    for index, choice in enumerate(choices.choices):
        d = choice.derivation
        run = None if runs is None else runs[index]
        result = None if run is None else run.result
        rejected = choice.rejected if run is None else run.rejected
        entries.append(
            {
                "attention_axes": list(choice.resolved),
                "attention_axes_given": None if choice.argument is None else list(choice.argument),
                "label": choice.label,
                "group": group_letter(choices.group_of(index)),
                "attends_over": [axis.name for axis in d.attended_axes],
                "free_axes": [axis.name for axis in d.free_axes],
                "attention_weights_per_query": d.weights_per_query,
                "attention_scores": shape_list(d.shapes["attention_scores"]),
                "attention_scores_bytes_per_item": d.scores_bytes_per_item(),
                "flops_per_item": d.flops_per_item,
                "execution_path": d.execution_path.value,
                "runs": False if rejected else (None if run is None and choice.caveat else True),
                "rejected": rejected,
                "caveat": choice.caveat,
                "executed": None if run is None else run.executed,
                "not_executed_reason": None if result is None else result.not_executed_reason,
                "checks": None if result is None else {c.name: c.status.value for c in result.checks},
            }
        )
    groups = []
    for number, group in enumerate(choices.groups):
        check = None if found.group_checks is None else found.group_checks[number]
        names = {axis.index: axis.name for axis in choices.choices[group.members[0]].derivation.axes}
        groups.append(
            {
                "name": group_letter(number),
                "members": list(group.members),
                "mixes_axes": list(group.axes),
                "mixes": [names[axis] for axis in group.axes],
                "output_max_abs_diff": None if check is None else check.max_abs_diff,
                "same_weights": None if check is None else check.same_weights,
            }
        )
    closest = found.closest
    keras_version = next(
        (run.result.run.keras_version for run in runs or () if run.result and run.result.run), None
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "keras_version": keras_version,
        "backend": choices.backend,
        "executed": runs is not None,
        "inputs": {name: shape_list(tensor) for name, tensor in first.inputs.items()},
        "config": config,
        "masked": first.mask is not None,
        "choices": entries,
        "groups": groups,
        "omitted": [
            {"attention_axes_given": None if o.argument is None else list(o.argument), "problem": o.problem}
            for o in choices.omitted
        ],
        "closest_groups": None
        if closest is None
        else {
            "groups": [group_letter(number) for number in closest.groups],
            "output_max_abs_diff": closest.max_abs_diff,
        },
        "tolerance": found.tolerance,
        "failures": list(found.failures),
    }
