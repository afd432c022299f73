"""``explain --jsonl``: many configurations, one per line of JSON, answered in one process.

Each line is one JSON object with the keys a case file's case takes (``shape``,
``axes``, ``num_heads``, ...; ``name`` is allowed and only named in errors).
Lines are read and answered one at a time, so a pipe sees each answer as soon
as it is ready; Keras is imported once, and layers whose build is identical
are built once (:func:`mha_cli.runtime.keras_adapter.build_signature`), as in
``check``. A bad line is answered with its problem and the rest go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mha_cli.core.cases import CASE_KEYS, KNOBS, KeyProblem, at_key, config_from, unknown_name
from mha_cli.core.config import MHAConfig
from mha_cli.core.errors import ConfigError, ExitCode
from mha_cli.core.gqa import GQAConfig
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, ExplainResult, explain

#: The keys a line may hold: a case's, without its expectations.
LINE_KEYS = tuple(key for key in CASE_KEYS if key != "expect")
_EXAMPLE = '{"shape": [10, 16], "axes": 1}'


class LineProblem(ValueError):
    """What is wrong with one input line, in a sentence naming the key where there is one."""

    def __init__(self, problem: str, name: str | None = None) -> None:
        super().__init__(problem)
        #: The line's name, when it has a readable one.
        self.name = name


@dataclass(frozen=True)
class Answer:
    """One input line's answer: an explained configuration, or why there is none."""

    #: 1-based line number in the input.
    line: int
    name: str | None
    result: ExplainResult | None = None
    #: The line's problem (exit 2), or an internal error (exit 1); None when answered.
    problem: str | None = None
    exit_code: ExitCode = ExitCode.OK


def config_line(text: str) -> tuple[str | None, MHAConfig | GQAConfig]:
    """The (name, configuration) one line states; LineProblem when it states none."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        raise LineProblem(f"not JSON ({error.msg} at column {error.colno}); write e.g. {_EXAMPLE}") from None
    except (RecursionError, ValueError) as error:  # nesting too deep; an integer of thousands of digits
        raise LineProblem(f"not a configuration ({type(error).__name__}); write e.g. {_EXAMPLE}") from None
    if not isinstance(entry, dict):
        raise LineProblem(f"a line is one JSON object with case-file keys, e.g. {_EXAMPLE}")
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        raise LineProblem(f"name: expected a string, got {name!r}")
    for key in entry:
        if key not in LINE_KEYS:
            raise LineProblem(unknown_name("key", key, LINE_KEYS), name)
    if "axes" in entry and "attention_axes" in entry:
        raise LineProblem("give axes or attention_axes, not both", name)
    if "shape" not in entry:
        raise LineProblem("no shape; give the query shape without the batch axis, e.g. [10, 16]", name)
    try:
        return name, config_from({key: value for key, value in entry.items() if key in KNOBS})
    except KeyProblem as error:
        raise LineProblem(str(error), name) from None


def answer_lines(
    lines: Iterable[str],
    backend: str,
    *,
    execute: bool = True,
    max_memory: int = DEFAULT_MAX_MEMORY,
    verify_small: bool = False,
    graph: bool = False,
) -> Iterator[Answer]:
    """One answer per non-blank line, in order, each as soon as it is done.

    An environment problem (a backend that is not installed) is the same for
    every line, so it is raised, not answered.
    """
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        name: str | None = None
        try:
            name, config = config_line(text)
            result = explain(
                config,
                backend,
                execute=execute,
                max_memory=max_memory,
                verify_small=verify_small,
                observe_path=True,
                graph=graph,
            )
        except LineProblem as error:
            yield Answer(number, error.name, problem=str(error), exit_code=ExitCode.BAD_INPUT)
            continue
        except ConfigError as error:  # the derivation or the real layer refuses it
            yield Answer(number, name, problem=at_key(error)[1], exit_code=ExitCode.BAD_INPUT)
            continue
        code = ExitCode.CHECK_FAILED if result.failed else ExitCode.OK
        yield Answer(number, name, result=result, exit_code=code)
