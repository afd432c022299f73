"""Case files: named MultiHeadAttention configurations and their expected shapes.

A case file is TOML or JSON (``*.mha.toml``, ``*.mha.json``) with an optional
``[defaults]`` table, ``[[case]]`` entries using the layer's argument names, an
optional ``expect`` block per case and a ``[recorded]`` table saying which Keras
produced the expectations. The README documents the format.

Pure: the standard library and the shape algebra only. Every problem is a
:class:`CaseFileError` pointing at ``file:line`` and the case.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mha_cli.core.config import KERAS_MAJORS, MHAConfig
from mha_cli.core.derived import Derived
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import MAX_SIZE, format_shape
from mha_cli.core.kinds import KINDS, derive_any
from mha_cli.core.models import ModelSpec, model_spec, parse_input

#: File names that directories are searched for, and that the pytest plugin collects.
CASE_FILE_SUFFIXES = (".mha.toml", ".mha.json")

#: The knobs a case (or [defaults]) may set, with what each must hold.
KNOBS: dict[str, str] = {
    "shape": "shape",
    "value_shape": "shape",
    "key_shape": "shape",
    "num_heads": "int",
    "key_dim": "int",
    "value_dim": "int",
    "output_shape": "int or shape",
    "axes": "axes",
    "attention_axes": "axes",
    "use_bias": "bool",
    "use_gate": "bool",
    "dropout": "number",
    "dtype": "str",
    "batch": "int",
    "seed": "int",
    "axis_names": "names",
    "mask_shape": "mask shape",
    "causal": "bool",
    "sliding_window": "int",
    "keras": "int",
    # The layer kind (mha_cli.core.kinds), and what only GroupQueryAttention has.
    "layer": "str",
    "num_query_heads": "int",
    "num_key_value_heads": "int",
    "head_dim": "int",
}
CASE_KEYS = ("name", *KNOBS, "expect")
TOP_LEVEL_KEYS = ("defaults", "case", "model", "calls", "recorded")
#: A ``[model]`` table: the model a file pins, instead of configurations.
MODEL_KEYS = ("path", "build", "inputs", "custom_objects", "seed", "batch", "keras")
#: What ``record`` pins for each call of a model (``[calls."layer/path"]``), shapes without batch.
CALL_FIELDS = (
    "class",
    "num_heads",
    "key_dim",
    "value_dim",
    "output_shape",
    "attention_axes",
    "use_bias",
    "use_gate",
    "dtype",
    "query",
    "value",
    "key",
    "attention_scores",
    "output",
    "params",
    # A GroupQueryAttention call's own arguments, in place of num_heads .. attention_axes; also the
    # heads read from the kernels of a call scan does not explain (KerasHub's LlamaAttention).
    "num_query_heads",
    "num_key_value_heads",
    "head_dim",
    # false: a call scan lists and does not explain; only its class, heads, shapes and params are pinned.
    "explained",
)
RECORDED_KEYS = ("keras_version", "backend", "tool_version")

#: Shapes an ``expect`` block may pin (the JSON document's ``shapes`` names), batch axis left out.
SHAPE_FIELDS = (
    "output",
    "attention_scores",
    "query_projected",
    "key_projected",
    "value_projected",
    "key_repeated",  # GroupQueryAttention's key and value after the repeat
    "value_repeated",
    "gate",
    "attention_output",
)
EXPECT_FIELDS = (*SHAPE_FIELDS, "params", "equations")
EQUATION_NAMES = ("query", "key", "value", "gate", "dot_product", "combine", "output")

_HOW_TO_WRITE = {
    "shape": "a list of positive sizes without the batch axis, e.g. [32, 64, 4]",
    "int": "an integer",
    "int or shape": "an integer or a list of sizes, e.g. 4 or [3, 2]",
    "axes": 'an axis, a list of axes such as [1, 2], or "none"',
    "bool": "true or false",
    "number": "a number",
    "str": "a string",
    "names": 'a list of names, e.g. ["height", "width"]',
    "mask shape": 'an attention_mask shape, batch included, e.g. ["None", 10, 10] or [10, 10]',
}


class CaseFileError(ValueError):
    """A problem in a case file, at ``path:line`` and, where known, in one case."""

    def __init__(self, path: Path, line: int, case: str | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.case = case
        self.problem = problem
        where = f"{path}:{line}: " + ("" if case is None else f"case {case!r}: ")
        super().__init__(where + problem)


@dataclass(frozen=True)
class Recorded:
    """Which mha-explain, Keras and backend produced a file's expectations."""

    keras_version: str
    backend: str
    tool_version: str


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    line: int
    #: Position among the file's cases (what record writes back to).
    index: int
    config: MHAConfig | GQAConfig
    #: The ``expect`` block as written (shapes as lists), or None when there is none.
    expect: Mapping[str, Any] | None
    #: Lines of this case's keys (its own or from [defaults]) and ``expect.*`` fields.
    lines: Mapping[str, int]

    @property
    def id(self) -> str:
        return f"{self.path}::{self.name}"

    def problem(self, key: str | None, problem: str) -> CaseFileError:
        return CaseFileError(self.path, self.lines.get(key or "", self.line), self.name, problem)

    def config_problem(self, error: ConfigError) -> CaseFileError:
        """A ConfigError (named by CLI option) as a problem at this case's key."""
        return self.problem(*at_key(error, "attention_axes" if "attention_axes" in self.lines else "axes"))


