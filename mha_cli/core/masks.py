"""How the call's masks (attention_mask, use_causal_mask, sliding_window) reach the scores."""

from __future__ import annotations

from mha_cli.core.derived import Derived, MaskPlan
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import format_shape


def mask_layout(d: Derived) -> tuple[tuple[int | None, ...], int]:
    """The full attention_mask shape (the scores' without heads) and where Keras inserts missing axes.

    When the heads are attended the scores have no axis of heads to broadcast over, and the full
    shape is the scores' own.
    """
    scores = d.shapes["attention_scores"]
    inserted_at = -2 * len(d.layer.attention_axes) - 1
    if "heads" not in scores.labels:
        return scores.shape, inserted_at
    heads = scores.labels.index("heads")
    return scores.shape[:heads] + scores.shape[heads + 1 :], inserted_at


def plan_mask(d: Derived) -> MaskPlan | None:
    """The mask plan for ``d``'s call, or None without masks; ConfigError where Keras fails."""
    config = d.config
    scores = d.shapes["attention_scores"]
    expected, heads_axis = mask_layout(d)
    sources: list[tuple[str, tuple[int, ...]]] = []
    if config.mask_shape is not None:
        sources.append(("attention_mask", tuple(config.batch if s is None else s for s in config.mask_shape)))
    # Keras builds these from axis 1 of the query and of the value, whatever the attended axes.
    band = (1, d.inputs["query"].shape[1] or 0, d.inputs["value"].shape[1] or 0)
    if config.causal:
        sources.append(("causal", band))
    if config.sliding_window is not None:
        sources.append(("sliding_window", band))
    if not sources:
        return None
    option = {"attention_mask": "--mask-shape", "causal": "--causal", "sliding_window": "--sliding-window"}
    first = option[sources[0][0]] if len(sources) == 1 else "--mask-shape"
    shown = " & ".join(f"{name} {format_shape(shape)}" for name, shape in sources)
    combined = sources[0][1]
    for _, shape in sources[1:]:
        combined = _broadcast(combined, shape, first, shown)
    target = scores.with_batch(config.batch)
    mask = list(combined)
    while len(mask) < len(target):
        position = len(mask) + 1 + heads_axis
        if position < 0:
            raise ConfigError(
                first,
                format_shape(combined),
                f"Keras inserts missing mask axes at {heads_axis} (just before the query's attended axes); "
                f"a rank-{len(mask)} mask has no axis there, so it cannot reach the rank-{len(target)} "
                f"scores {format_shape(scores.shape)}"
                + (f"; give the full shape {format_shape(expected)}" if first == "--mask-shape" else ""),
            )
        mask.insert(position, 1)
    if len(mask) > len(target):
        raise ConfigError(
            first,
            format_shape(combined),
            f"rank {len(mask)} is more than the scores' rank {len(target)} {format_shape(scores.shape)}",
        )
    as_given = (
        format_shape(config.mask_shape)
        if config.mask_shape is not None and first == "--mask-shape" and len(sources) == 1
        else None
    )
    for index, (size, wanted) in enumerate(zip(mask, target, strict=True)):
        if size not in (1, wanted) and index == 0 and first == "--mask-shape":
            # The batch axis: the user's is None; the 2 on it is this run's --batch, not the heads.
            inserted = format_shape(tuple(mask))
            if len(combined) < len(expected):
                problem = (
                    f"a rank-{len(combined)} mask becomes {inserted} once Keras inserts the missing axes, "
                    "so its first size lands on the batch axis; give the full shape "
                    f"{format_shape(expected)} (None: any batch)"
                )
            else:
                problem = (
                    f"its axis 0 is the batch, {size} here, and this run's batch is {config.batch} (--batch; "
                    f"the scores are {format_shape(scores.shape)}): write None or 1 there, or run with "
                    f"--batch {size}"
                )
            raise ConfigError(first, as_given or shown, problem)
        if size not in (1, wanted):
            why = (
                " (Keras builds causal and sliding-window masks from axis 1 of the query and the value)"
                if any(name != "attention_mask" for name, _ in sources)
                else ""
            )
            raise ConfigError(
                first,
                as_given or (shown if len(sources) > 1 else format_shape(combined)),
                f"after Keras inserts the missing axes the mask is {format_shape(tuple(mask))}; its axis "
                f"{index} has size {size} where the scores {format_shape(scores.shape)} have "
                f"{wanted} ({scores.labels[index]}): each mask axis must be 1 or the scores' size{why}",
            )
    return MaskPlan(expected, heads_axis, tuple(sources), combined, tuple(mask))


def _broadcast(a: tuple[int, ...], b: tuple[int, ...], option: str, shown: str) -> tuple[int, ...]:
    """NumPy broadcasting of two shapes, as ``mask_a & mask_b`` does."""
    width = max(len(a), len(b))
    a_full, b_full = (1,) * (width - len(a)) + a, (1,) * (width - len(b)) + b
    out = []
    for x, y in zip(a_full, b_full, strict=True):
        if x != y and 1 not in (x, y):
            raise ConfigError(
                option, shown, f"Keras ANDs these masks, and sizes {x} and {y} do not broadcast together"
            )
        out.append(max(x, y))
    return tuple(out)
