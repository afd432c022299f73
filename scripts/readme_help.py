"""Keep the README's --help reference generated: ``python scripts/readme_help.py --write``.

tests/test_cli.py checks that the README matches the current --help.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- help:begin -->\n```text\n"
END = "```\n<!-- help:end -->"


def current_help() -> str:
    from typer.testing import CliRunner

    from mha_cli.cli import app

    result = CliRunner().invoke(
        app, ["--help"], prog_name="mha-explain", env={"COLUMNS": "100"}, terminal_width=100
    )
    return result.stdout


def readme_help() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END, start)]


def main() -> None:
    if "--write" not in sys.argv[1:]:
        print(current_help(), end="")
        return
    text = README.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    README.write_text(text[:start] + current_help() + text[text.index(END, start) :], encoding="utf-8")


if __name__ == "__main__":
    main()
