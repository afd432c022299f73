"""``compare --axes all``: every attention_axes choice for one input, from the algebra, verified on request.

The choices and their groups come from :mod:`mha_cli.core.choices` (no Keras).
With ``run``, every choice goes through :func:`mha_cli.operations.explain.explain`
in this one process (the same forward pass and checks as the explain command);
a choice the real layer rejects is marked, and the rest go on. The grouping is
then tested on the outputs, fed identical weights and inputs by the seed:
within a group they must agree within the dtype's tolerance, and between
groups they must not, or the algebra's grouping is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mha_cli.core.choices import Choices, every_choice
from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, TOLERANCE, ExplainResult, explain

if TYPE_CHECKING:
    from mha_cli.runtime.keras_adapter import LayerRun

#: Prefix of the runtime's ConfigError for a configuration the real layer refuses.
_REJECTS = "the real layer rejects this configuration: "


@dataclass(frozen=True)
class ChoiceRun:
    """What the real layer did with one choice."""

    #: The explain result (None when the layer refused the choice or the algebra knows it would).
    result: ExplainResult | None
    #: Why the layer did not run it (None: it ran, or the memory guard kept it from running).
    rejected: str | None = None

    @property
    def executed(self) -> bool:
        return self.result is not None and self.result.executed


@dataclass(frozen=True)
class GroupCheck:
    """The outputs of one group's executed members, against its first executed member."""

    #: Members compared (indices into the choices); fewer than two: nothing to compare.
    compared: tuple[int, ...]
    #: Every compared member held the same weights and inputs.
    same_weights: bool
    max_abs_diff: float | None

    def passed(self, tolerance: float) -> bool | None:
        if len(self.compared) < 2:
            return None
        return self.same_weights and self.max_abs_diff is not None and self.max_abs_diff <= tolerance


@dataclass(frozen=True)
class Separation:
    """The closest two groups' outputs came: they must differ, or the groups are one function."""

    groups: tuple[int, int]
    max_abs_diff: float


@dataclass(frozen=True)
class Exploration:
    choices: Choices
    #: One per choice, with --run; None when answered from the algebra alone.
    runs: tuple[ChoiceRun, ...] | None
    #: One per group, with --run.
    group_checks: tuple[GroupCheck, ...] | None
    #: The two groups whose outputs differ least (None: fewer than two groups ran).
    closest: Separation | None
    tolerance: float

    @property
    def unverified(self) -> tuple[int, ...]:
        """Groups none of whose members ran (with --run), by number."""
        if self.group_checks is None:
            return ()
        return tuple(n for n, check in enumerate(self.group_checks) if not check.compared)

    @property
    def failures(self) -> tuple[str, ...]:
        """One sentence per failed verification: a choice's checks, or the grouping."""
        found: list[str] = []
        for choice, run in zip(self.choices.choices, self.runs or (), strict=False):
            if run.result is not None:
                found += [f"{choice.label}: {check.name}: {check.detail}" for check in run.result.failed]
        labels = [choice.label for choice in self.choices.choices]
        for check in self.group_checks or ():
            if check.passed(self.tolerance) is False:
                members = ", ".join(labels[index] for index in check.compared)
                if not check.same_weights:
                    found.append(f"{members}: the layers did not hold identical weights and inputs")
                else:
                    found.append(
                        f"{members}: grouped as one function, but their outputs differ by up to "
                        f"{check.max_abs_diff:.3g} (tolerance {self.tolerance:g})"
                    )
        masked = self.choices.choices[0].derivation.mask is not None
        # With a mask, the algebra only groups the same axes in the same order and claims nothing about
        # the other groups: a mask that broadcasts over a size-1 axis can make two of them one function.
        if self.closest is not None and self.closest.max_abs_diff <= self.tolerance and not masked:
            first, second = (labels[self.choices.groups[g].members[0]] for g in self.closest.groups)
            found.append(
                f"{first} and {second}: in different groups, but their outputs agree "
                f"(max |diff| {self.closest.max_abs_diff:.3g}): the algebra grouped one function as two"
            )
        return tuple(found)


def explore(
    base: MHAConfig, backend: str, *, run: bool = False, max_memory: int = DEFAULT_MAX_MEMORY
) -> Exploration:
    """Every choice for ``base``'s inputs; with ``run``, each through the real layer and the groups tested."""
    choices = every_choice(base, backend)
    tolerance = TOLERANCE[choices.choices[0].derivation.layer.dtype]
    if not run:
        return Exploration(choices, None, None, None, tolerance)
    runs = tuple(
        _run(choice.derivation.config, choice.rejected, backend, max_memory) for choice in choices.choices
    )
    group_checks = tuple(_group_check(group.members, runs) for group in choices.groups)
    return Exploration(choices, runs, group_checks, _closest(choices, runs), tolerance)


def _run(config: MHAConfig, known: str | None, backend: str, max_memory: int) -> ChoiceRun:
    if known is not None:  # a limit the algebra knows; the runtime would refuse it the same way
        return ChoiceRun(None, known)
    try:
        return ChoiceRun(explain(config, backend, max_memory=max_memory))
    except ConfigError as error:
        return ChoiceRun(None, error.problem.removeprefix(_REJECTS))


def _group_check(members: tuple[int, ...], runs: tuple[ChoiceRun, ...]) -> GroupCheck:
    from mha_cli.runtime.arrays import max_abs_diff, same_arrays

    compared = tuple(index for index in members if runs[index].executed)
    if len(compared) < 2:  # one member ran (the group is verified, with nothing to compare) or none
        return GroupCheck(compared, True, None)
    layers = [_layer_run(runs[index]) for index in compared]
    first = layers[0]
    if not all(same_arrays(other.fed(), first.fed()) for other in layers[1:]):
        return GroupCheck(compared, False, None)
    diff = max(max_abs_diff(other.arrays["output"], first.arrays["output"]) for other in layers[1:])
    return GroupCheck(compared, True, diff)


def _closest(choices: Choices, runs: tuple[ChoiceRun, ...]) -> Separation | None:
    from mha_cli.runtime.arrays import max_abs_diff

    firsts = [
        (number, next((i for i in group.members if runs[i].executed), None))
        for number, group in enumerate(choices.groups)
    ]
    ran = [(number, index) for number, index in firsts if index is not None]
    closest: Separation | None = None
    for position, (one, first) in enumerate(ran):
        for other, second in ran[position + 1 :]:
            outputs = (_layer_run(runs[index]).arrays["output"] for index in (first, second))
            diff = max_abs_diff(*outputs)
            if closest is None or diff < closest.max_abs_diff:
                closest = Separation((one, other), diff)
    return closest


def _layer_run(run: ChoiceRun) -> LayerRun:
    assert run.result is not None and run.result.run is not None  # callers pass executed runs
    return run.result.run
