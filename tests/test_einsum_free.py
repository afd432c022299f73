"""vectors --reference: the layer without einsum (matmul, transpose, reshape), run as a porter runs it
(its own process, NumPy only) against the vectors of the real layer, on every kind of configuration."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

runner = CliRunner()

CONFIGURATIONS = {
    "sentence": ["--shape", "8,16"],
    "cross, three widths, output_shape, causal": [
        *("--shape", "8,16", "--value-shape", "5,12", "--key-shape", "5,10", "--num-heads", "3"),
        *("--key-dim", "4", "--value-dim", "5", "--output-shape", "3,2", "--causal"),
    ],
    "image over both axes, full mask": ["--shape", "6,5,4", "--axes", "1,2", "--mask-shape", "None,6,5,6,5"],
    "image over its width, a short mask": ["--shape", "6,5,4", "--axes", "2", "--mask-shape", "5,5"],
    "rank 5, axes 1 and 3 (not next to each other), no bias": [
        *("--shape", "4,3,5,6", "--axes", "1,3", "--num-heads", "2", "--no-bias"),
    ],
}


def _written(tmp_path: Path, args: list[str]) -> Path:
    out = tmp_path / "vectors"
    result = runner.invoke(app, ["vectors", *args, "--reference", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.keras
@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_the_reference_reproduces_the_real_layer(name: str, tmp_path: Path) -> None:
    out = _written(tmp_path, CONFIGURATIONS[name])
    done = subprocess.run(
        [sys.executable, "-I", str(out / "reference.py"), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["output", "attention_scores"]
    assert all("(tolerance 1e-04)" in line for line in lines)


@pytest.mark.keras
def test_a_changed_weight_fails_it(tmp_path: Path) -> None:
    """The script can fail: a kernel's heads swapped in the vectors makes it differ, exit 1."""
    out = _written(tmp_path, CONFIGURATIONS["sentence"])
    with np.load(out / "vectors.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    kernel = next(name for name in arrays if name.endswith("query/kernel"))
    arrays[kernel] = arrays[kernel][:, ::-1, :].copy()
    np.savez(out / "vectors.npz", **arrays)
    done = subprocess.run(
        [sys.executable, "-I", str(out / "reference.py"), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 1


def test_it_uses_no_einsum_and_nothing_but_numpy() -> None:
    source = (Path(__file__).resolve().parent.parent / "mha_cli" / "runtime" / "einsum_free.py").read_text()
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "json", "sys", "pathlib", "numpy"}
    calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "einsum" not in calls and "tensordot" not in calls


def test_what_it_does_not_cover_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "gqa"
    result = runner.invoke(
        app, ["vectors", "--layer", "gqa", "--shape", "8,16", "--reference", "--out", str(out)]
    )
    assert result.exit_code == 2 and "covers MultiHeadAttention, not GQA" in result.output
    assert not out.exists()
