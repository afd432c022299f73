"""One backend's run for ``--backend all``: ``python -m mha_cli.cli.worker FOLDER``.

Reads the request (:func:`mha_cli.operations.backends.request`) on stdin,
explains it, and pickles the result into FOLDER for the parent process. Exit
codes as explain's: 0, 1 a check failed (the result says which), 2, 3.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from mha_cli.cli.process import leave, say_error
from mha_cli.core.errors import ConfigError, EnvironmentProblem, ExitCode
from mha_cli.operations.backends import RESULT_FILE, for_transfer, read_request
from mha_cli.operations.explain import explain

#: The command line run_on_backends starts for each backend.
COMMAND = (sys.executable, "-m", "mha_cli.cli.worker")


def work(folder: Path) -> int:
    config, backend, max_memory = read_request(sys.stdin.read())
    try:
        result = explain(config, backend, max_memory=max_memory)
    except ConfigError as error:
        say_error(str(error))
        return int(ExitCode.BAD_INPUT)
    except EnvironmentProblem as error:
        say_error(str(error))
        return int(ExitCode.ENVIRONMENT)
    with open(folder / RESULT_FILE, "wb") as stream:
        pickle.dump(for_transfer(result), stream)
    return int(ExitCode.CHECK_FAILED) if result.failed else 0


if __name__ == "__main__":
    leave(work(Path(sys.argv[1])))
