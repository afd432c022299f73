"""The IPython extension: ``%load_ext mha_cli``, then ``%mha_explain`` with the command line's grammar.

``%mha_explain --shape 32,64,4 --axes 1`` is ``mha-explain --shape 32,64,4 --axes 1``, run in the
notebook's own process: the same commands, options, tables and one-line errors, printed in the
cell's output. A live layer or model is the Python API's (``mha_cli.explain(layer, x)``), whose
results render as HTML.
"""

from __future__ import annotations

import shlex
from typing import Any


def mha_explain_magic(line: str) -> int | None:
    """Run the command line ``line`` in this process; its exit code when it is not 0 (shown as Out)."""
    import typer

    from mha_cli.cli.app import app
    from mha_cli.cli.process import PROGRAM

    try:
        args = shlex.split(line)
    except ValueError as error:
        print(f"{PROGRAM}: error: {error}")
        return 2
    code = typer.main.get_command(app).main(
        args, prog_name=f"%{PROGRAM.replace('-', '_')}", standalone_mode=False
    )
    return None if not code else int(code)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mha_cli``: register ``%mha_explain``."""
    ipython.register_magic_function(mha_explain_magic, "line", "mha_explain")
