"""``mha-explain vectors``: one configuration's test vectors, for people porting the layer."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mha_cli.cli.options import (
    DEFAULT_SCREEN,
    OUTPUT,
    BackendOption,
    DebugOption,
    MaxMemoryOption,
    Screen,
    layer_options,
    screen_options,
)
from mha_cli.cli.process import fail, guarded, saved, say_note
from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ExitCode
from mha_cli.core.gqa import GQAConfig

if TYPE_CHECKING:
    from mha_cli.operations.vectors import Skipped, VectorSet

#: --out, shared with check --vectors and scan --vectors.
VECTORS_HELP = (
    "Write test vectors to DIR: vectors.npz (inputs, mask, weights by Keras variable path, every "
    "intermediate, output, scores) and manifest.json (config, build shapes, call, equations, versions, "
    "what each array is)."
)


@screen_options
@layer_options(kinds=True)
def vectors_command(
    config: MHAConfig | GQAConfig | DenseConfig,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help=VECTORS_HELP, rich_help_panel=OUTPUT)],
    backend: BackendOption = "tensorflow",
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the manifest written, as JSON.", rich_help_panel=OUTPUT),
    ] = False,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            metavar="fdeep|c|hls4ml",
            help="Also write the vectors in a porter's own format (again for more): fdeep (frugally-deep's "
            "test data for batch item 0, fdeep_tests.json), c (inputs, mask, output, scores as C arrays, "
            "vectors.h) or hls4ml (its testbench's tb_input_features.dat and tb_output_predictions.dat). "
            "vectors.npz and manifest.json are always written.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference",
            help="Also write reference.py: the layer without einsum (matmul, transpose, reshape; attended "
            "axes folded), NumPy only; python reference.py DIR checks it against the vectors.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    screen: Screen = DEFAULT_SCREEN,
    debug: DebugOption = False,
) -> None:
    """Write test vectors of one configuration, from a verified real forward pass.

    Everything a re-implementation needs to compare against: the inputs, the
    mask, every weight, the projected query, key and value, the scores before
    and after the softmax, the attention output before the output projection,
    the output; and a manifest saying what each array is (docs/vectors.md).
    Exit codes: 0 written, 1 written but a check failed, 2 bad input, 3 environment.
    """
    if isinstance(config, DenseConfig):
        fail(
            ExitCode.BAD_INPUT,
            f"--layer {config.kind}: vectors writes MultiHeadAttention's and GroupQueryAttention's test "
            f"vectors, not yet {config.keras_class}'s; explain --layer {config.kind} --json has its shapes "
            "and checks",
        )
    unknown = [name for name in formats or () if name not in FORMATS]
    if unknown:
        fail(
            ExitCode.BAD_INPUT,
            f"--format {unknown[0]}: unknown format; choose fdeep, c or hls4ml (npz is always written)",
        )
    if "hls4ml" in (formats or ()) and isinstance(config, MHAConfig | GQAConfig) and config.mask_shape:
        fail(
            ExitCode.BAD_INPUT,
            "--format hls4ml: its testbench feeds the model's inputs alone and its MultiHeadAttention "
            "handler refuses masks (mha-explain targets --target hls4ml); drop --mask-shape",
        )
    if reference and isinstance(config, GQAConfig):
        fail(ExitCode.BAD_INPUT, "--reference: the einsum-free reference covers MultiHeadAttention, not GQA")
    if reference and config.use_gate:
        fail(
            ExitCode.BAD_INPUT,
            "--reference: the einsum-free reference covers MultiHeadAttention without --gate",
        )
    from mha_cli.operations.explain import explain
    from mha_cli.operations.vectors import explained_vectors
    from mha_cli.output.vectors import prepared, render_vectors, write_vectors

    directory = guarded(partial(prepared, "--out", out), debug)
    result = guarded(
        lambda: explain(
            config,
            backend,
            max_memory=max_memory,
            observe_path=True,
            graph=isinstance(config, MHAConfig),  # the serialized call node: MultiHeadAttention's only
            intermediates=True,
        ),
        debug,
    )
    vectors = guarded(lambda: explained_vectors(result, source={"command": "vectors"}), debug)
    guarded(partial(saved, "--out", directory, partial(write_vectors, directory, vectors)), debug)
    if reference:
        guarded(partial(saved, "--out", directory, partial(_write_reference, directory)), debug)
    for name in dict.fromkeys(formats or ()):
        written = partial(_write_format, directory, vectors, name, config.value_shape is not None)
        guarded(partial(saved, "--out", directory, written), debug)
    screen.answer(json_output, lambda: vectors.manifest, partial(render_vectors, [(directory, vectors)]))
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        fail(ExitCode.CHECK_FAILED, f"check failed: {names}; the vectors are written, with the verdicts")


#: --format: the porters' own formats, and the file each is written to.
FORMATS = {
    "fdeep": ("fdeep_tests.json",),
    "c": ("vectors.h",),
    "hls4ml": ("tb_input_features.dat", "tb_output_predictions.dat"),
}


def _write_format(directory: Path, vectors: Any, name: str, value_given: bool) -> None:
    """Batch item 0 (fdeep) or every input and output (c, hls4ml) in a porter's format, beside
    vectors.npz."""
    import json

    from mha_cli.runtime.arrays import c_header, fdeep_tests, hls4ml_dat

    arrays = vectors.arrays
    # The model's inputs, as a porter's test model takes them (and as targets --run builds it): the
    # query, the value when it is not the query, the key when the call gave one.
    inputs = [
        "query",
        *(["value"] if value_given else []),
        *(["key"] if vectors.manifest["call"]["key_given"] else []),
    ]
    if name == "hls4ml":
        features, predictions = FORMATS[name]
        (directory / features).write_text(hls4ml_dat(arrays, inputs), encoding="utf-8")
        (directory / predictions).write_text(hls4ml_dat(arrays, ["output"]), encoding="utf-8")
        return
    if name == "fdeep":
        text = json.dumps({"tests": [fdeep_tests(arrays, inputs)]}, indent=1) + "\n"
    else:
        names = [
            "query",
            "value",
            *(["key"] if vectors.manifest["call"]["key_given"] else []),
            *(["attention_mask"] if "attention_mask" in arrays else []),
            "output",
            "attention_scores",
        ]
        text = c_header(arrays, names, "MHA_EXPLAIN_VECTORS_H")
    (directory / FORMATS[name][0]).write_text(text, encoding="utf-8")


def _write_reference(directory: Path) -> None:
    """reference.py beside the vectors: runtime/einsum_free.py as it is, a script of its own (NumPy only)."""
    from importlib import resources

    script = (resources.files("mha_cli.runtime") / "einsum_free.py").read_text(encoding="utf-8")
    (directory / "reference.py").write_text(script, encoding="utf-8")


def write_sets(
    directory: Path,
    sets: Sequence[VectorSet],
    skipped: Sequence[Skipped],
    *,
    tables: Screen | None,
    debug: bool,
) -> None:
    """check --vectors and scan --vectors: every set, index.json, and what was left out (stderr)."""
    from mha_cli.output.vectors import render_vectors, write_index, write_vectors

    for vectors in sets:
        guarded(partial(saved, "--vectors", directory, partial(write_vectors, directory, vectors)), debug)
    guarded(partial(saved, "--vectors", directory, partial(write_index, directory, sets, skipped)), debug)
    for entry in skipped:
        say_note(f"--vectors: no test vectors for {entry.id}: {entry.reason}")
    if tables is not None:
        render_vectors([(directory, vectors) for vectors in sets], tables.console())
    else:
        say_note(f"--vectors: wrote {len(sets)} set(s) of test vectors under {directory}/ (see index.json)")
