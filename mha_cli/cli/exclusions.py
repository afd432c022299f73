"""Which options exclude which, declared once per command, and the one function that enforces it.

A command lists its rules in order; :func:`refuse` finds the first one the
command line breaks and fails with that rule's line (exit 2). The lines are
the ones users and tests already know, so each rule carries its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mha_cli.cli.process import fail
from mha_cli.core.errors import ExitCode

#: What was given: an option's name -> whether it was given, or the text to name it by
#: (``"--backend jax"``) when its value matters to the line.
Given = Mapping[str, bool | str]


@dataclass(frozen=True)
class Excludes:
    """With ``mode`` given, none of ``options`` may be; ``line`` names both (``{mode}``, ``{option}``)."""

    mode: str
    options: tuple[str, ...]
    line: str

    def broken(self, given: Given) -> str | None:
        if not given.get(self.mode):
            return None
        for option in self.options:
            value = given.get(option)
            if value:
                return self.line.format(mode=self.mode, option=value if isinstance(value, str) else option)
        return None


@dataclass(frozen=True)
class OneOf:
    """At most one of ``options``; ``why`` follows the ones given, joined by "and"."""

    options: tuple[str, ...]
    why: str

    def broken(self, given: Given) -> str | None:
        present = [option for option in self.options if given.get(option)]
        return f"{' and '.join(present)}: {self.why}" if len(present) > 1 else None


Rule = Excludes | OneOf


def refuse(rules: Sequence[Rule], given: Given) -> None:
    """Fail with the first rule ``given`` breaks, in the order the rules are declared."""
    for rule in rules:
        line = rule.broken(given)
        if line is not None:
            fail(ExitCode.BAD_INPUT, line)
