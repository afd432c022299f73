"""One target's round trip for ``targets --run``: ``python -m mha_cli.cli.roundtrip_worker TARGET [NPZ]``.

Reads the configuration (:func:`mha_cli.operations.backends.request`) on stdin, and prints the
round trip's verdict (runtime/roundtrip.py) as one JSON line on stdout. NPZ: a model's call's inputs
and weights (``scan --targets --run``), written by operations/roundtrip.py (no pickles are read).
"""

from __future__ import annotations

import json
import sys

from mha_cli.core.kinds import derive_any
from mha_cli.operations.backends import read_request
from mha_cli.runtime.roundtrip import load_given, round_trip

#: The command line operations.roundtrip starts for each target.
COMMAND = (sys.executable, "-m", "mha_cli.cli.roundtrip_worker")


def main() -> None:
    config, _, _ = read_request(sys.stdin.read())
    given = load_given(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(round_trip(derive_any(config), sys.argv[1], config.seed, given)))


if __name__ == "__main__":
    main()
