"""``mha-explain targets``: which converter takes what this layer uses, before a porter tries.

The rules are facts read by hand from each converter's source or docs, kept in ``targets.toml``
beside this module, each with the file (or issue) it comes from and the version it was read at;
tests/test_targets.py holds every rule's citation present and the table's logic on known cases.
This module turns a derivation into the features it uses (attention over other axes than 1, rank,
masks, output_shape, ...) and each target's verdict on each: ``supported``, ``refused`` (the
target's own rule, cited) or ``unknown`` (nobody read it).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mha_cli.core.derived import Derived
from mha_cli.core.grammar import format_shape

SUPPORTED, REFUSED, UNKNOWN = "supported", "refused", "unknown"


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    #: What it converts, in a phrase, and where its rules were read (repository at a version).
    what: str
    source: str
    version: str
    #: The verdict for a feature no rule names.
    otherwise: str


@dataclass(frozen=True)
class Rule:
    target: str
    feature: str
    verdict: str
    #: The target's own words or condition, quoted or paraphrased closely.
    rule: str
    #: Where: a file path (line) or an issue, in the target's repository.
    where: str


@dataclass(frozen=True)
class Feature:
    """One thing the configuration uses that a converter may refuse."""

    name: str
    #: What the configuration does, in its own numbers.
    shown: str


@dataclass(frozen=True)
class Cell:
    verdict: str
    rule: Rule | None


@dataclass(frozen=True)
class TargetsTable:
    features: tuple[Feature, ...]
    targets: tuple[Target, ...]
    #: (target name, feature name) -> its cell.
    cells: dict[tuple[str, str], Cell]

    def verdict(self, target: str) -> str:
        """The target's verdict on the whole configuration: refused if any feature is, else unknown if
        any is, else supported."""
        verdicts = {self.cells[(target, feature.name)].verdict for feature in self.features}
        return REFUSED if REFUSED in verdicts else UNKNOWN if UNKNOWN in verdicts else SUPPORTED


@functools.cache
def load_rules() -> tuple[tuple[Target, ...], tuple[Rule, ...]]:
    """The targets and rules of ``targets.toml`` (read once: every group of a model's calls asks)."""
    text = (resources.files("mha_cli.core") / "targets.toml").read_text(encoding="utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    targets = tuple(
        Target(
            name=name,
            title=entry["title"],
            what=entry["what"],
            source=entry["source"],
            version=entry["version"],
            otherwise=entry.get("otherwise", UNKNOWN),
        )
        for name, entry in data["target"].items()
    )
    rules = tuple(
        Rule(rule["target"], rule["feature"], rule["verdict"], rule["rule"], rule["where"])
        for rule in data["rule"]
    )
    return targets, rules


#: Every feature a rule may name, with what it means.
FEATURES = {
    "layer:mha": "keras.layers.MultiHeadAttention itself",
    "layer:gqa": "keras.layers.GroupQueryAttention itself",
    "rank>3": "inputs of rank 4 or more (an image, a video)",
    "attention_axes": "attention over other axes than axis 1",
    "output_shape": "output_shape given",
    "widths": "query, key and value of different feature widths",
    "value_dim": "value_dim other than key_dim",
    "no_bias": "use_bias=False",
    "gate": "use_gate=True",
    "attention_mask": "an attention_mask in the call",
    "causal": "use_causal_mask=True",
    "sliding_window": "sliding_window",
    "dropout": "dropout > 0 (training only)",
    "dtype": "a half-precision dtype",
    "scores": "the call returns the attention scores",
    "dynamic": "sequence lengths unknown until run time",
}


def features_of(d: Derived, *, scores: bool = False, dynamic: bool = False) -> tuple[Feature, ...]:
    """What ``d`` uses that a converter may refuse; the layer and its rank always, the rest when used."""
    layer = {"mha": "MultiHeadAttention", "gqa": "GroupQueryAttention"}[d.kind]
    query, key, value = (d.inputs[name].shape for name in ("query", "key", "value"))
    found = [Feature(f"layer:{d.kind}", f"{layer}, query {format_shape(query)}")]
    if d.rank > 3:
        found.append(Feature("rank>3", f"rank {d.rank} inputs"))
    axes = d.layer.attention_axes
    if tuple(axes) != (1,):
        found.append(Feature("attention_axes", f"attention_axes {tuple(axes)}"))
    args: Any = d.layer
    if getattr(args, "output_shape", None) is not None:
        found.append(Feature("output_shape", f"output_shape {tuple(args.output_shape)}"))
    widths = {query[-1], key[-1], value[-1]}
    if len(widths) > 1:
        found.append(Feature("widths", f"query {query[-1]}, key {key[-1]}, value {value[-1]} features"))
    if hasattr(args, "value_dim") and args.value_dim != args.key_dim:
        found.append(Feature("value_dim", f"value_dim {args.value_dim}, key_dim {args.key_dim}"))
    if not d.layer.use_bias:
        found.append(Feature("no_bias", "use_bias=False"))
    if d.layer.use_gate:
        found.append(Feature("gate", "use_gate=True"))
    if d.config.mask_shape is not None:
        found.append(Feature("attention_mask", f"attention_mask {format_shape(d.config.mask_shape)}"))
    if d.config.causal:
        found.append(Feature("causal", "use_causal_mask=True"))
    if d.layer.sliding_window is not None:
        found.append(Feature("sliding_window", f"sliding_window {d.layer.sliding_window}"))
    if d.layer.dropout:
        found.append(Feature("dropout", f"dropout {d.layer.dropout:g}"))
    if d.layer.dtype in ("float16", "bfloat16"):
        found.append(Feature("dtype", d.layer.dtype))
    if scores:
        found.append(Feature("scores", "return_attention_scores=True"))
    if dynamic:
        found.append(Feature("dynamic", "sequence lengths known only at run time"))
    return tuple(found)


def targets_table(features: tuple[Feature, ...], only: tuple[str, ...] = ()) -> TargetsTable:
    """Every target's (or ``only`` those) cell on every feature."""
    targets, rules = load_rules()
    if only:
        targets = tuple(target for target in targets if target.name in only)
    by_key = {(rule.target, rule.feature): rule for rule in rules}
    cells = {}
    for target in targets:
        for feature in features:
            rule = by_key.get((target.name, feature.name))
            cells[(target.name, feature.name)] = (
                Cell(rule.verdict, rule) if rule is not None else Cell(target.otherwise, None)
            )
    return TargetsTable(features, targets, cells)


@dataclass(frozen=True)
class CallGroup:
    """Calls of a model that use the same features (a model's repeated blocks), and their table."""

    calls: tuple[str, ...]
    layer: str  # "mha" or "gqa"
    table: TargetsTable


@dataclass(frozen=True)
class ModelTargets:
    """``scan --targets``: every attention call of a model against every target."""

    groups: tuple[CallGroup, ...]
    #: Attention the rules do not cover (KerasHub's own classes, keras.layers.Attention, a call that
    #: could not be explained): (call, what it is, why it is not covered).
    uncovered: tuple[tuple[str, str, str], ...]
    targets: tuple[Target, ...]

    def verdict(self, target: str) -> str:
        """The target's verdict on the model: refused if it refuses a call; unknown if it is unknown
        for one, or the model holds attention the rules do not cover; else supported."""
        verdicts = {group.table.verdict(target) for group in self.groups}
        if REFUSED in verdicts:
            return REFUSED
        if UNKNOWN in verdicts or self.uncovered:
            return UNKNOWN
        return SUPPORTED if verdicts else UNKNOWN

    def refusing(self, target: str) -> tuple[str, ...]:
        """The calls ``target`` refuses."""
        return tuple(
            call for group in self.groups if group.table.verdict(target) == REFUSED for call in group.calls
        )


def model_targets(
    calls: tuple[tuple[str, str, tuple[Feature, ...]], ...],
    uncovered: tuple[tuple[str, str, str], ...],
    only: tuple[str, ...] = (),
) -> ModelTargets:
    """Group ``calls`` ((call, layer kind, features)) by the features they use, each group's table."""
    grouped: dict[tuple[str, tuple[Feature, ...]], list[str]] = {}
    for call, layer, features in calls:
        grouped.setdefault((layer, features), []).append(call)
    groups = tuple(
        CallGroup(tuple(names), layer, targets_table(features, only))
        for (layer, features), names in grouped.items()
    )
    targets = load_rules()[0]
    if only:
        targets = tuple(target for target in targets if target.name in only)
    return ModelTargets(groups, uncovered, targets)