@dataclass(frozen=True)
class PinnedCall:
    """One call of a model's attention layer, as ``record`` pinned it."""

    #: The layer's path, with ``#N`` for a shared layer's later calls.
    key: str
    line: int
    expect: Mapping[str, Any]
    #: The line of each pinned field.
    lines: Mapping[str, int]


@dataclass(frozen=True)
class ModelCase:
    """A case file's ``[model]``: the model is the source of truth, re-scanned on every check."""

    spec: ModelSpec
    line: int
    #: The ``[calls]`` tables, in file order; None when the file has none yet (never recorded).
    pinned: tuple[PinnedCall, ...] | None


@dataclass(frozen=True)
class CaseFile:
    path: Path
    format: str  # "toml" or "json"
    cases: tuple[Case, ...]
    #: Cases that could not be read, each pointing at its line; the others still run.
    problems: tuple[CaseFileError, ...]
    recorded: Recorded | None
    #: The model the file pins, for a file with ``[model]`` (it has no cases then).
    model: ModelCase | None = None


@dataclass(frozen=True)
class Mismatch:
    """One expected value that the real layer does not give."""

    field: str
    expected: Any
    actual: Any


# --- Finding and reading files -------------------------------------------------


def find_case_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and every ``*.mha.toml`` / ``*.mha.json`` under given directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(CASE_FILE_SUFFIXES))
            )
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def file_format(path: Path) -> str:
    if path.suffix == ".json":
        return "json"
    if path.suffix == ".toml":
        return "toml"
    raise CaseFileError(path, 1, None, "a case file ends in .toml or .json (e.g. attention.mha.toml)")


