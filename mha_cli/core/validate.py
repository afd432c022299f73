"""The validity rules every layer kind's configuration shares, each a ConfigError naming the option."""

from __future__ import annotations

from mha_cli.core.config import DTYPE_BYTES, KERAS_MAJORS
from mha_cli.core.errors import ConfigError


def positive(option: str, value: int | None) -> None:
    """``value`` is None (not given) or a positive integer (not a bool)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(option, value, "must be a positive integer")


def check_settings(*, dropout: float, dtype: str, batch: int, sliding_window: int | None, keras: int) -> None:
    """The arguments and call settings both kinds take: dropout, dtype, batch, sliding_window, Keras major."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("--dropout", dropout, "must be in [0, 1)")
    if dtype not in DTYPE_BYTES:
        raise ConfigError("--dtype", dtype, f"unknown dtype; choose one of {', '.join(DTYPE_BYTES)}")
    positive("--batch", batch)
    positive("--sliding-window", sliding_window)
    if keras not in KERAS_MAJORS:
        raise ConfigError("--keras", keras, "choose 3 (the keras package) or 2 (tf_keras)")


#: From this many sizes on, --shape is more often a batch and an image than a volume or a video.
_BATCH_LIKELY = 4


def batch_hint(query_shape: tuple[int | None, ...]) -> str | None:
    """A note for a --shape whose first size may be the batch, which --shape leaves out, or None.

    ``--shape 8,32,64,4 --axes 1`` reads as a rank-5 query (a volume, or a video) attending over
    its first axis, of size 8: what someone who typed their batch in front of an image gets.
    """
    if len(query_shape) < _BATCH_LIKELY:
        return None
    rest = ",".join(str(size) for size in query_shape[1:])
    first = query_shape[0]
    shown = ", ".join(str(size) for size in query_shape)
    return (
        f"--shape leaves the batch axis out, so this query is (None, {shown}), rank {len(query_shape) + 1}; "
        f"if {first} is your batch, write --shape {rest} (--batch {first} sets the run's batch)"
    )
