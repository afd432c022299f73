"""``python -m mha_cli`` and the ``mha-explain`` console script.

A Ctrl-C while the CLI's own modules import is answered like any other: one
line and exit 130 (the CLI handles every later one).
"""

import sys


def main() -> None:
    try:
        from mha_cli.cli.app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("mha-explain: interrupted\n")
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