def load(path: Path) -> CaseFile:
    """Read and validate one case file; raises CaseFileError when it cannot be read at all."""
    missing = CaseFileError(path, 1, None, "no such file or directory")
    if not path.exists():  # before the suffix: a mistyped path is missing, whatever its name
        raise missing
    fmt = file_format(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise missing from None
    except (OSError, UnicodeDecodeError) as error:
        raise CaseFileError(path, 1, None, f"cannot read it: {error}") from None
    return parse(path, text, fmt)


def parse(path: Path, text: str, fmt: str) -> CaseFile:
    data, lines = _parse_toml(path, text) if fmt == "toml" else _parse_json(path, text)
    if not isinstance(data, dict):
        raise CaseFileError(path, 1, None, "the top level must be a table (object) with [[case]] entries")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise CaseFileError(path, lines.at(key), None, unknown_name("top-level key", key, TOP_LEVEL_KEYS))
    recorded = _recorded(path, data.get("recorded"), lines)
    if "model" in data or "calls" in data:
        return CaseFile(path, fmt, (), (), recorded, _model_case(path, data, lines))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise CaseFileError(path, lines.at("defaults"), None, "[defaults] must be a table")
    for key in defaults:
        if key not in KNOBS:
            problem = (
                f"{key!r} cannot have a default; set it in each case"
                if key in CASE_KEYS
                else unknown_name("key in [defaults]", key, tuple(KNOBS))
            )
            raise CaseFileError(path, lines.at("defaults", key), None, problem)
    entries = data.get("case", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise CaseFileError(path, lines.at("case"), None, "cases are [[case]] tables (a list of objects)")
    if not entries:
        raise CaseFileError(
            path, 1, None, "no cases; add [[case]] tables with a name and a shape, or a [model] table"
        )
    cases: list[Case] = []
    problems: list[CaseFileError] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        try:
            case = _case(path, index, entry, defaults, lines)
        except CaseFileError as error:
            problems.append(error)
            continue
        if case.name in names:
            problems.append(
                case.problem(
                    "name", f"the name is used twice (first at line {names[case.name]}); names are ids"
                )
            )
            continue
        names[case.name] = case.lines["name"]
        cases.append(case)
    return CaseFile(path, fmt, tuple(cases), tuple(problems), recorded)


def unknown_name(what: str, key: str, known: Sequence[str]) -> str:
    """``unknown key 'heads'; did you mean 'num_heads'?``, or the known names."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown {what} {key!r}; did you mean {close[0]!r}?"
    return f"unknown {what} {key!r}; known: {', '.join(known)}"


def _recorded(path: Path, table: object, lines: _Lines) -> Recorded | None:
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) != set(RECORDED_KEYS):
        raise CaseFileError(
            path,
            lines.at("recorded"),
            None,
            f"[recorded] is written by mha-explain record and holds {', '.join(RECORDED_KEYS)}",
        )
    if not all(isinstance(value, str) for value in table.values()):
        raise CaseFileError(path, lines.at("recorded"), None, "[recorded] values are strings")
    return Recorded(**table)


# --- A model ---------------------------------------------------------------------


def _model_case(path: Path, data: dict[str, Any], lines: _Lines) -> ModelCase:
    """``[model]`` and its ``[calls]``; such a file holds no ``[[case]]`` and no ``[defaults]``."""
    for key in ("case", "defaults"):
        if key in data:
            raise CaseFileError(
                path, lines.at(key), None, "a file pins a [model] or holds [[case]] tables, not both"
            )
    table = data.get("model")
    line = lines.at("model")
    if not isinstance(table, dict):
        raise CaseFileError(path, line, None, '[model] is a table with path = "model.keras" or build')
    for key in table:
        if key not in MODEL_KEYS:
            raise CaseFileError(
                path, lines.at("model", key), None, unknown_name("key in [model]", key, MODEL_KEYS)
            )

    def problem(key: str, text: str) -> CaseFileError:
        return CaseFileError(path, lines.at("model", key), None, f"model.{key}: {text}")

    for key in ("path", "build"):
        if key in table and not isinstance(table[key], str):
            raise problem(key, "a string")
    listed = {}
    for key in ("inputs", "custom_objects"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise problem(
                key, 'a list of strings, e.g. ["tokens=128:int32"]' if key == "inputs" else '["my_layers"]'
            )
        listed[key] = value
    numbers = {}
    for key, least in (("seed", 0), ("batch", 1)):
        value = table.get(key, 0 if key == "seed" else 2)
        if not _is_int(value) or value < least:
            raise problem(key, f"an integer >= {least}")
        numbers[key] = value
    keras = table.get("keras", 3)
    if not _is_int(keras) or keras not in KERAS_MAJORS:
        raise problem("keras", "3 (the keras package) or 2 (tf_keras, for a Keras 2 model file)")
    # A model file is found beside the case file, wherever check runs from.
    model_path = None if "path" not in table else path.parent / table["path"]
    try:
        inputs = tuple(parse_input("inputs", item) for item in listed["inputs"])
        spec = model_spec(
            model_path,
            table.get("build"),
            custom_objects=tuple(listed["custom_objects"]),
            inputs=inputs,
            batch=numbers["batch"],
            seed=numbers["seed"],
            option="[model]",
            keras=keras,
        )
    except ConfigError as error:
        key = _MODEL_KEY_OF_OPTION.get(error.option, "path")
        raise problem(
            key, error.problem if error.value is None else f"{error.value}: {error.problem}"
        ) from None
    calls = data.get("calls")
    if calls is None:
        return ModelCase(spec, line, None)
    if not isinstance(calls, dict) or not all(isinstance(entry, dict) for entry in calls.values()):
        raise CaseFileError(
            path, lines.at("calls"), None, '[calls."layer/path"] tables, one per call, as record writes them'
        )
    pinned = []
    for key, expect in calls.items():
        for field, value in expect.items():
            if field not in CALL_FIELDS:
                raise CaseFileError(
                    path, lines.at("calls", key, field), key, unknown_name("field", field, CALL_FIELDS)
                )
            if field in ("query", "value", "key", "attention_scores", "output") and not _is_shape(value):
                raise CaseFileError(
                    path, lines.at("calls", key, field), key, f"{field}: {_HOW_TO_WRITE['shape']}"
                )
        field_lines = {field: lines.at("calls", key, field) for field in expect}
        pinned.append(PinnedCall(key, lines.at("calls", key), expect, field_lines))
    return ModelCase(spec, line, tuple(pinned))


def _is_shape(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(size) and size >= 0 for size in value)


# --- One case ------------------------------------------------------------------


def _case(path: Path, index: int, entry: dict[str, Any], defaults: dict[str, Any], lines: _Lines) -> Case:
    name = entry.get("name")
    line = lines.at("case", index)
    key_lines = {key: lines.at("case", index, key) for key in entry}
    expect = entry.get("expect")
    if isinstance(expect, dict):
        key_lines.update({f"expect.{key}": lines.at("case", index, "expect", key) for key in expect})
    shown = name if isinstance(name, str) and name else f"#{index + 1}"
    for key in entry:
        if key not in CASE_KEYS:
            raise CaseFileError(path, key_lines[key], shown, unknown_name("key", key, CASE_KEYS))
    if not isinstance(name, str) or not name.strip():
        raise CaseFileError(path, line, shown, 'every case needs a name, e.g. name = "image-height-only"')
    if "axes" in entry and "attention_axes" in entry:
        raise CaseFileError(path, key_lines["attention_axes"], name, "give axes or attention_axes, not both")
    merged = {**defaults, **entry}
    if "axes" in entry and "attention_axes" in defaults:
        del merged["attention_axes"]
    if "attention_axes" in entry and "axes" in defaults:
        del merged["axes"]
    if "shape" not in merged:
        raise CaseFileError(
            path, line, name, "no shape; give the query shape without the batch axis, e.g. [10, 16]"
        )

    # Where each knob was set: in the case, or in [defaults].
    for key in merged:
        if key not in entry:
            key_lines[key] = lines.at("defaults", key)
    key_lines[""] = line
    try:
        config = config_from(merged)
    except KeyProblem as error:
        raise CaseFileError(path, key_lines[error.key], name, str(error)) from None
    case = Case(name, path, line, index, config, expect, key_lines)
    try:
        derive_any(config)
    except ConfigError as error:
        raise case.config_problem(error) from None
    if expect is not None:
        _check_expect(path, name, expect, key_lines, line)
    return case


class KeyProblem(ValueError):
    """A value of one key in a configuration's mapping that is not what the key holds."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}")


def config_from(knobs: Mapping[str, Any]) -> MHAConfig | GQAConfig:
    """The configuration a mapping of knobs states: a case merged with [defaults], or an --jsonl line.

    ``knobs`` holds only keys of :data:`KNOBS` (the caller says what an unknown
    key is) and must have ``shape``. Raises KeyProblem for a value of the wrong
    kind; whether the configuration is valid is the derivation's business.
    """
    values: dict[str, Any] = {}
    for key, kind in KNOBS.items():
        if key in knobs:
            try:
                values[key] = _value(kind, knobs[key])
            except ValueError as error:
                raise KeyProblem(key, str(error)) from None
    layer = values.get("layer", "mha")
    if layer not in KINDS:
        raise KeyProblem("layer", f"{layer!r}: unknown layer kind; choose one of {', '.join(KINDS)}")
    for other in KINDS.values():
        # "attention_axes" is MultiHeadAttention's "axes" by its other name.
        names = {*other.own_arguments, *(("attention_axes",) if "axes" in other.own_arguments else ())}
        own = [key for key in knobs if key in names]
        if other.name != layer and own:
            problem = f'layer = "{layer}" has no such argument; leave it out, or set layer = "{other.name}"'
            raise KeyProblem(own[0], problem)
    if layer == "gqa":
        return GQAConfig(
            query_shape=values["shape"],
            value_shape=values.get("value_shape"),
            key_shape=values.get("key_shape"),
            head_dim=values.get("head_dim"),
            num_query_heads=values.get("num_query_heads"),
            num_key_value_heads=values.get("num_key_value_heads"),
            use_bias=values.get("use_bias", True),
            use_gate=values.get("use_gate", False),
            dropout=values.get("dropout", 0.0),
            dtype=values.get("dtype", "float32"),
            batch=values.get("batch", 2),
            seed=values.get("seed", 0),
            mask_shape=values.get("mask_shape"),
            causal=values.get("causal", False),
            sliding_window=values.get("sliding_window"),
            keras=values.get("keras", 3),
        )
    axes_key = "attention_axes" if "attention_axes" in knobs else "axes"
    return MHAConfig(
        query_shape=values["shape"],
        value_shape=values.get("value_shape"),
        key_shape=values.get("key_shape"),
        num_heads=values.get("num_heads"),
        key_dim=values.get("key_dim"),
        value_dim=values.get("value_dim"),
        output_shape=values.get("output_shape"),
        attention_axes=values.get(axes_key),
        use_bias=values.get("use_bias", True),
        use_gate=values.get("use_gate", False),
        dropout=values.get("dropout", 0.0),
        dtype=values.get("dtype", "float32"),
        batch=values.get("batch", 2),
        seed=values.get("seed", 0),
        axis_names=values.get("axis_names"),
        mask_shape=values.get("mask_shape"),
        causal=values.get("causal", False),
        sliding_window=values.get("sliding_window"),
        keras=values.get("keras", 3),
    )


#: The [model] table's key for each option a model's ConfigError names (anything else: its path).
_MODEL_KEY_OF_OPTION = {
    "--build": "build",
    "inputs": "inputs",
    "--input": "inputs",
    "--custom-objects": "custom_objects",
}


def model_problem(error: ConfigError) -> str:
    """A model's ConfigError as a case file says it: named by its [model] key (``inputs: ...``)."""
    key = _MODEL_KEY_OF_OPTION.get(error.option)
    if key is None:
        return str(error)
    return f"{key}: {error.problem}" if error.value is None else f"{key} {error.value}: {error.problem}"


def at_key(error: ConfigError, axes_key: str = "axes") -> tuple[str | None, str]:
    """A ConfigError, named by CLI option, as (its case-file key, the problem at it: ``num_heads 0: ...``).

    The real layer's own refusal (option ``keras``, no dashes) names no key:
    it is not about the ``keras`` knob that ``--keras`` sets.
    """
    if not error.option.startswith("--"):
        return None, error.problem
    key = key_of_option(error.option, axes_key)
    value = "" if error.value is None else f" {error.value}"
    return key, f"{key}{value}: {error.problem}"


def key_of_option(option: str, axes_key: str = "axes") -> str:
    """The case-file key for a CLI option named in a ConfigError (``--num-heads`` -> ``num_heads``)."""
    if option == "--axes":
        return axes_key
    if option == "--gate":
        return "use_gate"
    return option.removeprefix("--").replace("-", "_")


def _value(kind: str, value: object) -> Any:
    if kind == "shape" or (kind == "int or shape" and isinstance(value, list)):
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected {_HOW_TO_WRITE['shape']}, got {value!r}")
        return tuple(_size(item) for item in value)
    if kind == "int or shape":  # output_shape = 5 is Keras's output_shape=5: one axis of 5
        return (_size(value),)
    if kind == "int":
        return _integer(value)
    if kind == "mask shape":
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected {_HOW_TO_WRITE[kind]}, got {value!r}")
        batch = value[0]
        if batch is None or (isinstance(batch, str) and batch.lower() == "none"):
            return (None, *(_size(item) for item in value[1:]))
        return tuple(_size(item) for item in value)
    if kind == "axes":
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):  # JSON null too
            return None
        items = value if isinstance(value, list) else [value]
        if not items or not all(_is_int(item) for item in items):
            raise ValueError(f"expected {_HOW_TO_WRITE['axes']}, got {value!r}")
        return tuple(items)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected {_HOW_TO_WRITE['bool']}, got {value!r}")
        return value
    if kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"expected {_HOW_TO_WRITE['number']}, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected {_HOW_TO_WRITE['str']}, got {value!r}")
        return value
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected {_HOW_TO_WRITE['names']}, got {value!r}")
    return tuple(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: object) -> int:
    if not _is_int(value):
        raise ValueError(f"expected {_HOW_TO_WRITE['int']}, got {value!r}")
    assert isinstance(value, int)
    if abs(value) > MAX_SIZE:
        raise ValueError(f"{value} is too large; sizes are at most {MAX_SIZE}")
    return value


