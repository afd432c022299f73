"""Writing test vectors: ``vectors.npz`` and ``manifest.json`` per configuration, and an index."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from mha_cli.core.errors import ConfigError
from mha_cli.core.files import write_atomically
from mha_cli.core.grammar import format_shape
from mha_cli.operations.vectors import FORMAT, FORMAT_VERSION, Skipped, VectorSet
from mha_cli.output.tables import titled_table

ARRAYS = "vectors.npz"
MANIFEST = "manifest.json"
INDEX = "index.json"


def prepared(option: str, directory: Path) -> Path:
    """The output directory, checked before the run: a file in its place is the user's mistake.

    Nothing is created here, so a run that fails leaves nothing behind; writing creates it.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(option, str(directory), "is a file; name a directory to write the test vectors in")
    return directory


def place(directory: Path, vectors: VectorSet) -> Path:
    """The directory one set goes in."""
    return directory / vectors.where if vectors.where else directory


def write_vectors(directory: Path, vectors: VectorSet) -> None:
    """Write one set under ``directory``, each file whole or not at all."""
    from mha_cli.runtime.arrays import npz_bytes

    target = place(directory, vectors)
    target.mkdir(parents=True, exist_ok=True)
    write_atomically(target / ARRAYS, npz_bytes(vectors.arrays))
    write_atomically(target / MANIFEST, json.dumps(vectors.manifest, indent=2) + "\n")


def write_index(directory: Path, written: Sequence[VectorSet], skipped: Sequence[Skipped]) -> None:
    """``index.json``: each set one check or scan wrote (id, relative directory), and each it could not."""
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sets": [{"id": vectors.manifest["source"]["id"], "directory": vectors.where} for vectors in written],
        "skipped": [{"id": entry.id, "reason": entry.reason} for entry in skipped],
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / INDEX, json.dumps(index, indent=2) + "\n")


def render_vectors(written: list[tuple[Path, VectorSet]], console: Console) -> None:
    """Where test vectors went; for one set, every array it holds."""
    if len(written) == 1:
        directory, vectors = written[0]
        manifest = vectors.manifest
        target = place(directory, vectors)
        console.print(Text(f"Test vectors in {target}/: vectors.npz, manifest.json", style="bold"))
        console.print(
            Text(
                f"Keras {manifest['keras_version']} on {manifest['backend']}, {manifest['dtype']}"
                + (
                    ""
                    if manifest["stored_dtype"] == manifest["dtype"]
                    else f" (stored as {manifest['stored_dtype']})"
                )
                + f"; call: {manifest['call']['text']}"
            )
        )
        table = titled_table("Arrays in vectors.npz", "name", "shape", "dtype", "role")
        for entry in manifest["arrays"]:
            table.add_row(
                Text(entry["name"]), format_shape(tuple(entry["shape"])), entry["dtype"], entry["role"]
            )
        console.print(table)
        console.print(Text(_verdicts(manifest)))
        return
    table = titled_table(
        "Test vectors (vectors.npz and manifest.json in each)", "directory", "arrays", "checks"
    )
    for directory, vectors in written:
        target = place(directory, vectors)
        manifest = vectors.manifest
        table.add_row(Text(f"{target}/"), str(len(manifest["arrays"])), _verdicts(manifest))
    console.print(table)


def _verdicts(manifest: dict[str, Any]) -> str:
    """``4 checks passed`` or which did not, from a manifest's checks."""
    failed = [check["name"] for check in manifest["checks"] if check["status"] == "failed"]
    if failed:
        return f"check failed: {', '.join(failed)}"
    passed = sum(check["status"] == "passed" for check in manifest["checks"])
    return f"{passed} checks passed"
