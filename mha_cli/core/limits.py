"""Limits of the backends that depend on shapes alone, so the algebra answers them without Keras.

A ``--no-run`` answer must not claim a configuration runs that the real layer
rejects. Limits that depend on the machine (oneDNN's Softmax rank, probed on
TensorFlow) stay in the runtime.
"""

from __future__ import annotations

from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape

#: TensorFlow's broadcasting ops (SelectV2 inside Keras's multi-axis softmax)
#: handle at most 8 dimensions; measured with TF 2.21 / Keras 3.15.1: scores
#: of rank 9 fail with "Broadcast between [...] is not supported yet".
TF_MAX_MULTI_AXIS_SCORES_RANK = 8


#: oneDNN's Softmax kernel, which TensorFlow uses on x86 CPUs unless
#: TF_ENABLE_ONEDNN_OPTS=0, takes at most this rank in float32 and bfloat16:
#: "Input dims must be <= 5 and >=1 [Op:Softmax]" (measured, TF 2.21). Keras
#: softmaxes single-axis scores over their last axis with that op, so every
#: single-axis attention over a rank-5 input fails there; multi-axis scores
#: are reshaped first and are not affected. Whether oneDNN runs depends on the
#: machine, so the runtime probes it (keras_adapter.softmax_rank_limit).
ONEDNN_MAX_SOFTMAX_RANK = 5
#: The dtypes oneDNN's Softmax limit applies to (float64 and float16 run elsewhere).
ONEDNN_DTYPES = ("float32", "bfloat16")


def machine_limit(derivation: Derived, backend: str) -> str | None:
    """Why the real layer may refuse ``derivation`` on some machines (None: no such limit applies).

    The algebra cannot tell whether this machine has the limit; a run can.
    """
    scores_rank = len(derivation.shapes["attention_scores"].shape)
    single = len(derivation.layer.attention_axes) == 1
    if backend != "tensorflow" or not single or scores_rank <= ONEDNN_MAX_SOFTMAX_RANK:
        return None
    if derivation.layer.dtype not in ONEDNN_DTYPES:
        return None
    return (
        f"the attention scores would have rank {scores_rank}; TensorFlow's oneDNN Softmax (on by "
        f"default on x86 CPUs) takes at most rank {ONEDNN_MAX_SOFTMAX_RANK}, so the real layer fails "
        "where oneDNN runs; --run tells for this machine"
    )


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