def _size(value: object) -> int:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        raise ValueError("leave out the batch axis (None): shapes here are without it, like --shape")
    size = _integer(value)
    if size < 1:
        raise ValueError(f"size {size} is not positive")
    return size


def _check_expect(path: Path, name: str, expect: object, key_lines: Mapping[str, int], line: int) -> None:
    here = key_lines.get("expect", line)
    if not isinstance(expect, dict):
        raise CaseFileError(path, here, name, "expect must be a table of expected values")
    for key, value in expect.items():
        at = key_lines.get(f"expect.{key}", here)
        if key not in EXPECT_FIELDS:
            raise CaseFileError(path, at, name, unknown_name("expect field", key, EXPECT_FIELDS))
        if key in SHAPE_FIELDS:
            try:
                _value("shape", value)
            except ValueError as error:
                raise CaseFileError(path, at, name, f"expect.{key}: {error}") from None
        elif key == "params":
            if not _is_int(value) or value < 0:
                raise CaseFileError(path, at, name, f"expect.params: expected a count, got {value!r}")
        else:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise CaseFileError(
                    path,
                    at,
                    name,
                    'expect.equations: expected a table such as { dot_product = "aecd,abcd->acbe" }',
                )
            for equation in value:
                if equation not in EQUATION_NAMES:
                    raise CaseFileError(path, at, name, unknown_name("equation", equation, EQUATION_NAMES))


