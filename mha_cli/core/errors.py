"""Error types and exit codes. User mistakes are ConfigError; nothing else is."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes of every mha-explain command."""

    OK = 0
    CHECK_FAILED = 1  # a verification failed, or an internal error (a bug)
    BAD_INPUT = 2
    ENVIRONMENT = 3  # e.g. the requested backend is not installed
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # stdout closed before the answer was out (``| head``), as 128 + SIGPIPE


class ConfigError(ValueError):
    """A user mistake: one line naming the option, the value and the fix.

    ``option`` is the CLI spelling (``--axes``) so the CLI can print the
    message as is; ``value`` is what the user wrote (None: not shown).
    """

    def __init__(self, option: str, value: object | None, problem: str) -> None:
        self.option = option
        self.value = value
        self.problem = problem
        where = option if value is None else f"{option} {value}"
        super().__init__(f"{where}: {problem}")


class EnvironmentProblem(RuntimeError):
    """The machine cannot do what was asked (missing backend, wrong Keras)."""


class InternalError(RuntimeError):
    """Our derivation disagrees with itself: a bug in mha-explain, never the user's."""
