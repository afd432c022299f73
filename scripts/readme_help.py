"""Keep the --help reference (docs/reference.md) generated: ``python scripts/readme_help.py --write``.

Each command's help sits between ``<!-- help:begin COMMAND -->`` and
``<!-- help:end -->``; tests/test_cli.py checks that they match the current --help.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
#: The commands whose help docs/reference.md carries, as typed after ``mha-explain``.
COMMANDS = ("", "explain", "compare", "check", "record", "scan", "vectors", "map", "targets", "why")
END = "```\n<!-- help:end -->"


def _begin(command: str) -> str:
    title = f"mha-explain {command}".strip()
    return f"<!-- help:begin {title} -->\n```text\n"


def current_help(command: str) -> str:
    from typer.testing import CliRunner

    from mha_cli.cli.app import app

    args = [*command.split(), "--help"]
    result = CliRunner().invoke(
        app, args, prog_name="mha-explain", env={"COLUMNS": "100"}, terminal_width=100
    )
    return result.stdout


def _span(text: str, command: str) -> tuple[int, int]:
    start = text.index(_begin(command)) + len(_begin(command))
    return start, text.index(END, start)


def readme_help(command: str) -> str:
    text = README.read_text(encoding="utf-8")
    start, end = _span(text, command)
    return text[start:end]


def main() -> None:
    if "--write" not in sys.argv[1:]:
        for command in COMMANDS:
            print(current_help(command), end="")
        return
    text = README.read_text(encoding="utf-8")
    for command in COMMANDS:
        start, end = _span(text, command)
        text = text[:start] + current_help(command) + text[end:]
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
