"""A Keras 2 MultiHeadAttention config, rewritten so Keras 3 loads it and computes the same thing.

Keras 3's ``MultiHeadAttention.from_config`` refuses a config saved by Keras 2
(tf_keras 2.21): "Unrecognized keyword arguments: query_shape, key_shape,
value_shape, softmax_robust_masking". Removing those is not the whole story:
Keras 2 resolves a negative ``attention_axes`` against the *projected* rank
(one more than the input's), Keras 3.12+ against the input's, so ``(-3,)``
on an image is its width in Keras 2 and its height in Keras 3. The config
loads either way; only rewriting the axis keeps the function. Pure: the
runtime layer checks the rewrite by loading it in Keras 3 and running both on
identical weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Keys Keras 2's get_config() writes that Keras 3's constructor does not take, and why each can go.
KERAS2_ONLY_KEYS = {
    "query_shape": "Keras 3 builds from the first call's shapes (or the saved build_config), not the config",
    "key_shape": "Keras 3 builds from the first call's shapes (or the saved build_config), not the config",
    "value_shape": "Keras 3 builds from the first call's shapes (or the saved build_config), not the config",
    "softmax_robust_masking": "Keras 3 has no such argument; its masked softmax always adds a large "
    "negative number to the masked scores",
}


@dataclass(frozen=True)
class Change:
    """One key of the config, as Keras 2 saved it and as Keras 3 needs it (``new`` None: removed)."""

    key: str
    old: Any
    new: Any
    removed: bool
    why: str

    @property
    def sentence(self) -> str:
        if self.removed:
            return f"remove {self.key} (= {self.old!r}): {self.why}"
        return f"{self.key}: {self.old!r} becomes {self.new!r}: {self.why}"


@dataclass(frozen=True)
class Migration:
    """The rewritten config and every change made to it, in the config's key order."""

    config: dict[str, Any]
    changes: tuple[Change, ...]


def input_rank(config: Mapping[str, Any]) -> int | None:
    """The rank of the query Keras 2 built the layer for, batch included (None when not saved)."""
    shape = config.get("query_shape")
    if isinstance(shape, list | tuple):
        return len(shape)
    if isinstance(shape, str) and shape.startswith("(") and shape.endswith(")"):  # str(TensorShape)
        return len([part for part in shape[1:-1].split(",") if part.strip()])
    return None


def keras2_axes_in_keras3(axes: list[int] | tuple[int, ...], rank: int) -> tuple[int, ...]:
    """Keras 2's ``attention_axes`` as Keras 3 must be given them for the same attention.

    Keras 2 counts a negative axis from the end of the projected tensor
    ``(batch, ..., heads, key_dim)``: ``a`` is input axis ``rank + 1 + a``
    (tf_keras 2.21, measured). Non-negative axes mean the same in both.
    """
    return tuple(axis if axis >= 0 else rank + 1 + axis for axis in axes)


def migrate(config: Mapping[str, Any], rank: int | None = None) -> Migration:
    """``config`` (Keras 2's get_config()) as Keras 3's from_config takes it.

    ``rank`` is the query's rank with batch; by default the one Keras 2 saved
    in ``query_shape``. Without either, a negative axis cannot be rewritten and
    is left as it is, with a change saying so.
    """
    rank = rank if rank is not None else input_rank(config)
    rewritten: dict[str, Any] = {}
    changes = []
    for key, value in config.items():
        if key in KERAS2_ONLY_KEYS:
            changes.append(Change(key, value, None, True, KERAS2_ONLY_KEYS[key]))
            continue
        if key == "attention_axes" and isinstance(value, list | tuple) and any(a < 0 for a in value):
            if rank is None:
                changes.append(
                    Change(
                        key,
                        list(value),
                        list(value),
                        False,
                        "negative axes mean something else in Keras 3, and the config does not say the "
                        "input's rank to rewrite them: give them as non-negative axes",
                    )
                )
                rewritten[key] = value
                continue
            new = list(keras2_axes_in_keras3(value, rank))
            if any(axis >= rank - 1 for axis in new):  # -1 or -2: key_dim or heads, not an input axis
                why = (
                    "Keras 2 attends over the projected tensor's heads or key_dim axis here (-1 and -2 count "
                    "from the end of (batch, ..., heads, key_dim)); no Keras 3 attention_axes does that"
                )
                changes.append(Change(key, list(value), list(value), False, why))
                rewritten[key] = value
                continue
            kept = [axis if axis >= 0 else rank + axis for axis in value]
            why = (
                f"Keras 2 counts negative axes from the end of the projected tensor (rank {rank + 1}), "
                f"Keras 3.12+ from the end of the input (rank {rank}); kept, Keras 3 would attend over "
                f"input axes {tuple(kept)} instead of {tuple(new)}"
            )
            changes.append(Change(key, list(value), new, False, why))
            rewritten[key] = new
            continue
        rewritten[key] = value
    return Migration(rewritten, tuple(changes))
