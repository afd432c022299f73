"""The layer kinds the tool explains, and what each must answer: one seam per kind.

A kind is the algebra of one Keras attention layer (MultiHeadAttention today):
it turns a user's configuration into a :class:`Derived` (axis roles, every
shape, the einsum equations, weights, masks, costs and plain sentences) or
refuses it with a ConfigError naming the option, and it names the real layer
and its constructor arguments so the runtime can build it. Renderers, the JSON
documents and the checks read only what :class:`Derived` promises.

Adding a kind means adding modules: its algebra beside :mod:`mha_cli.core.mha`
(registered in :data:`KINDS`), its runtime part in :mod:`mha_cli.runtime`, and
any section of its own in :mod:`mha_cli.output`; ``tests/test_kinds.py`` runs
the same contract tests on every kind listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from mha_cli.core.config import ExecutionPath
from mha_cli.core.derived import Axis, Einsum, MaskPlan, Tensor, Weight
from mha_cli.core.errors import ConfigError
from mha_cli.core.mha import MHA


@runtime_checkable
class Derived(Protocol):
    """What a kind's algebra says about one configuration."""

    @property
    def kind(self) -> str: ...
    @property
    def axes(self) -> tuple[Axis, ...]: ...
    @property
    def inputs(self) -> dict[str, Tensor]: ...
    @property
    def shapes(self) -> dict[str, Tensor]: ...
    @property
    def einsums(self) -> dict[str, Einsum]: ...
    @property
    def weights(self) -> tuple[Weight, ...]: ...
    @property
    def mask(self) -> MaskPlan | None: ...
    @property
    def summary(self) -> tuple[str, ...]: ...
    @property
    def rank(self) -> int: ...
    @property
    def params(self) -> int: ...
    @property
    def flops_per_item(self) -> int: ...
    @property
    def execution_path(self) -> ExecutionPath: ...
    @property
    def equations(self) -> dict[str, str]: ...


@runtime_checkable
class LayerKind(Protocol):
    """One Keras attention layer: its configuration's validity rules and algebra, and its real name."""

    @property
    def name(self) -> str:
        """The kind's short name: ``--layer`` and the JSON's ``layer``."""
        ...

    @property
    def keras_class(self) -> str:
        """The class in ``keras.layers`` that the runtime builds."""
        ...

    def derive(self, config: Any) -> Derived:
        """Validate ``config`` (ConfigError naming the option) and derive everything about it."""
        ...

    def keras_kwargs(self, derived: Any) -> dict[str, object]:
        """The real layer's constructor arguments for ``derived``, as the user gave them."""
        ...

    def examples(self) -> tuple[Any, ...]:
        """A few valid configurations that between them use every feature of the kind."""
        ...


#: Every kind, by name.
KINDS: Mapping[str, LayerKind] = {MHA.name: MHA}


def kind(name: str) -> LayerKind:
    """The kind called ``name``, or a ConfigError listing the kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError("--layer", name, f"unknown layer kind; choose one of {', '.join(KINDS)}") from None
