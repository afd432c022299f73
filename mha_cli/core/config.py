"""One MultiHeadAttention configuration as a user states it, and the layer's arguments resolved.

The closed choices (dtypes, backends, axis roles) and Keras's defaults live
here too, so the CLI can list them without importing anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

Shape = tuple[int, ...]
#: A shape as Keras reports it: ``None`` for the batch axis.
BatchShape = tuple[int | None, ...]

#: Tool defaults for the two arguments Keras requires. Two heads, as in the
#: forum answer this tool grew from; key_dim follows the Transformer convention
#: num_heads * key_dim == query features, so projections keep the width.
DEFAULT_NUM_HEADS = 2

DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
DTYPES = tuple(DTYPE_BYTES)
#: Keras's defaults for the layer arguments MHAConfig always fills in.
KERAS_DEFAULTS: dict[str, object] = {"dropout": 0.0, "use_bias": True, "use_gate": False, "dtype": "float32"}


class Backend(StrEnum):
    """The Keras backends, here so the CLI can list them without importing the adapter."""

    TENSORFLOW = "tensorflow"
    JAX = "jax"
    TORCH = "torch"
    NUMPY = "numpy"


BACKENDS = tuple(backend.value for backend in Backend)
#: The Keras major versions the tool runs: 3 (the ``keras`` package) and 2 (``tf_keras``, TensorFlow only).
KERAS_MAJORS = (3, 2)


class ExecutionPath(StrEnum):
    """How Keras computes the attention (``_compute_attention``, Keras 3.15)."""

    FUSED = "fused"  # ops.dot_product_attention
    EINSUM = "einsum"  # the explicit einsums and softmax: the only path that can return the scores


class Role(StrEnum):
    """What the layer does with an input axis."""

    BATCH = "batch"
    ATTENDED = "attended"  # attention runs along it
    FREE = "free"  # each slice along it attends independently
    FEATURE = "feature"  # projected away


@dataclass(frozen=True)
class MHAConfig:
    """One MultiHeadAttention configuration, as a user states it.

    Shapes exclude the batch axis, like ``keras.Input(shape=...)``. ``None``
    means "not given": self-attention for the shapes, the tool's or Keras's
    default for the rest.
    """

    query_shape: Shape
    value_shape: Shape | None = None
    key_shape: Shape | None = None
    num_heads: int | None = None
    key_dim: int | None = None
    value_dim: int | None = None
    output_shape: Shape | None = None
    attention_axes: tuple[int, ...] | None = None
    use_bias: bool = True
    use_gate: bool = False
    dropout: float = 0.0
    dtype: str = "float32"
    batch: int = 2
    seed: int = 0
    axis_names: tuple[str, ...] | None = None
    #: The call's attention_mask shape, batch included (None there means --batch); None: no mask.
    mask_shape: tuple[int | None, ...] | None = None
    #: use_causal_mask=True in the call.
    causal: bool = False
    #: The layer's sliding_window argument (Keras >= 3.15).
    sliding_window: int | None = None
    #: Which Keras runs the layer: 3 (``keras``) or 2 (``tf_keras``, Keras 2's rules).
    keras: int = 3
    #: Projections a subclass builds without a bias although use_bias (KerasHub Whisper's key):
    #: "query", "key", "value", "gate" or "attention_output". Read by scan from the layer's weights.
    unbiased: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerArgs:
    """The layer's shape-relevant constructor arguments, resolved."""

    num_heads: int
    key_dim: int
    value_dim: int
    dropout: float
    use_bias: bool
    output_shape: Shape | None
    attention_axes: tuple[int, ...]  # resolved: positive input axes, in the given order
    use_gate: bool
    dtype: str
    sliding_window: int | None = None
    #: Arguments the user did not give, so a default was used.
    defaulted: frozenset[str] = frozenset()

    def keras_kwargs(self, given_axes: tuple[int, ...] | None) -> dict[str, object]:
        """Constructor kwargs for ``keras.layers.MultiHeadAttention``.

        ``given_axes`` is what the user wrote (``None``, negatives...), so the
        real layer resolves it itself and the check compares its resolution
        with ours.
        """
        kwargs: dict[str, object] = {
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": self.output_shape,
            "attention_axes": given_axes,
            "dtype": self.dtype,
        }
        if self.use_gate:  # only Keras >= 3.14 knows the argument
            kwargs["use_gate"] = True
        if self.sliding_window is not None:  # only Keras >= 3.15 knows the argument
            kwargs["sliding_window"] = self.sliding_window
        return kwargs
