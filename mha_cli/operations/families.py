"""``compare --layer dot|additive``: MultiHeadAttention, Attention and AdditiveAttention on the same input.

Each layer is explained and checked on its own (operations/explain.py, operations/dense.py) from the
same query, value and key shapes, dtype, batch, seed and causal mask; the user's own Attention or
AdditiveAttention options go to the layer they named, the other two take their defaults. A value_mask
reaches MultiHeadAttention as the attention_mask (B, Tq, Tv) it takes instead; a query_mask has no
MultiHeadAttention argument and is said so. The three compute different functions, so nothing is
compared by value: the table shows what each builds, costs and returns, each verified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ConfigError
from mha_cli.operations.dense import DenseResult, explain_dense
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, Check, ExplainResult, explain

#: The columns, in order: --layer's name -> the class.
FAMILIES = {"mha": "MultiHeadAttention", "dot": "Attention", "additive": "AdditiveAttention"}


@dataclass(frozen=True)
class Refused:
    """A layer that cannot take this input (a dot score needs the query's width in the key)."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Families:
    """The three layers on one input: a result each, or why the layer refuses the input."""

    asked: str  # "dot" or "additive": the one the user's options went to
    results: dict[str, ExplainResult | DenseResult | Refused]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(
            check
            for result in self.results.values()
            if not isinstance(result, Refused)
            for check in result.failed
        )


def mha_config(config: DenseConfig) -> MHAConfig:
    """MultiHeadAttention on the same input: the tool's default heads, a value_mask as attention_mask."""
    value = config.value_shape or config.query_shape
    mask = (None, config.query_shape[0], value[0]) if config.value_mask and len(value) == 2 else None
    return MHAConfig(
        query_shape=config.query_shape,
        value_shape=config.value_shape,
        key_shape=config.key_shape,
        dropout=config.dropout,
        dtype=config.dtype,
        batch=config.batch,
        seed=config.seed,
        mask_shape=mask,
        causal=config.causal,
    )


def compare_families(
    config: DenseConfig, backend: str, *, execute: bool = True, max_memory: int = DEFAULT_MAX_MEMORY
) -> Families:
    """The layer ``config`` names with the user's options, the other two with their defaults."""
    configs = {
        kind: config if kind == config.kind else replace(config, kind=kind, use_scale=None, score_mode=None)
        for kind in ("dot", "additive")
    }
    results: dict[str, ExplainResult | DenseResult | Refused] = {}
    try:
        results["mha"] = explain(mha_config(config), backend, execute=execute, max_memory=max_memory)
    except ConfigError as error:
        results["mha"] = Refused("mha", str(error))
    for kind, each in configs.items():
        try:
            results[kind] = explain_dense(each, backend, execute=execute, max_memory=max_memory)
        except ConfigError as error:
            if kind == config.kind:  # the user's own layer: their input is wrong, say it as explain does
                raise
            results[kind] = Refused(kind, str(error))
    return Families(config.kind, results)
