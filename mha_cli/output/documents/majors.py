"""--keras all's JSON document: Keras 3 beside Keras 2."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mha_cli.core.version import __version__
from mha_cli.operations.majors import MajorsRun
from mha_cli.output.documents import SCHEMA_VERSION
from mha_cli.output.documents.explain import to_document


def majors_document(found: MajorsRun) -> dict[str, Any]:
    """The document of ``explain --keras all --json`` (schema in docs/scripts.md)."""
    from mha_cli.operations.majors import BACKEND

    migration = found.migration
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "backend": BACKEND,
        "kerases": {
            str(run.major): {
                "keras_version": None
                if run.result is None or run.result.run is None
                else run.result.run.keras_version,
                "document": None if run.result is None else to_document(run.result),
                "get_config": None
                if run.result is None or run.result.run is None
                else run.result.run.layer_config,
                "problem": run.problem,
            }
            for run in found.runs
        },
        "same_weights": found.same_weights,
        "output_max_abs_diff": found.output_max_abs_diff,
        "attention_scores_max_abs_diff": found.scores_max_abs_diff,
        "model_call_output_max_abs_diff": found.model_call_max_abs_diff,
        "tolerance": found.tolerance,
        "migration": None
        if migration is None
        else {
            "keras_version": migration.keras_version,
            "as_saved_refused": migration.as_saved_refused,
            "changes": [asdict(change) for change in migration.migration.changes],
            "config": migration.migration.config,
            "problem": migration.problem,
            "output_max_abs_diff": found.migration_output_max_abs_diff,
        },
        "differences": [asdict(difference) for difference in found.differences],
        "failures": list(found.failures),
    }
