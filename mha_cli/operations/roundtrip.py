"""``targets --run``: each installable target converts the layer for real, in a process of its own.

ONNX (Keras's export through tf2onnx, run by ONNX Runtime) and LiteRT float (TensorFlow's TFLite
converter and interpreter) take the layer of the configuration, run it on the inputs Keras ran, and
their output is held against Keras's with the dtype's tolerance. A converter that fails says so in
its own words; one that does not answer within the timeout is stopped; one not installed says how to
install it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mha_cli.core.config import MHAConfig
from mha_cli.core.gqa import GQAConfig
from mha_cli.operations.backends import request
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY, TOLERANCE

#: The targets a round trip can run here.
RUNNABLE = ("tf2onnx", "litert-float")


@dataclass(frozen=True)
class RoundTrip:
    target: str
    #: "passed", "differs" (above the tolerance), "failed" (the converter or runtime refused),
    #: "timed out", "not installed", or "not run" (Keras itself could not run the layer so).
    status: str
    detail: str
    tolerance: float
    max_abs_diff: float | None = None

    @property
    def failed(self) -> bool:
        """What --run turns into exit 1: the target ran and differs, or refused, or hung."""
        return self.status in ("differs", "failed", "timed out")


def round_trips(
    config: MHAConfig | GQAConfig,
    targets: Sequence[str],
    worker: Sequence[str],
    *,
    timeout: float = 300.0,
    given: Mapping[str, Any] | None = None,
) -> tuple[RoundTrip, ...]:
    """Each of ``targets`` (those in RUNNABLE) converts and runs the layer, one process each; with
    ``given``, a model's call's inputs and weights (runtime/roundtrip.py), passed in an .npz file."""
    with tempfile.TemporaryDirectory(prefix="mha-explain-roundtrip-") as folder:
        extra: list[str] = []
        if given is not None:
            from mha_cli.runtime.roundtrip import save_given

            path = Path(folder) / "call.npz"
            save_given(path, given)
            extra = [str(path)]
        return _round_trips(config, targets, worker, timeout, extra)


def _round_trips(
    config: MHAConfig | GQAConfig,
    targets: Sequence[str],
    worker: Sequence[str],
    timeout: float,
    extra: list[str],
) -> tuple[RoundTrip, ...]:
    tolerance = TOLERANCE[config.dtype]
    text = request(config, "tensorflow", DEFAULT_MAX_MEMORY)
    found = []
    for target in targets:
        try:
            done = subprocess.run(
                [*worker, target, *extra],
                input=text,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            found.append(RoundTrip(target, "timed out", f"no answer in {timeout:g} s; stopped", tolerance))
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            found.append(
                RoundTrip(target, "failed", f"the round trip's process failed: {last[:300]}", tolerance)
            )
            continue
        answer = json.loads(lines[-1])
        if answer["status"] != "ran":
            found.append(RoundTrip(target, answer["status"], answer["detail"], tolerance))
            continue
        difference = float(answer["max_abs_diff"])
        status = "passed" if difference <= tolerance else "differs"
        detail = f"max |diff| {difference:.1e} from Keras (tolerance {tolerance:.0e} for {config.dtype})"
        found.append(RoundTrip(target, status, detail, tolerance, difference))
    return tuple(found)