# --- Expectations against a derivation -------------------------------------------


def observed(derivation: Derived, fields: Sequence[str] = EXPECT_FIELDS) -> dict[str, Any]:
    """The values ``fields`` name, as a case file writes them (shapes without batch)."""
    values: dict[str, Any] = {}
    for field in fields:
        if field in derivation.shapes:
            shape = derivation.shapes[field].shape
            values[field] = list(shape[1:])  # every shape starts with the batch axis
        elif field == "params":
            values[field] = derivation.params
        elif field == "equations":
            values[field] = dict(derivation.equations)
    return values


def compare(expect: Mapping[str, Any], derivation: Derived) -> tuple[Mismatch, ...]:
    """Every expected value the derivation does not give, named by its field."""
    actual = observed(derivation, tuple(expect))
    mismatches = []
    for field, expected in expect.items():
        if field == "equations":
            for name, equation in expected.items():
                got = actual[field].get(name)
                if got != equation:
                    mismatches.append(Mismatch(f"equations.{name}", equation, got))
        elif actual.get(field) != expected:
            mismatches.append(Mismatch(field, expected, actual.get(field)))
    return tuple(mismatches)


def show(value: Any) -> str:
    """A value as a mismatch line shows it: shapes as (32, 64, 4), absent as 'absent'."""
    if value is None:
        return "absent"
    if isinstance(value, list):
        return format_shape(tuple(value))
    return str(value)


