"""GroupQueryAttention's key/value head counts side by side: MHA, GQA and MQA on the same input.

``compare --layer gqa``: every legal ``num_key_value_heads`` (a divisor of
``num_query_heads``), or the three a learner asks about: as many as the query
heads (MultiHeadAttention), the one given (grouped), and one (multi-query).
Each is explained as by ``explain`` (a real forward pass and its checks, unless
``execute`` is off). Their weights differ in shape, so their outputs are not
compared; what changes is the key/value projections and the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import DEFAULT_QUERY_HEADS, GQAConfig, GQADerivation, default_key_value_heads
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, ExplainResult, explain

ALL = "all"


@dataclass(frozen=True)
class HeadsComparison:
    """One row per key/value head count, in descending order (MultiHeadAttention first)."""

    results: tuple[ExplainResult, ...]
    #: Every legal count was asked for (--kv-heads all).
    every: bool

    @property
    def derivations(self) -> tuple[GQADerivation, ...]:
        found = tuple(result.derivation for result in self.results)
        assert all(isinstance(d, GQADerivation) for d in found)
        return found  # type: ignore[return-value]


def variant(d: GQADerivation) -> str:
    """What the field calls this grouping."""
    if d.layer.num_key_value_heads == d.layer.num_query_heads:
        return "MHA"
    return "MQA" if d.layer.num_key_value_heads == 1 else "GQA"


def key_value_heads(base: GQAConfig, asked: Sequence[str]) -> tuple[int, ...]:
    """The counts to compare: ``all`` (every divisor), the ones given, or MHA, the given one and MQA."""
    query_heads = base.num_query_heads or DEFAULT_QUERY_HEADS
    divisors = tuple(n for n in range(query_heads, 0, -1) if query_heads % n == 0)
    if ALL in asked:
        if len(asked) > 1:
            raise ConfigError("--kv-heads", ALL, "all stands for every divisor, so give it alone")
        return divisors
    if asked and base.num_key_value_heads is not None:
        raise ConfigError(
            "--num-key-value-heads",
            base.num_key_value_heads,
            f"compare takes the counts from --kv-heads; add it there (--kv-heads {base.num_key_value_heads})",
        )
    if not asked:
        given = base.num_key_value_heads or default_key_value_heads(query_heads)
        return tuple(sorted({query_heads, given, 1}, reverse=True))
    counts = []
    for text in asked:
        if not text.isdigit() or int(text) not in divisors:
            raise ConfigError(
                "--kv-heads",
                text,
                f"give a divisor of --num-query-heads {query_heads} ({', '.join(map(str, divisors))}) or all",
            )
        counts.append(int(text))
    return tuple(sorted(set(counts), reverse=True))


def compare_heads(
    base: GQAConfig,
    asked: Sequence[str],
    backend: str,
    *,
    execute: bool = True,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> HeadsComparison:
    counts = key_value_heads(base, asked)
    configs = [replace(base, num_key_value_heads=n) for n in counts]
    results = tuple(explain(config, backend, execute=execute, max_memory=max_memory) for config in configs)
    return HeadsComparison(results, every=ALL in asked)
