"""Load a Keras 2 layer's config in Keras 3, as saved and as rewritten, and run it on Keras 2's weights.

The rewrite comes from :mod:`mha_cli.core.migration`; this is its proof: the
rewritten config loaded by Keras 3's own ``from_config``, given the weights
the Keras 2 layer held and the inputs and masks it was called with, must give
the output Keras 2 gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from mha_cli.core.migration import Migration, migrate
from mha_cli.runtime.keras_adapter import _to_numpy, _to_tensor, _variable_path, load_keras
from mha_cli.runtime.quiet import native_output_silenced


@dataclass(frozen=True)
class MigrationRun:
    """Keras 2's config in Keras 3: as saved, and rewritten."""

    migration: Migration
    keras_version: str
    #: Keras 3's one-line refusal of the config as Keras 2 saved it (None: it loaded).
    as_saved_refused: str | None
    #: Keras 3's one-line refusal of the rewritten config, or of Keras 2's weights (None: it ran).
    problem: str | None
    #: The Keras 3 layer's output on Keras 2's weights and inputs (None when it did not run).
    output: np.ndarray | None


def _one_line(error: Exception, config: dict[str, Any]) -> str:
    """Keras's refusal in one line: the cause Keras 3 wraps in "Error when deserializing ...".

    "Unrecognized keyword arguments ...: {...}" names only the config's keys it lists, not their values.
    """
    cause = str(error).split("Exception encountered:")[-1].strip()
    unrecognized = re.fullmatch(r"(Unrecognized keyword arguments[^:{]*): (\{.*\})", cause, re.DOTALL)
    if unrecognized is not None:
        listed = [key for key in config if f"'{key}':" in unrecognized.group(2)]
        if listed:
            cause = f"{unrecognized.group(1)}: {', '.join(listed)}"
    return " ".join(cause.split())[:300] or type(error).__name__


def in_keras3(
    config: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    causal: bool = False,
    backend: str = "tensorflow",
    rank: int | None = None,
) -> MigrationRun:
    """``config`` (Keras 2's get_config()) loaded in Keras 3 and run on ``arrays``.

    ``arrays`` are what the Keras 2 layer was fed, named as
    :class:`~mha_cli.runtime.keras_adapter.LayerRun` names them: ``query``,
    ``value``, ``key``, ``attention_mask`` when there was one, and each weight
    as ``query/kernel``... ``rank`` is the query's rank with batch when the
    config does not carry it.
    """
    keras = load_keras(backend, 3)
    migration = migrate(config, rank)
    layer_class = keras.layers.MultiHeadAttention
    with native_output_silenced():
        try:
            layer_class.from_config(dict(config))
            as_saved_refused = None
        except Exception as error:  # what Keras 3 says is the finding
            as_saved_refused = _one_line(error, config)
        try:
            layer = layer_class.from_config(dict(migration.config))
            dtype = layer.compute_dtype

            def tensor(name: str) -> Any:
                return _to_tensor(keras, arrays[name], dtype)

            query, value, key = tensor("query"), tensor("value"), tensor("key")
            masks: dict[str, Any] = {"use_causal_mask": True} if causal else {}
            if "attention_mask" in arrays:
                masks["attention_mask"] = _to_tensor(keras, arrays["attention_mask"] > 0.5)
            layer(query, value, key=key)  # builds the projections
            for variable in layer.weights:
                name = "/".join(_variable_path(variable).split("/")[-2:])
                variable.assign(arrays[name].astype(variable.dtype))
            output = layer(query, value, key=key, training=False, **masks)
        except Exception as error:
            return MigrationRun(
                migration, keras.__version__, as_saved_refused, _one_line(error, migration.config), None
            )
    return MigrationRun(
        migration, keras.__version__, as_saved_refused, None, _to_numpy(keras, output).astype(np.float64)
    )