# --- Where things are: line numbers ----------------------------------------------


class _Lines:
    """Line numbers of tables and keys, found by a light scan of the text.

    tomllib and json give no positions, so a scan finds ``[[case]]`` headers and
    ``key =`` lines (TOML) or ``"name": "..."`` and ``"key":`` (JSON). A path it
    cannot place falls back to its parent's line, then to line 1.
    """

    def __init__(self, found: dict[tuple[str | int, ...], int]) -> None:
        self.found = found

    def at(self, *path: str | int) -> int:
        for end in range(len(path), 0, -1):
            if path[:end] in self.found:
                return self.found[path[:end]]
        return 1


_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" /#]+?)\s*\]\]?")
#: The parts of a dotted header or key; a quoted part may hold dots ([calls."a.b/attention"]).
_TOML_PART = re.compile(r'\s*("[^"]*"|[^."]+)\s*(?:\.|$)')
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-.\" ]+?)\s*=")


def _parse_toml(path: Path, text: str) -> tuple[Any, _Lines]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"at line (\d+)", str(error))
        at = int(match.group(1)) if match else max(1, len(text.splitlines()))  # "at end of document"
        message = re.sub(r"\s*\((at line \d+, column \d+|at end of document)\)", "", str(error))
        raise CaseFileError(path, at, None, f"not valid TOML: {message}") from None
    found: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    cases = -1
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TOML_HEADER.match(line)
        if header and not _TOML_KEY.match(line):
            parts = [part.strip('"') for part in _TOML_PART.findall(header.group(2))]
            if parts[0] == "case":
                if header.group(1) == "[[":
                    cases += 1
                table = ("case", cases, *parts[1:])
            else:
                table = tuple(parts)
            found.setdefault(table, number)
            continue
        key = _TOML_KEY.match(line)
        if key:
            parts = [part.strip().strip('"') for part in key.group(1).split(".")]
            for end in range(1, len(parts) + 1):  # a dotted key also places its tables
                found.setdefault((*table, *parts[:end]), number)
    return data, _Lines(found)


