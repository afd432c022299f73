"""Every Keras backend: each one alone, all of them compared, and a missing one (subprocesses).

Keras binds its backend at import, so these run the CLI in fresh processes.
CI installs jax and torch (.ci/run); where one is missing here, its tests skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mha_cli.operations.backends import installed

ROOT = Path(__file__).resolve().parent.parent
# Cross-attention, causal and a given mask: projections, masks and the fused path differ by backend.
CONFIG = ["--shape", "8,16", "--value-shape", "4,16", "--causal", "--mask-shape", "None,8,4"]


def run_cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}import sys\nfrom mha_cli.cli.app import main\n"
    code += f"sys.argv = ['mha-explain', *{list(args)!r}]\nmain()\n"
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_each_backend_runs_and_checks_out(backend: str) -> None:
    if not installed(backend):
        pytest.skip(f"the {backend} backend is not installed here (CI installs it)")
    done = run_cli(*CONFIG, "--backend", backend, "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    doc = json.loads(done.stdout)
    assert doc["backend"] == backend
    assert {name: check["status"] for name, check in doc["checks"].items()} == {
        "derivation": "passed",
        "numpy_reference": "passed",
        "keras_symbolic": "warning",  # Keras's symbolic scores shape for cross-attention
        "plain_call": "passed",
    }
    assert doc["shapes"]["attention_scores"] == [None, 2, 8, 4]


def test_all_backends_agree_on_identical_weights_and_inputs() -> None:
    done = run_cli(*CONFIG, "--backend", "all", "--json")
    assert done.returncode == 0, done.stderr
    backends = json.loads(done.stdout)["backends"]
    ran = {name: entry for name, entry in backends.items() if entry["document"] is not None}
    assert set(ran) == {name for name in ("tensorflow", "jax", "torch", "numpy") if installed(name)}
    for entry in backends.values():
        if entry["document"] is None:
            assert entry["problem"].startswith("not installed (pip install"), entry["problem"]
    shapes = {json.dumps(entry["document"]["shapes"]) for entry in ran.values()}
    assert len(shapes) == 1
    for name, entry in list(ran.items())[1:]:
        assert entry["output_max_abs_diff"] < 1e-4, name
        assert entry["attention_scores_max_abs_diff"] < 1e-4, name


@pytest.mark.parametrize(
    ("backend", "modules", "pip"),
    [("jax", ["jax"], "jax"), ("torch", ["torch"], "torch"), ("numpy", ["jax", "scipy"], "jax scipy")],
)
def test_a_missing_backend_exits_3_with_the_pip_command(backend: str, modules: list[str], pip: str) -> None:
    # Make the backend's modules unimportable in the child, whether or not they are installed.
    blocked = "".join(f"sys.modules[{module!r}] = None\n" for module in modules)
    done = run_cli("--shape", "8,16", "--backend", backend, prelude=f"import sys\n{blocked}")
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.strip().splitlines()
    named = re.match(rf"mha-explain: error: --backend {backend}: cannot import ([\w.]+) ", line)
    # A package or one of its modules; for numpy, whichever of the two Keras imports first.
    assert named is not None and named.group(1).split(".")[0] in modules, line
    assert line.endswith(f"pip install {pip}")
