"""The same configuration on every installed Keras backend (``--backend all``).

Keras binds its backend at import, so each backend runs in its own process:
``python -m mha_cli.operations.backends`` reads a configuration on stdin, explains it
and writes the JSON document and the output and scores arrays. Inputs and
weights come from the seed's NumPy generator, not from a backend's random
ops, so every backend computes with identical numbers and their outputs can
be compared directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mha_cli.core.config import BACKENDS, MHAConfig
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY

if TYPE_CHECKING:  # numpy is imported where arrays are handled: --no-run and --help never need it
    import numpy as np

#: What each backend needs importable (Keras's numpy backend imports jax).
_NEEDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "jax"}


@dataclass(frozen=True)
class BackendRun:
    backend: str
    #: The explain document (None when the backend did not run).
    document: dict[str, Any] | None
    #: Why it did not run: not installed, or its one error line.
    problem: str | None = None
    #: Max |difference| of output and scores from the first backend that ran.
    output_diff: float | None = None
    scores_diff: float | None = None


def installed(backend: str) -> bool:
    return importlib.util.find_spec(_NEEDS[backend]) is not None


def run_on_backends(config: MHAConfig, *, max_memory: int = DEFAULT_MAX_MEMORY) -> list[BackendRun]:
    """Explain ``config`` on every installed backend, each in its own process, and compare them."""
    import numpy as np

    runs = []
    reference: dict[str, np.ndarray] | None = None
    for backend in BACKENDS:
        if not installed(backend):
            runs.append(BackendRun(backend, None, f"not installed (pip install {_NEEDS[backend]})"))
            continue
        with tempfile.TemporaryDirectory() as folder:
            request = {"config": dataclasses.asdict(config), "backend": backend, "max_memory": max_memory}
            done = subprocess.run(
                [sys.executable, "-m", "mha_cli.operations.backends", folder],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode not in (0, 1):  # 1: it ran, and a check failed (the document says which)
                lines = done.stderr.strip().splitlines()
                problem = lines[-1] if lines else f"exit {done.returncode}"
                runs.append(BackendRun(backend, None, problem.removeprefix("mha-explain: error: ")))
                continue
            document = json.loads(done.stdout)
            arrays = dict(np.load(Path(folder) / "arrays.npz")) if document["executed"] else None
        if arrays is None or reference is None:
            reference = reference or arrays
            runs.append(BackendRun(backend, document))
            continue
        runs.append(
            BackendRun(
                backend,
                document,
                output_diff=float(np.max(np.abs(arrays["output"] - reference["output"]))),
                scores_diff=float(np.max(np.abs(arrays["attention_scores"] - reference["attention_scores"]))),
            )
        )
    return runs


def _config_from(fields: dict[str, Any]) -> MHAConfig:
    """The MHAConfig that dataclasses.asdict() wrote as JSON (JSON turned its tuples into lists)."""
    restored: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return MHAConfig(**restored)


def _worker(folder: Path) -> int:
    """One backend's run: the request on stdin, the document on stdout, the arrays in ``folder``."""
    from mha_cli.cli.app import say_error
    from mha_cli.core.errors import ConfigError, EnvironmentProblem, ExitCode
    from mha_cli.operations.explain import explain
    from mha_cli.output import document

    request = json.loads(sys.stdin.read())
    try:
        result = explain(
            _config_from(request["config"]), request["backend"], max_memory=request["max_memory"]
        )
    except ConfigError as error:
        say_error(str(error))
        return int(ExitCode.BAD_INPUT)
    except EnvironmentProblem as error:
        say_error(str(error))
        return int(ExitCode.ENVIRONMENT)
    if result.executed and result.run is not None:
        import numpy as np

        arrays = result.run.arrays
        np.savez(folder / "arrays.npz", output=arrays["output"], attention_scores=arrays["attention_scores"])
    print(document.dumps(document.to_document(result)))
    return int(ExitCode.CHECK_FAILED) if result.failed else 0


if __name__ == "__main__":
    from mha_cli.cli.app import leave

    leave(_worker(Path(sys.argv[1])))
