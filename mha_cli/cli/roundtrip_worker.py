"""One target's round trip for ``targets --run``: ``python -m mha_cli.cli.roundtrip_worker TARGET``.

Reads the configuration (:func:`mha_cli.operations.backends.request`) on stdin, and prints the
round trip's verdict (runtime/roundtrip.py) as one JSON line on stdout.
"""

from __future__ import annotations

import json
import sys

from mha_cli.core.kinds import derive_any
from mha_cli.operations.backends import read_request
from mha_cli.runtime.roundtrip import round_trip

#: The command line operations.roundtrip starts for each target.
COMMAND = (sys.executable, "-m", "mha_cli.cli.roundtrip_worker")


def main() -> None:
    config, _, _ = read_request(sys.stdin.read())
    print(json.dumps(round_trip(derive_any(config), sys.argv[1], config.seed)))


if __name__ == "__main__":
    main()
