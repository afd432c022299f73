"""The JSON documents' shared pieces: the schema version, shapes and einsums, and what scripts read (--get).

Every command's document is written by its own module beside this one; they are one contract with
scripts (schema in docs/scripts.md). Change a key only by bumping SCHEMA_VERSION and saying so there.
"""

from __future__ import annotations

import json
from typing import Any

from mha_cli.core.derived import Einsum, Tensor
from mha_cli.core.errors import ConfigError

SCHEMA_VERSION = 1


def shape_list(tensor: Tensor) -> list[int | None]:
    return list(tensor.shape)


def einsum_document(einsum: Einsum) -> dict[str, Any]:
    return {
        "equation": einsum.equation,
        "operands": [
            {"name": t.name, "shape": shape_list(t), "labels": list(t.labels)} for t in einsum.operands
        ],
        "result": {
            "name": einsum.result.name,
            "shape": shape_list(einsum.result),
            "labels": list(einsum.result.labels),
        },
        "legend": {letter: {"axis": name, "size": size} for letter, name, size in einsum.legend},
        "flops_per_item": einsum.flops_per_item(),
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def line_form(document: dict[str, Any]) -> str:
    """A document on one line, for ``--jsonl``."""
    return json.dumps(document, separators=(",", ":"))


def line_value(value: Any) -> str:
    """A --get value on an --jsonl output line: its shell form, or compact JSON where that would
    take more than one line or hold a tab (a list of names, say)."""
    shown = shell_form(value)
    return json.dumps(value, separators=(",", ":")) if "\n" in shown or "\t" in shown else shown


#: The inputs, which ``shapes.query`` (as the Shapes table lists them) reads from ``inputs``.
INPUT_NAMES = ("query", "key", "value")


def precheck_path(preview: dict[str, Any], path: str) -> None:
    """ConfigError for a --get path that no answer can have, from a document of the same
    configuration without a forward pass: checked before the run, which may take seconds.

    What only a run fills in (checks, the observed path, the picture, the call convention) is
    checked down to its top-level key only.
    """
    parts = path.split(".")
    if parts[0] in _FILLED_BY_THE_RUN:
        get_path(preview, parts[0])
        return
    # Down to the end, or to a value the preview leaves null (a section the run fills: not a typo).
    for end in range(1, len(parts) + 1):
        if get_path(preview, ".".join(parts[:end])) is None:
            return


_FILLED_BY_THE_RUN = frozenset({"checks", "execution_path", "picture", "call_convention", "warnings"})


def get_path(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, e.g. ``shapes.attention_scores`` or ``axes.1.role``."""
    value: Any = document
    walked: list[str] = []
    parts = path.split(".")
    # The Shapes table lists the inputs beside the computed tensors; the document keeps them apart.
    if len(parts) > 1 and parts[0] == "shapes" and parts[1] in INPUT_NAMES and "inputs" in document:
        parts = ["inputs", *parts[1:]]
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and part.isascii() and int(part) < len(value):
            value = value[int(part)]
        else:
            here = ".".join(walked) or "the document"
            if isinstance(value, dict):
                choices = ", ".join(value)
            elif isinstance(value, list):
                choices = f"an index 0..{len(value) - 1}"
            else:
                choices = "nothing: it is a single value"
            raise ConfigError("--get", path, f"no {part!r} in {here}; it has {choices}")
        walked.append(part)
    return value


def shell_form(value: Any) -> str:
    """A value as ``$(...)`` wants it, never ambiguous (docs/scripts.md).

    null is ``None`` (as a shape's batch axis) and booleans ``true``/``false``; a
    list of numbers and nulls, a shape, is one line joined by commas
    (``None,64,2,32,32``); a list of strings is one item per line; a string is
    itself. Anything else, or strings holding a line break, is compact JSON.
    """
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(
        item is None or (isinstance(item, int | float) and not isinstance(item, bool)) for item in value
    ):
        return ",".join(shell_form(item) for item in value)
    if isinstance(value, list) and all(isinstance(item, str) and "\n" not in item for item in value):
        return "\n".join(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
