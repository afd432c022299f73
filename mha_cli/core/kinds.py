"""The layer kinds the tool explains, and what each must answer: one seam per kind.

A kind is the algebra of one Keras attention layer: it turns a user's
configuration into a :class:`~mha_cli.core.derived.Derived` (axis roles, every
shape, the einsum equations, weights, masks, costs and plain sentences) or
refuses it with a ConfigError naming the option, and it names the real layer
and its constructor arguments so the runtime can build it. Renderers, the JSON
documents and the checks read a derivation through ``Derived``; what only one kind has is read by
that kind's own modules (``output/gqa.py``, ``output/documents/gqa.py``).

Adding a kind means adding modules: its algebra beside :mod:`mha_cli.core.mha`
and :mod:`mha_cli.core.gqa` (registered in :data:`KINDS`), what the runtime must
do differently for it in :mod:`mha_cli.runtime`, and any section of its own in
:mod:`mha_cli.output`; ``tests/test_kinds.py`` runs the same contract tests on
every kind listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from mha_cli.core.derived import Derived
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQA
from mha_cli.core.mha import MHA

__all__ = ["KINDS", "Derived", "LayerKind", "derive_any", "kind", "kind_of"]


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

    @property
    def saved_class(self) -> str:
        """The class_name a saved model records (GroupQueryAttention's: GroupedQueryAttention)."""
        ...

    @property
    def own_arguments(self) -> tuple[str, ...]:
        """The configuration's arguments no other kind has (case-file keys; --options with dashes)."""
        ...

    @property
    def config_type(self) -> type:
        """The frozen dataclass a user's configuration of this kind is."""
        ...

    def derive(self, config: Any) -> Derived:
        """Validate ``config`` (ConfigError naming the option) and derive everything about it."""
        ...

    def keras_kwargs(self, derived: Any) -> dict[str, object]:
        """The real layer's constructor arguments for ``derived``, as the user gave them."""
        ...

    def check_backend(self, derived: Any, backend: str) -> None:
        """ConfigError for what ``backend`` refuses by shape alone, whatever the machine."""
        ...

    def shrunk(self, config: Any, most: int) -> Any:
        """The same layer on inputs of at most ``most`` positions per axis (--verify-small)."""
        ...

    def examples(self) -> tuple[Any, ...]:
        """A few valid configurations that between them use every feature of the kind."""
        ...


#: Every kind, by name; the first is the default (``--layer mha``).
KINDS: Mapping[str, LayerKind] = {MHA.name: MHA, GQA.name: GQA}


def kind(name: str) -> LayerKind:
    """The kind called ``name``, or a ConfigError listing the kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError("--layer", name, f"unknown layer kind; choose one of {', '.join(KINDS)}") from None


def kind_of(config: Any) -> LayerKind:
    """The kind whose configuration ``config`` is."""
    return next(k for k in KINDS.values() if isinstance(config, k.config_type))


def derive_any(config: Any) -> Derived:
    """Derive a configuration of any kind."""
    return kind_of(config).derive(config)
