"""--backend all's JSON document: one configuration on every backend."""

from __future__ import annotations

from typing import Any

from mha_cli.core.version import __version__
from mha_cli.operations.backends import BackendsRun
from mha_cli.output.documents import SCHEMA_VERSION
from mha_cli.output.documents.explain import to_document


def backends_document(found: BackendsRun) -> dict[str, Any]:
    """The document of ``--backend all --json`` (schema in docs/scripts.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "backends": {
            run.backend: {
                "document": None if run.result is None else to_document(run.result),
                "problem": run.problem,
                "output_max_abs_diff": run.output_diff,
                "attention_scores_max_abs_diff": run.scores_diff,
            }
            for run in found.runs
        },
    }
