"""Weight maps to and from PyTorch: the formulas for one configuration, and (``check``) both sides run.

The formulas come from :mod:`mha_cli.core.weight_map`; the check from
:mod:`mha_cli.runtime.torch_port`, imported only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mha_cli.core.config import MHAConfig
from mha_cli.core.derived import Derived
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import format_bytes
from mha_cli.core.kinds import kind_of
from mha_cli.core.weight_map import WeightMap, plan
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, TOLERANCE

if TYPE_CHECKING:
    from mha_cli.runtime.torch_port import MapCheck


@dataclass(frozen=True)
class MapResult:
    derivation: Derived
    map: WeightMap
    #: Both sides run on the same inputs (None without --check).
    check: MapCheck | None
    tolerance: float

    @property
    def failures(self) -> tuple[str, ...]:
        """What is above tolerance, one sentence each (empty: the map holds, or was not checked)."""
        check = self.check
        if check is None:
            return ()
        found = []
        if not check.output_max_abs_diff <= self.tolerance:
            difference = check.output_max_abs_diff
            found.append(f"the outputs differ by {difference:.1e}, above the tolerance {self.tolerance:.0e}")
        for head, difference in enumerate(check.head_max_abs_diff):
            if not difference <= self.tolerance:
                found.append(f"head {head}'s attention weights differ by {difference:.1e}")
        return tuple(found)


def weight_map(
    config: MHAConfig | GQAConfig,
    target: str,
    direction: str,
    *,
    check: bool = False,
    backend: str = "tensorflow",
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> MapResult:
    """The map for ``config`` (ConfigError when there is none); with ``check``, both real layers run."""
    kind = kind_of(config)
    derivation = kind.derive(config)
    wmap = plan(derivation, target, direction)
    tolerance = TOLERANCE[derivation.layer.dtype]
    if not check:
        return MapResult(derivation, wmap, None, tolerance)
    kind.check_backend(derivation, backend)
    needed = derivation.forward_pass_bytes() * 2  # Keras's pass, and PyTorch's in float64
    if needed > max_memory:
        raise ConfigError(
            "--check",
            None,
            f"running Keras and PyTorch would need about {format_bytes(needed)}, above --max-memory "
            f"{format_bytes(max_memory)}; use smaller --shape sizes or raise --max-memory",
        )
    from mha_cli.runtime.torch_port import check_map

    return MapResult(derivation, wmap, check_map(derivation, wmap, backend), tolerance)
