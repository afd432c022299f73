"""What one query position attends to, read from a real forward pass.

The attention scores the layer returned (batch item 0, head 0) say which key
positions got a non-zero weight: along the attended axes, whatever the causal,
sliding-window or given mask let through; along the free axes, only the
query's own slice, since free axes are independent like extra batch axes.
Nothing here is reasoned from the configuration: the runtime reads the array
(:func:`mha_cli.runtime.arrays.attended_grid`), and rich draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mha_cli.core.config import Role
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape
from mha_cli.operations.explain import ExplainResult

if TYPE_CHECKING:  # imported where a picture is read: --no-run and --help never need NumPy
    import numpy as np


@dataclass(frozen=True)
class Picture:
    #: The query position, one index per axis between batch and features.
    at: tuple[int, ...]
    #: Names of those axes, in order.
    axis_names: tuple[str, ...]
    #: The key/value grid: its sizes along those axes.
    key_grid: tuple[int, ...]
    #: True where the query position gives a non-zero weight (key grid's shape).
    attended: np.ndarray
    #: Whether the query and the key grid are the same positions (self-attention).
    same_grid: bool

    @property
    def attended_count(self) -> int:
        return int(self.attended.sum())


def default_position(result: ExplainResult) -> tuple[int, ...]:
    """The centre of the query grid."""
    return tuple(axis.query_size // 2 for axis in result.derivation.axes[1:-1] if axis.query_size)


def attention_picture(result: ExplainResult, at: tuple[int, ...] | None) -> Picture:
    """Which key positions the query position ``at`` attends to, from the forward pass's scores."""
    d = result.derivation
    run = result.run
    if run is None or not run.executed:
        raise ConfigError(
            "--at",
            None,
            "the picture is read from a real forward pass; leave out --no-run or raise --max-memory",
        )
    if d.heads_attended:
        raise ConfigError(
            "--at",
            None,
            f"the picture draws one head's weights over the key's positions; attention_axes "
            f"{format_shape(d.layer.attention_axes)} attends over the heads, so each weight also picks a "
            "head (mha-explain vectors writes the real scores, every head in them)",
        )
    middle = d.axes[1:-1]
    sizes = tuple(axis.query_size or 0 for axis in middle)
    position = default_position(result) if at is None else at
    if len(position) != len(middle):
        raise ConfigError(
            "--at",
            format_shape(position),
            f"give one index per axis between batch and features ({', '.join(a.name for a in middle)}), "
            f"e.g. {','.join(str(size // 2) for size in sizes)}",
        )
    for axis, index, size in zip(middle, position, sizes, strict=True):
        if not 0 <= index < size:
            raise ConfigError("--at", format_shape(position), f"{axis.name} has positions 0..{size - 1}")
    from mha_cli.runtime.arrays import attended_grid

    free = [i for i, axis in enumerate(middle) if axis.role is Role.FREE]
    attended_axes = [axis.index - 1 for axis in (d.axes[i] for i in d.layer.attention_axes)]
    key_grid = tuple(axis.key_size or 0 for axis in middle)
    attended = attended_grid(run.arrays["attention_scores"], position, free, attended_axes, key_grid)
    return Picture(
        at=position,
        axis_names=tuple(axis.name for axis in middle),
        key_grid=key_grid,
        attended=attended,
        same_grid=d.config.value_shape is None or key_grid == sizes,
    )
