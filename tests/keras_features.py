"""What the installed Keras's MultiHeadAttention accepts, for tests that span Keras versions.

CI runs the suite on the newest Keras and on the oldest supported one (3.12),
where use_gate (3.14) and sliding_window (3.15) do not exist yet.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError

#: The Keras release that added each optional argument.
ADDED_IN = {"use_gate": "3.14", "sliding_window": "3.15"}


@functools.cache
def keras_supports(argument: str, layer: str = "MultiHeadAttention") -> bool:
    import keras

    return argument in inspect.signature(getattr(keras.layers, layer).__init__).parameters


def unsupported(config: MHAConfig) -> str | None:
    """The first optional argument ``config`` uses that the installed Keras lacks."""
    used = {"use_gate": config.use_gate, "sliding_window": config.sliding_window is not None}
    return next((name for name, on in used.items() if on and not keras_supports(name)), None)


@contextmanager
def refused_if_unsupported(config: MHAConfig) -> Iterator[bool]:
    """Yields whether the installed Keras runs ``config``; if not, the body must raise our clear error."""
    missing = unsupported(config)
    if missing is None:
        yield True
        return
    with pytest.raises(ConfigError, match=f"has no {missing} \\(added in Keras {ADDED_IN[missing]}\\)"):
        yield False
