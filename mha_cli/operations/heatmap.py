"""The attention heatmap's data: the real scores of one batch item, laid out by the axes' roles.

From an explain result that ran a forward pass: the scores tensor of batch item 0, and for each of
its axes whether it is a free axis (a slice attends on its own), the heads, a query axis or a key
axis, by the derivation's labels. The page (output/heatmap.py) draws the query positions as a grid
(an image's height x width, a video's frames), and a click on one shows its weights over the key
positions, per head and per free slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape

#: More values than this for one batch item make a page too heavy to open (4 MB of float32).
MOST_VALUES = 1_000_000


@dataclass(frozen=True)
class AxisRole:
    name: str
    size: int
    role: str  # free, heads, query, key


@dataclass(frozen=True)
class Heatmap:
    """One batch item's attention weights and what each axis of them is."""

    title: str
    axes: tuple[AxisRole, ...]
    #: The weights, C order over ``axes``, float32 little-endian, base64.
    values: str
    shape: tuple[int, ...]

    def of(self, role: str) -> tuple[AxisRole, ...]:
        return tuple(axis for axis in self.axes if axis.role == role)


def heatmap(result: Any) -> Heatmap:
    """The heatmap of an explain result (MultiHeadAttention's, GroupQueryAttention's, Attention's);
    ConfigError when no forward pass ran or the scores are too many to draw."""
    if not result.executed or result.run is None:
        reason = getattr(result, "not_executed_reason", None) or "no forward pass"
        raise ConfigError(
            "--html", None, f"the heatmap draws the real scores, and none were computed: {reason}"
        )
    from mha_cli.runtime.arrays import item_as_base64

    d = result.derivation
    scores = d.shapes["attention_scores"]
    per_item = scores.per_item_size()
    if per_item > MOST_VALUES:
        raise ConfigError(
            "--html",
            None,
            f"the scores hold {per_item:,} weights per batch item ({format_shape(scores.shape)}), more than "
            f"the {MOST_VALUES:,} a page can draw; shrink the attended axes",
        )
    axes = []
    for label, size in zip(scores.labels[1:], scores.shape[1:], strict=True):
        role = (
            "heads"
            if label == "heads"
            else "query"
            if label.endswith("_q")
            else "key"
            if label.endswith("_k")
            else "free"
        )
        axes.append(AxisRole(label, int(size or 0), role))
    values, shape = item_as_base64(result.run.arrays["attention_scores"])
    layer = (
        getattr(d, "keras_class", None) or {"mha": "MultiHeadAttention", "gqa": "GroupQueryAttention"}[d.kind]
    )
    query = format_shape(d.inputs["query"].shape)
    run = f"Keras {result.run.keras_version} ({result.backend})"
    title = f"{layer} on query {query}: attention weights of batch item 0, {run}"
    return Heatmap(title, tuple(axes), values, shape)
