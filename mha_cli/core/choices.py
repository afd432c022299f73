"""Every attention_axes choice for one input, and which of them compute the same function.

``compare --axes all`` answers "what are my options for this input?" from the
shape algebra alone. A choice is ``None`` or a tuple of positive axes between
batch and features. The order of the axes matters to the layer: Keras lays the
scores out with the query's attended axes, then the key's, in the order given,
and takes the softmax over the last ones; so ``(2, 1)`` is a choice of its own,
with its own scores layout, but the same output as ``(1, 2)``. Negative forms
(``-2`` for ``2`` on a rank-4 input) resolve to a positive choice and are not
listed again.

Which choices compute the same function on identical weights: the output at a
query position is a softmax-weighted sum over the key positions it reaches,
so it depends on the set of attended axes, not on their order, and an attended
axis whose key has one position mixes nothing (attending over it or not gives
the same output; see :func:`function_of`). With an attention mask, the mask's
layout follows the scores', so only choices with the same resolved axes in the
same order are grouped: permuted orders read the same mask array differently.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from mha_cli.core.config import MHAConfig
from mha_cli.core.derived import Derivation
from mha_cli.core.errors import ConfigError
from mha_cli.core.limits import check_shape_limits, machine_limit
from mha_cli.core.mha import derive


@dataclass(frozen=True)
class Choice:
    """One legal ``attention_axes`` value for the input, and what the algebra says of it."""

    #: What is passed to the layer: None, or positive axes in this order.
    argument: tuple[int, ...] | None
    derivation: Derivation
    #: Why the real layer cannot run it on this backend, whatever the machine (None: it can).
    rejected: str | None = None
    #: Why the real layer may refuse it on some machines (None: no such limit is known).
    caveat: str | None = None

    @property
    def label(self) -> str:
        if self.argument is None:
            return "None"
        return f"({self.argument[0]},)" if len(self.argument) == 1 else str(self.argument)

    @property
    def resolved(self) -> tuple[int, ...]:
        return self.derivation.layer.attention_axes


@dataclass(frozen=True)
class Omitted:
    """A choice the algebra refuses for these inputs (e.g. an axis where query and key differ)."""

    argument: tuple[int, ...] | None
    problem: str


@dataclass(frozen=True)
class Group:
    """Choices that compute the same output on identical weights and inputs."""

    #: Indices into Choices.choices, in listing order.
    members: tuple[int, ...]
    #: What the members share (function_of): the axes that mix positions, sorted.
    axes: tuple[int, ...]


@dataclass(frozen=True)
class Choices:
    base: MHAConfig
    backend: str
    choices: tuple[Choice, ...]
    omitted: tuple[Omitted, ...]
    groups: tuple[Group, ...]

    def group_of(self, index: int) -> int:
        return next(number for number, group in enumerate(self.groups) if index in group.members)


def group_letter(number: int) -> str:
    """A, B, ..., Z, AA, AB, ...: how output names the group at ``number`` (0-based)."""
    letters = ""
    number += 1
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def candidate_axes(rank: int) -> list[tuple[int, ...] | None]:
    """None, then every non-empty ordered selection of the axes 1..rank-2, shortest first.

    Within a length, sets in ascending order, each followed by its other orders:
    (1,), (2,), (1, 2), (2, 1) for rank 4.
    """
    middle = range(1, rank - 1)
    found: list[tuple[int, ...] | None] = [None]
    for size in range(1, len(middle) + 1):
        for subset in itertools.combinations(middle, size):
            found.extend(itertools.permutations(subset))
    return found


def function_of(derivation: Derivation) -> tuple[int, ...]:
    """What decides the function a choice computes, for grouping (see the module's docstring)."""
    if derivation.mask is not None:
        return derivation.layer.attention_axes
    return tuple(sorted(axis.index for axis in derivation.attended_axes if (axis.key_size or 0) > 1))


def every_choice(base: MHAConfig, backend: str) -> Choices:
    """Every choice for ``base``'s inputs and layer (its own attention_axes is ignored).

    Raises ConfigError when no choice is legal: the problem is then not only
    the axes (a --shape of rank 2, say), and None's error names it.
    """
    first_error: ConfigError | None = None
    choices: list[Choice] = []
    omitted: list[Omitted] = []
    rank = len(base.query_shape) + 1
    for argument in candidate_axes(max(rank, 3)):
        try:
            derivation = derive(replace(base, attention_axes=argument))
        except ConfigError as error:
            first_error = first_error or error
            omitted.append(Omitted(argument, error.problem))
            continue
        try:
            check_shape_limits(derivation, backend)
            rejected = None
        except ConfigError as error:
            rejected = error.problem
        choices.append(Choice(argument, derivation, rejected, machine_limit(derivation, backend)))
    if not choices:
        assert first_error is not None
        raise first_error
    keys: dict[tuple[int, ...], list[int]] = {}
    for index, choice in enumerate(choices):
        keys.setdefault(function_of(choice.derivation), []).append(index)
    groups = tuple(Group(tuple(members), key) for key, members in keys.items())
    return Choices(base, backend, tuple(choices), tuple(omitted), groups)
