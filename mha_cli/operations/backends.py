"""The same configuration on every installed Keras backend (``--backend all``).

Keras binds its backend at import, so each backend runs in its own process:
the CLI's worker (:mod:`mha_cli.cli.worker`, whose command line the caller
passes in) reads a configuration on stdin, explains it, and leaves the
:class:`ExplainResult` in a folder this process made for it. Inputs and
weights come from the seed's NumPy generator, not from a backend's random
ops, so every backend computes with identical numbers and their outputs can be
compared directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pickle
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mha_cli.core.config import BACKENDS, MHAConfig
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.kinds import KINDS, kind_of
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, ExplainResult

#: What each backend needs importable (Keras's numpy backend imports jax).
_NEEDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "jax"}
#: The file a worker leaves its result in, inside the folder it is given.
RESULT_FILE = "result.pickle"


@dataclass(frozen=True)
class BackendRun:
    backend: str
    #: What explain found on this backend (None when the backend did not run).
    result: ExplainResult | None
    #: Why it did not run: not installed, or its one error line.
    problem: str | None = None
    #: Max |difference| of output and scores from the first backend that ran.
    output_diff: float | None = None
    scores_diff: float | None = None


@dataclass(frozen=True)
class BackendsRun:
    """``--backend all``: one run per backend, in BACKENDS order."""

    runs: tuple[BackendRun, ...]

    @property
    def ran(self) -> tuple[BackendRun, ...]:
        return tuple(run for run in self.runs if run.result is not None)

    @property
    def failed(self) -> tuple[str, ...]:
        """The backends on which a check failed."""
        return tuple(run.backend for run in self.ran if run.result is not None and run.result.failed)


def installed(backend: str) -> bool:
    return importlib.util.find_spec(_NEEDS[backend]) is not None


def request(config: MHAConfig | GQAConfig, backend: str, max_memory: int) -> str:
    """What a worker reads on stdin."""
    return json.dumps(
        {
            "layer": kind_of(config).name,
            "config": dataclasses.asdict(config),
            "backend": backend,
            "max_memory": max_memory,
        }
    )


def read_request(text: str) -> tuple[MHAConfig | GQAConfig, str, int]:
    """The worker's side of :func:`request`. JSON turned the config's tuples into lists."""
    fields: dict[str, Any] = json.loads(text)
    restored: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in fields["config"].items()
    }
    config = KINDS[fields["layer"]].config_type(**restored)
    return config, fields["backend"], fields["max_memory"]


def for_transfer(result: ExplainResult) -> ExplainResult:
    """``result`` with only the arrays the comparison reads (inputs and weights stay behind)."""
    if result.run is None:
        return result
    arrays = result.run.arrays
    kept: dict[str, Any] = {name: arrays[name] for name in ("output", "attention_scores") if name in arrays}
    return dataclasses.replace(result, run=dataclasses.replace(result.run, arrays=kept))


def run_on_backends(
    config: MHAConfig | GQAConfig, worker: Sequence[str], *, max_memory: int = DEFAULT_MAX_MEMORY
) -> BackendsRun:
    """Explain ``config`` on every installed backend, each in a ``worker`` process, and compare them.

    ``worker`` is the command line of a process that takes a folder as its last
    argument: ``python -m mha_cli.cli.worker``.
    """
    runs = []
    reference: ExplainResult | None = None
    for backend in BACKENDS:
        if not installed(backend):
            runs.append(BackendRun(backend, None, f"not installed (pip install {_NEEDS[backend]})"))
            continue
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run(
                [*worker, folder],
                input=request(config, backend, max_memory),
                capture_output=True,
                text=True,
                check=False,
            )
            ran = (Path(folder) / RESULT_FILE).exists()  # exit 1 is also Python's, for a crash
            if done.returncode not in (0, 1) or not ran:  # 1: it ran, and a check failed (the result says)
                lines = done.stderr.strip().splitlines()
                problem = lines[-1] if lines else f"exit {done.returncode}"
                runs.append(BackendRun(backend, None, problem.removeprefix("mha-explain: error: ")))
                continue
            # Written by our own worker into a folder only this process knows: trusted.
            with open(Path(folder) / RESULT_FILE, "rb") as stream:
                result: ExplainResult = pickle.load(stream)
        if not result.executed or reference is None:
            reference = reference or (result if result.executed else None)
            runs.append(BackendRun(backend, result))
            continue
        from mha_cli.runtime.arrays import max_abs_diff

        assert result.run is not None and reference.run is not None
        ours, theirs = result.run.arrays, reference.run.arrays
        runs.append(
            BackendRun(
                backend,
                result,
                output_diff=max_abs_diff(ours["output"], theirs["output"]),
                scores_diff=max_abs_diff(ours["attention_scores"], theirs["attention_scores"]),
            )
        )
    return BackendsRun(tuple(runs))
