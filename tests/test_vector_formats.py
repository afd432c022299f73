"""vectors --format: the porters' own formats, read back by readers written here from their formats
(frugally-deep's convert_model.py show_tensor/encode_floats; a C compiler for the header)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

pytestmark = pytest.mark.keras
runner = CliRunner()
ARGS = [
    "--shape",
    "5,4",
    "--value-shape",
    "6,4",
    "--key-shape",
    "6,4",
    "--num-heads",
    "2",
    "--mask-shape",
    "None,5,6",
]


def _written(tmp_path: Path, *formats: str) -> tuple[Path, dict[str, np.ndarray]]:
    out = tmp_path / "vectors"
    flags = [part for name in formats for part in ("--format", name)]
    result = runner.invoke(app, ["vectors", *ARGS, *flags, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out / "vectors.npz") as stored:
        return out, {name: stored[name] for name in stored.files}


def _fdeep_tensor(entry: dict[str, object]) -> np.ndarray:
    """frugally-deep's show_tensor read back: base64 chunks of float32 bytes, one item, its shape."""
    values = "".join(entry["values"])  # type: ignore[arg-type]
    flat = np.frombuffer(base64.b64decode(values), dtype="<f4")
    return flat.reshape(entry["shape"])  # type: ignore[arg-type]


def test_frugally_deep_test_data_reads_back_as_batch_item_0(tmp_path: Path) -> None:
    out, arrays = _written(tmp_path, "fdeep")
    document = json.loads((out / "fdeep_tests.json").read_text())
    (test,) = document["tests"]
    # frugally-deep's MultiHeadAttention takes 2 or 3 inputs: query, value, key, in the call's order.
    assert [entry["shape"] for entry in test["inputs"]] == [[5, 4], [6, 4], [6, 4]]
    for entry, name in zip(test["inputs"], ("query", "value", "key"), strict=True):
        np.testing.assert_array_equal(_fdeep_tensor(entry), arrays[name][0].astype("float32"))
    (output,) = test["outputs"]
    np.testing.assert_array_equal(_fdeep_tensor(output), arrays["output"][0].astype("float32"))
    assert all(len(chunk) <= 1024 for entry in test["inputs"] for chunk in entry["values"])


def test_the_c_header_compiles_and_holds_the_arrays(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler")
    out, arrays = _written(tmp_path, "c")
    program = tmp_path / "read.c"
    program.write_text(
        '#include <stdio.h>\n#include "vectors.h"\n'
        "static void dump(const char *name, const float *v, size_t n, const size_t *shape, size_t rank) {\n"
        '  printf("%s", name);\n'
        '  for (size_t i = 0; i < rank; i++) {\n    printf(" %zu", shape[i]);\n  }\n'
        '  printf(" |");\n'
        '  for (size_t i = 0; i < n; i++) {\n    printf(" %.9g", v[i]);\n  }\n'
        '  printf("\\n");\n}\n'
        "int main(void) {\n"
        + "".join(
            f'  dump("{name}", {name}, {name}_size, {name}_shape, {name}_rank);\n'
            for name in ("query", "value", "key", "attention_mask", "output", "attention_scores")
        )
        + "  return 0; }\n"
    )
    binary = tmp_path / "read"
    subprocess.run(
        [compiler, "-std=c99", "-Wall", "-Werror", "-I", str(out), str(program), "-o", str(binary)],
        check=True,
    )
    printed = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.splitlines()
    for line in printed:
        head, values = line.split(" |")
        name, *shape = head.split()
        expected = arrays[name].astype("float32")
        assert tuple(int(size) for size in shape) == expected.shape
        np.testing.assert_array_equal(np.array(values.split(), dtype="float32"), expected.ravel())


def test_an_unknown_format_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "none"
    result = runner.invoke(app, ["vectors", *ARGS, "--format", "hls4ml", "--out", str(out)])
    assert result.exit_code == 2 and "--format hls4ml: unknown format; choose fdeep or c" in result.output
    assert not out.exists()
