"""A model to scan, as a user names it: a file or a builder, its inputs, and what to trust.

Pure: the runtime (:mod:`mha_cli.runtime.models`) loads and runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import MAX_SIZE, quoted

#: Model files by suffix: what Keras's model.save() and model.to_json() write.
MODEL_SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".json": "json"}
#: Input dtypes --input accepts; integer inputs are drawn small and positive (token ids).
INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16", "int32", "int64", "bool")
#: A captured call's mask sources that the layer computes itself from its arguments (not given to it).
IMPLICIT_MASKS = frozenset({"use_causal_mask", "sliding_window"})
_BUILD = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", re.ASCII)
_INPUT = re.compile(r"([^=\s]+)=([^:]+)(?::(\w+))?", re.ASCII)
_SIZE = re.compile(r"[0-9]+|None|none|null|\?", re.ASCII)


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, its shape without the batch axis (None: unknown) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str | None = None

    @property
    def known(self) -> bool:
        return all(size is not None for size in self.shape)


@dataclass(frozen=True)
class ModelSpec:
    """What ``mha-explain scan`` (or a case file's ``[model]`` table) names."""

    #: A .keras, .h5 or model.to_json() file; or None with ``build``.
    path: Path | None = None
    #: ``module:function`` returning a model, imported and called (the user's code).
    build: str | None = None
    #: Modules imported before loading, to register custom classes (the user's code).
    custom_objects: tuple[str, ...] = ()
    #: Overrides of the model's inputs: unknown sizes, dtypes.
    inputs: tuple[InputSpec, ...] = ()
    batch: int = 2
    seed: int = 0
    #: Let the model file run code it carries (a Lambda's Python bytecode): Keras's safe_mode off.
    trust: bool = False
    #: Which Keras loads and runs it: 3 (keras) or 2 (tf_keras: Keras 2 .h5 and tf.keras JSON files).
    keras: int = 3
    #: A model handed over in Python (mha_cli.scan(model)), by its name: neither a file nor a builder.
    live: str | None = None

    @property
    def kind(self) -> str:
        """keras, h5, json, build or live."""
        if self.live is not None:
            return "live"
        if self.path is None:
            return "build"
        return MODEL_SUFFIXES[self.path.suffix.lower()]

    @property
    def shown(self) -> str:
        if self.live is not None:
            return f"the model {self.live!r}"
        return f"--build {self.build}" if self.path is None else str(self.path)


def model_spec(
    path: Path | None,
    build: str | None,
    *,
    custom_objects: tuple[str, ...] = (),
    inputs: tuple[InputSpec, ...] = (),
    batch: int = 2,
    seed: int = 0,
    trust: bool = False,
    option: str = "MODEL",
    keras: int = 3,
) -> ModelSpec:
    """A checked ModelSpec: exactly one of a model file and a builder, each well formed."""
    if (path is None) == (build is None):
        raise ConfigError(
            option,
            None,
            "name a model file (.keras, .h5 or a model.to_json() .json) or --build module:function",
        )
    if build is not None and not _BUILD.fullmatch(build):
        raise ConfigError(
            "--build",
            quoted(build),
            "write module:function, e.g. my_models:build_encoder (importable module)",
        )
    if path is not None and path.suffix.lower() not in MODEL_SUFFIXES:
        raise ConfigError(
            option,
            quoted(str(path)),
            "not a model file by its name; give a .keras or .h5 file from model.save(), "
            "or a .json file from model.to_json()",
        )
    for module in custom_objects:
        if not re.fullmatch(r"[A-Za-z_][\w.]*", module, re.ASCII):
            raise ConfigError(
                "--custom-objects", quoted(module), "write an importable module name, e.g. my_layers"
            )
    names = [spec.name for spec in inputs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("--input", name, "is given twice; give each input once")
    return ModelSpec(path, build, tuple(custom_objects), tuple(inputs), batch, seed, trust, keras)


def parse_input(option: str, text: str) -> InputSpec:
    """``NAME=SHAPE[:DTYPE]``, e.g. ``tokens=128:int32`` or ``image=32,32,3``; ``?`` or None keeps a size."""
    found = _INPUT.fullmatch(text.strip())
    if found is None:
        raise ConfigError(option, quoted(text), "write NAME=SHAPE[:DTYPE], e.g. tokens=128:int32")
    name, shape_text, dtype = found.groups()
    sizes: list[int | None] = []
    for item in shape_text.strip().strip("()[]").split(","):
        item = item.strip()
        if not item and sizes:  # a trailing comma, as in (128,)
            continue
        if not _SIZE.fullmatch(item):
            raise ConfigError(
                option,
                quoted(text),
                f"{item!r} is not a size; sizes are positive integers, or ? to keep the model's",
            )
        size = None if not item.isdigit() else int(item)
        if size is not None and not 1 <= size <= MAX_SIZE:
            raise ConfigError(option, quoted(text), f"size {size} must be in 1..{MAX_SIZE}")
        sizes.append(size)
    if dtype is not None and dtype not in INPUT_DTYPES:
        raise ConfigError(option, quoted(text), f"dtype {dtype!r} is not one of {', '.join(INPUT_DTYPES)}")
    return InputSpec(name, tuple(sizes), dtype)


def resolve_inputs(
    declared: tuple[InputSpec, ...], overrides: tuple[InputSpec, ...], source: str
) -> tuple[InputSpec, ...]:
    """The model's inputs with ``overrides`` applied; every size known, or ConfigError saying which.

    An override may leave a size as ``?`` to keep the model's; a model without
    declared inputs (a subclassed model) takes the overrides as they are.
    """
    resolved = merged_inputs(declared, overrides, source)
    for spec in resolved:
        if not spec.known:
            unknown = [str(axis + 1) for axis, size in enumerate(spec.shape) if size is None]
            example = ",".join("128" if size is None else str(size) for size in spec.shape)
            raise ConfigError(
                "--input",
                None,
                f"{source}'s input {spec.name!r} {_shown(spec.shape)} has no size on axis "
                f"{', '.join(unknown)}; give it, e.g. --input {spec.name}={example}",
            )
    if not resolved:
        raise ConfigError(
            "--input",
            None,
            f"{source} declares no inputs (a subclassed model); give each, e.g. --input input=128,64",
        )
    return resolved


def merged_inputs(
    declared: tuple[InputSpec, ...], overrides: tuple[InputSpec, ...], source: str
) -> tuple[InputSpec, ...]:
    """The model's inputs with ``overrides`` applied, sizes left unknown (None) where neither gives one."""
    by_name = {spec.name: spec for spec in declared}
    for extra in overrides:
        if declared and extra.name not in by_name:
            raise ConfigError(
                "--input",
                extra.name,
                f"{source} has no input of that name; its inputs are {', '.join(by_name) or 'none'}",
            )
    merged = []
    for given in declared or overrides:
        spec = given
        override = next((o for o in overrides if o.name == given.name), None)
        if override is not None and declared:
            if len(override.shape) != len(spec.shape):
                raise ConfigError(
                    "--input",
                    f"{override.name}={','.join('?' if s is None else str(s) for s in override.shape)}",
                    f"the input has {len(spec.shape)} axes besides the batch, "
                    f"{_shown(spec.shape)}; give one size each",
                )
            shape = tuple(o if o is not None else s for o, s in zip(override.shape, spec.shape, strict=True))
            spec = InputSpec(spec.name, shape, override.dtype or spec.dtype)
        merged.append(spec)
    return tuple(merged)


def _shown(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join(["None", *("None" if size is None else str(size) for size in shape)]) + ")"
