"""vectors --format: the porters' own formats, read back by readers written here from their formats
(frugally-deep's convert_model.py show_tensor/encode_floats; a C compiler for the header; hls4ml's
testbench loop for its .dat files)."""

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


def _written(tmp_path: Path, *formats: str, args: list[str] = ARGS) -> tuple[Path, dict[str, np.ndarray]]:
    out = tmp_path / "vectors"
    flags = [part for name in formats for part in ("--format", name)]
    result = runner.invoke(app, ["vectors", *args, *flags, "--out", str(out)])
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


#: hls4ml's testbench (templates/vivado/myproject_test.cpp, v1.3.0): a line of each file per test,
#: split on spaces with strtok, each value read with atof into a std::vector<float>; each model input
#: then copied from its offset in that line (nnet::copy_data). The same loop in C, printing what it read.
HLS4ML_READER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char iline[1 << 20], pline[1 << 20];
static float in[1 << 16], pr[1 << 16];
int main(int argc, char **argv) {
  FILE *fin = fopen(argv[1], "r"), *fpr = fopen(argv[2], "r");
  if (!fin || !fpr) return 2;
  while (fgets(iline, sizeof iline, fin) && fgets(pline, sizeof pline, fpr)) {
    size_t n_in = 0, n_pr = 0; /* std::getline drops the newline, fgets keeps it: skip it */
    for (char *current = strtok(iline, " "); current != NULL; current = strtok(NULL, " ")) {
      if (strcmp(current, "\n") != 0) in[n_in++] = (float)atof(current);
    }
    for (char *current = strtok(pline, " "); current != NULL; current = strtok(NULL, " ")) {
      if (strcmp(current, "\n") != 0) pr[n_pr++] = (float)atof(current);
    }
    printf("in");
    for (size_t i = 0; i < n_in; i++) printf(" %.9g", in[i]);
    printf("\npr");
    for (size_t i = 0; i < n_pr; i++) printf(" %.9g", pr[i]);
    printf("\n");
  }
  return 0;
}
"""


def test_hls4ml_testbench_data_reads_back_through_its_own_loop(tmp_path: Path) -> None:
    """A line per batch item; query, value and key flattened and concatenated, as the testbench copies
    each input from its offset; the output in tb_output_predictions.dat; bit for bit in float32."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler")
    unmasked = ARGS[: ARGS.index("--mask-shape")]
    out, arrays = _written(tmp_path, "hls4ml", args=[*unmasked, "--batch", "3"])
    program, binary = tmp_path / "tb.c", tmp_path / "tb"
    program.write_text(HLS4ML_READER)
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", str(program), "-o", str(binary)], check=True)
    files = [str(out / "tb_input_features.dat"), str(out / "tb_output_predictions.dat")]
    printed = subprocess.run([str(binary), *files], capture_output=True, text=True, check=True).stdout
    lines = printed.splitlines()
    assert len(lines) == 2 * 3  # three tests, one per batch item
    for item in range(3):
        read_in = np.array(lines[2 * item].split()[1:], dtype="float32")
        read_pr = np.array(lines[2 * item + 1].split()[1:], dtype="float32")
        offset = 0
        for name in ("query", "value", "key"):  # nnet::copy_data<float, T, offset, size>(in, name)
            expected = arrays[name][item].astype("float32").ravel()
            np.testing.assert_array_equal(read_in[offset : offset + expected.size], expected)
            offset += expected.size
        assert offset == read_in.size
        np.testing.assert_array_equal(read_pr, arrays["output"][item].astype("float32").ravel())
    # hls4ml's own writer ends every value with a space, and a line per test.
    first = (out / "tb_input_features.dat").read_text().splitlines()[0]
    assert first.endswith(" ") and not first.startswith(" ")


def test_self_attention_data_holds_the_one_input_its_model_takes(tmp_path: Path) -> None:
    """Model(x, mha(x, x)) has one input: frugally-deep's test and hls4ml's line hold the query alone."""
    out, arrays = _written(tmp_path, "fdeep", "hls4ml", args=["--shape", "5,4", "--num-heads", "2"])
    (test,) = json.loads((out / "fdeep_tests.json").read_text())["tests"]
    assert [entry["shape"] for entry in test["inputs"]] == [[5, 4]]
    lines = (out / "tb_input_features.dat").read_text().splitlines()
    assert [len(line.split()) for line in lines] == [5 * 4] * len(arrays["query"])
    np.testing.assert_array_equal(
        np.array(lines[0].split(), dtype="float32"), arrays["query"][0].astype("float32").ravel()
    )


def test_hls4ml_data_with_a_mask_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "masked"
    result = runner.invoke(app, ["vectors", *ARGS, "--format", "hls4ml", "--out", str(out)])
    assert (
        result.exit_code == 2
        and "--format hls4ml: its testbench feeds the model's inputs alone" in result.output
    )
    assert not out.exists()


def test_an_unknown_format_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "none"
    result = runner.invoke(app, ["vectors", *ARGS, "--format", "tflite", "--out", str(out)])
    assert (
        result.exit_code == 2
        and "--format tflite: unknown format; choose fdeep, c or hls4ml" in result.output
    )
    assert not out.exists()