def _parse_json(path: Path, text: str) -> tuple[Any, _Lines]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CaseFileError(path, error.lineno, None, f"not valid JSON: {error.msg}") from None
    found: dict[tuple[str | int, ...], int] = {}
    line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def line_of(offset: int) -> int:
        return next(i for i in range(len(line_starts), 0, -1) if line_starts[i - 1] <= offset)

    for key in TOP_LEVEL_KEYS:
        match = re.search(rf'"{key}"\s*:', text)
        if match:
            found[(key,)] = line_of(match.start())
    if isinstance(data, dict) and isinstance(data.get("defaults"), dict) and ("defaults",) in found:
        start = text.index('"defaults"')
        for key in data["defaults"]:
            match = re.compile(rf'"{re.escape(key)}"\s*:').search(text, start)
            if match:
                found[("defaults", key)] = line_of(match.start())
    cases = data.get("case") if isinstance(data, dict) else None
    position = text.index('"case"') if ("case",) in found else 0
    for index, entry in enumerate(cases if isinstance(cases, list) else []):
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        match = re.compile(rf'"name"\s*:\s*{re.escape(json.dumps(name))}').search(text, position)
        if not match:
            continue
        position = match.start()
        found[("case", index)] = line_of(position)
        for key, value in entry.items():
            key_match = re.compile(rf'"{re.escape(key)}"\s*:').search(text, _object_start(text, position))
            if key_match:
                found[("case", index, key)] = line_of(key_match.start())
            if key == "expect" and isinstance(value, dict) and key_match:
                for field in value:
                    field_match = re.compile(rf'"{re.escape(field)}"\s*:').search(text, key_match.end())
                    if field_match:
                        found[("case", index, "expect", field)] = line_of(field_match.start())
    return data, _Lines(found)


def _object_start(text: str, position: int) -> int:
    """The ``{`` that opens the JSON object holding ``position`` (for a case: its start)."""
    return text.rfind("{", 0, position)
