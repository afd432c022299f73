"""Limits of the backends that depend on shapes alone, so the algebra answers them without Keras.

A ``--no-run`` answer must not claim a configuration runs that the real layer
rejects. Limits that depend on the machine (oneDNN's Softmax rank, probed on
TensorFlow) stay in the runtime.
"""

from __future__ import annotations

from mha_cli.core.derivation import Derivation
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape

#: TensorFlow's broadcasting ops (SelectV2 inside Keras's multi-axis softmax)
#: handle at most 8 dimensions; measured with TF 2.21 / Keras 3.15.1: scores
#: of rank 9 fail with "Broadcast between [...] is not supported yet".
TF_MAX_MULTI_AXIS_SCORES_RANK = 8


def check_shape_limits(derivation: Derivation, backend: str) -> None:
    """ConfigError for a configuration ``backend`` rejects whatever the machine."""
    if backend != "tensorflow":
        return
    attended = derivation.layer.attention_axes
    scores_rank = len(derivation.shapes["attention_scores"].shape)
    if len(attended) > 1 and scores_rank > TF_MAX_MULTI_AXIS_SCORES_RANK:
        raise ConfigError(
            "--axes",
            format_shape(derivation.config.attention_axes or attended),
            f"the attention scores would have rank {scores_rank}; on TensorFlow, Keras's softmax over "
            f"several axes supports at most rank {TF_MAX_MULTI_AXIS_SCORES_RANK} "
            "(a TensorFlow broadcasting limit): attend over fewer axes, or use another backend",
        )
