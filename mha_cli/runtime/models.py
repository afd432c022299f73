"""A user's model: loaded safely, and every call of its attention layers captured.

Loading never runs code a model file carries unless the user said to trust it
(Keras's ``safe_mode``); code runs only from what the user names on the command
line (``--build``, ``--custom-objects``). Every MultiHeadAttention and
GroupQueryAttention (and subclass) in the model has its ``call`` wrapped, so
each call is seen with the tensors it really receives, also inside custom
layers and nested models, which a functional graph does not record. Two
passes: a symbolic one over the model's own ``call`` (shapes, no memory), then,
when the caller allows, a real one on random inputs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import quoted
from mha_cli.core.models import IMPLICIT_MASKS, InputSpec, ModelSpec
from mha_cli.runtime.keras_adapter import (
    _sublayers,
    _to_numpy,
    _to_tensor,
    is_keras2,
    keras_rejects,
    load_keras,
    uninterrupted,
)
from mha_cli.runtime.quiet import native_output_silenced

#: The spread (standard deviation) of attention logits the sharpened re-run aims at: softmax then
#: depends on them, as with trained weights, where fresh ones give logits near 1e-4.
_LOGIT_SPREAD = 3.0
#: Integer inputs (token ids) are drawn from 1 up to this, and below every Embedding's input_dim.
_MAX_TOKEN = 9


@dataclass(frozen=True)
class Sharpened:
    """A subclass's own call beside its Keras class's, on one call's inputs, with the query and key
    kernels scaled so that the attention logits matter (fresh weights make them tiny, and then almost
    any change to the attention, rotary embeddings included, leaves the output as it was)."""

    #: What the query and key kernels were multiplied by (1: they were left as they are).
    scale: float
    #: max |own call's output - base class's call's output| (None: the re-run failed).
    max_abs_diff: float | None
    #: max |base class's output|, what the difference is measured against.
    output_size: float | None
    #: Why the re-run failed (the subclass's call raised), else None.
    problem: str | None = None

    def agrees(self, tolerance: float) -> bool:
        if self.max_abs_diff is None or self.output_size is None:
            return False
        return self.max_abs_diff <= tolerance * max(1.0, self.output_size)


@dataclass(frozen=True)
class CapturedCall:
    """One call of one attention layer, as the model made it."""

    #: The live layer (a runtime handle, passed back to run_captured).
    layer: Any
    #: The layer's path in the model, e.g. "block/multi_head_attention".
    path: str
    class_name: str
    #: Which call of this layer (0 for the first), in the order the model makes them.
    call_index: int
    #: Shapes without the batch axis.
    query_shape: tuple[int, ...]
    value_shape: tuple[int, ...]
    key_shape: tuple[int, ...]
    value_is_query: bool
    key_given: bool
    #: Where the call's mask came from: "attention_mask", "use_causal_mask", "query_mask"...
    mask_sources: tuple[str, ...]
    #: The mask Keras combined from them, batch included (None: no mask).
    mask_shape: tuple[int | None, ...] | None
    causal: bool
    scores_requested: bool
    #: Every method of the layer's Keras class that its class redefines (build, call, ...).
    overrides: tuple[str, ...]
    #: The layer's shape-relevant arguments, resolved (its kind's configuration's names; for
    #: MultiHeadAttention, attention_axes as built).
    arguments: dict[str, Any]
    #: The real pass's tensors as float64/bool arrays: query, value, key (None when not given),
    #: attention_mask (combined; None without one) and output; empty after a symbolic pass alone.
    arrays: dict[str, np.ndarray | None]
    #: This call's serialized inbound node, as the model's get_config() records it, in a list
    #: (None: the model records none, e.g. a subclassed model, or the layer's name is ambiguous).
    inbound_nodes: list[Any] | None = None
    #: The layer's kind (mha_cli.core.kinds): "mha", or "gqa" for GroupQueryAttention and subclasses.
    kind: str = "mha"
    #: A subclass's own call against its Keras class's with sharpened weights (real pass, and only
    #: for a subclass that overrides call).
    sharpened: Sharpened | None = None

    @property
    def key(self) -> str:
        """``path`` for a layer called once, ``path#index`` for the later calls of a shared one."""
        return self.path if self.call_index == 0 else f"{self.path}#{self.call_index}"


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    name: str
    #: Where the weights came from, for the output.
    weights_from: str
    #: The model's inputs as declared (sizes None where unknown).
    inputs: tuple[InputSpec, ...]
    #: Its MultiHeadAttention and GroupQueryAttention layers (and subclasses), in model order.
    attention_layers: tuple[Any, ...]
    keras_version: str
    #: The Keras module that loaded it (keras, or tf_keras for Keras 2).
    keras: Any = None


@dataclass(frozen=True)
class _Saved:
    """What a model file says about itself, read as data (nothing in it runs)."""

    #: The architecture (None: not readable).
    config: Any = None
    #: The keras_version that saved it (None: not said, or not readable).
    keras_version: str | None = None


def _saved(path: Path, kind: str) -> _Saved:
    """A .keras zip's config.json and metadata.json, a model.to_json() file, or an .h5 file's attributes."""
    config: Any = None
    version: Any = None
    with contextlib.suppress(Exception):
        if kind == "keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
                version = json.loads(archive.read("metadata.json")).get("keras_version")
        elif kind == "json":
            config = json.loads(path.read_text(encoding="utf-8"))
            version = config.get("keras_version")
        elif kind == "h5":
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
                version = handle.attrs.get("keras_version")
    if isinstance(version, bytes):
        version = version.decode()
    return _Saved(config, version if isinstance(version, str) else None)


def _classes(config: Any) -> Iterator[tuple[str, str]]:
    """(class_name, layer name) of every layer in a serialized architecture."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config["class_name"], str(config["config"].get("name", "?"))
        for value in config.values():
            yield from _classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _classes(value)


def _one_line(error: Exception) -> str:
    """An exception's message on one line, without the call's arguments Keras appends to it."""
    return " ".join(str(error).split("Arguments received by")[0].split())


def _import_user_module(option: str, module: str) -> Any:
    """The user's own module, importable from the working directory as with ``python -m``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(option, quoted(module), f"cannot import it: {error}") from None
    except Exception as error:
        raise ConfigError(
            option, quoted(module), f"importing it raised {type(error).__name__}: {error}"
        ) from None


def _layer_classes(config: Any) -> Iterator[tuple[str, str | None]]:
    """(class_name, registered_name) of every layer (a config with a name and trainable) in a serialized
    architecture."""
    if isinstance(config, dict):
        inner = config.get("config")
        if "class_name" in config and isinstance(inner, dict) and "name" in inner and "trainable" in inner:
            yield str(config["class_name"]), config.get("registered_name")
        for value in config.values():
            yield from _layer_classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_classes(value)


def _unregistered(keras: Any, config: Any) -> str | None:
    """The first layer class in ``config`` this Keras neither has nor has registered, by its class name.

    tf_keras leaves such a class as its name and then calls it ('str' object is not callable)."""
    known = getattr(keras.saving, "get_registered_object", lambda name: None)
    for cls, registered in _layer_classes(config):
        if hasattr(keras.layers, cls) or cls in {"Functional", "Sequential", "Model"}:
            continue
        if known(registered or cls) is None and known(cls) is None:
            return cls
    return None


def _refusal(spec: ModelSpec, error: Exception, keras: Any = None) -> ConfigError:
    """One line for a model Keras would not load: which file, what was wrong, what would be right."""
    assert spec.path is not None
    shown = quoted(str(spec.path))
    text = " ".join(str(error).split())
    saved = _saved(spec.path, spec.kind)
    saved_by = saved.keras_version
    if spec.keras == 3 and saved_by is not None and saved_by.startswith("2."):
        return ConfigError(
            "MODEL",
            shown,
            f"saved by Keras {saved_by} (tf.keras), which Keras 3 does not load as it is; scan it with "
            "--keras 2 (tf_keras: pip install 'mha-explain[keras2]'), or --keras all to also see what "
            "each attention layer's config needs to load in Keras 3",
        )
    if spec.keras == 2 and saved_by is not None and saved_by.startswith("3."):
        return ConfigError(
            "MODEL",
            shown,
            f"saved by Keras {saved_by}, which tf_keras (Keras 2) does not load; leave out --keras 2",
        )
    lambdas = [name for cls, name in _classes(saved.config) if cls == "Lambda"]
    if lambdas and ("safe_mode" in text or "Lambda" in text or "lambda" in text):
        return ConfigError(
            "MODEL",
            shown,
            f"the Lambda layer {lambdas[0]!r} holds Python code, which a model file may run only if you "
            "trust it: pass --trust-model to load it anyway",
        )
    unknown = re.search(r"(?:Could not locate class|Unknown layer:?) '?([\w.]+)", text)
    name = unknown.group(1) if unknown is not None else None
    # Keras may name a module instead of the class; tf_keras calls an unknown class's name ('str' object
    # is not callable): the class is then found in the architecture itself.
    if keras is not None and (
        "." in (name or "") or (name is None and "'str' object is not callable" in text)
    ):
        name = _unregistered(keras, saved.config) or name
    if name is not None:
        return ConfigError(
            "MODEL",
            shown,
            f"the model uses the custom class {name!r}, which is not registered; import the module that "
            "defines it with --custom-objects MODULE, or build the model with --build module:function",
        )
    rebuilt = re.search(r"Error when deserializing class '([\w.]+)'", text)
    if rebuilt is not None or "could not be deserialized" in text:
        # Keras nests the cause: the innermost "Exception encountered:" is what the class's code raised.
        cause = text.rsplit("Exception encountered:", 1)[-1].strip()
        where = f"the class {rebuilt.group(1)!r}" if rebuilt is not None else "a class in it"
        return ConfigError(
            "MODEL",
            shown,
            f"the file is a model, but Keras could not rebuild {where} from its saved config ({cause}); "
            "its get_config() must return every argument its __init__ takes, or build the model with "
            "--build module:function",
        )
    return ConfigError("MODEL", shown, f"not a model Keras can load ({_cut(text)}); {_expected(spec.kind)}")


def _cut(text: str, limit: int = 200) -> str:
    """``text`` up to ``limit`` characters, cut at a word's end."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def _expected(kind: str) -> str:
    what = {"keras": "a .keras zip from model.save()", "h5": "an HDF5 file from model.save()"}
    return "expected " + what.get(kind, "a JSON file from model.to_json()")


@uninterrupted
def load(spec: ModelSpec, backend: str, live: Any = None) -> LoadedModel:
    """The model ``spec`` names, with its attention layers; ConfigError for anything unusable.
    ``live``: a model handed over in Python (``spec.live`` names it), used as it is."""
    keras = load_keras(backend, spec.keras)
    for module in spec.custom_objects:
        _import_user_module("--custom-objects", module)
    if live is not None:
        model, weights_from = live, "its own (a live model)"
    else:
        with native_output_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, weights_from = _load(keras, spec)
    if not isinstance(model, keras.Model):
        got = type(model).__name__
        if live is not None:
            raise ConfigError(
                "model", got, "not a keras.Model; for one layer, use mha_cli.explain(layer, ...)"
            )
        if spec.build is not None:
            raise ConfigError("--build", quoted(spec.build), f"returned a {got}, not a keras.Model")
        raise ConfigError(
            "MODEL",
            quoted(str(spec.path)),
            f"not a model Keras can load (it holds a {got}); {_expected(spec.kind)}",
        )
    layers = _attention_layers(keras, model)
    return LoadedModel(
        model, model.name, weights_from, _declared_inputs(model), layers, keras.__version__, keras
    )


def _attention_layers(keras: Any, model: Any) -> tuple[Any, ...]:
    """The model's MultiHeadAttention and GroupQueryAttention layers (and subclasses), in model order."""
    classes = tuple(base for _, base in attention_bases(keras))
    return tuple(layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, classes))


def _load(keras: Any, spec: ModelSpec) -> tuple[Any, str]:
    if spec.build is not None:
        module_name, function_name = spec.build.split(":")
        module = _import_user_module("--build", module_name)
        build = getattr(module, function_name, None)
        if not callable(build):
            raise ConfigError("--build", quoted(spec.build), f"{module_name} has no function {function_name}")
        keras.utils.set_random_seed(spec.seed)
        try:
            return build(), f"initialised by {spec.build} (seeded with --seed {spec.seed})"
        except Exception as error:
            raise ConfigError(
                "--build",
                quoted(spec.build),
                f"the function raised {type(error).__name__}: {_one_line(error)}",
            ) from None
    path = spec.path
    assert path is not None
    if not path.is_file():
        raise ConfigError("MODEL", quoted(str(path)), "no such file")
    if is_keras2(keras):
        return _load_keras2(keras, spec, path)
    from keras.src.saving.serialization_lib import SafeModeScope

    try:
        if spec.kind == "json":
            text = path.read_text(encoding="utf-8", errors="replace")
            keras.utils.set_random_seed(spec.seed)
            with SafeModeScope(not spec.trust):
                return keras.models.model_from_json(text), (
                    f"drawn from --seed {spec.seed}: a model.to_json() file holds no weights"
                )
        model = keras.saving.load_model(path, compile=False, safe_mode=not spec.trust)
        return model, f"the weights saved in {path.name}"
    except ConfigError:
        raise
    except Exception as error:
        raise _refusal(spec, error, keras) from None


def _load_keras2(keras: Any, spec: ModelSpec, path: Path) -> tuple[Any, str]:
    """A Keras 2 .h5, .keras or model.to_json() file, loaded by tf_keras.

    tf_keras refuses a Lambda's Python bytecode only inside a safe-mode scope,
    which its .h5 and JSON loaders do not open by default: it would rebuild
    the function and run it while building the model. So the architecture is
    read as data first and a Lambda refused before tf_keras sees the file, and
    the load runs in tf_keras's own safe mode as well; --trust-model lifts both.
    """
    config = _saved(path, spec.kind).config
    if config is None:
        raise ConfigError(
            "MODEL", quoted(str(path)), f"cannot read a model architecture from it; {_expected(spec.kind)}"
        )
    lambdas = [name for cls, name in _classes(config) if cls == "Lambda"]
    if lambdas and not spec.trust:
        raise ConfigError(
            "MODEL",
            quoted(str(path)),
            f"the Lambda layer {lambdas[0]!r} holds Python code, which a model file may run only if you "
            "trust it: pass --trust-model to load it anyway",
        )
    # Imported by name: mypy need not know tf_keras, an optional extra.
    SafeModeScope = importlib.import_module("tf_keras.src.saving.serialization_lib").SafeModeScope

    try:
        with SafeModeScope(not spec.trust):
            if spec.kind == "json":
                keras.utils.set_random_seed(spec.seed)
                model = keras.models.model_from_json(path.read_text(encoding="utf-8", errors="replace"))
                return model, f"drawn from --seed {spec.seed}: a model.to_json() file holds no weights"
            model = keras.models.load_model(path, compile=False, safe_mode=not spec.trust)
        return model, f"the weights saved in {path.name}"
    except ConfigError:
        raise
    except Exception as error:
        raise _refusal(spec, error, keras) from None


def _declared_inputs(model: Any) -> tuple[InputSpec, ...]:
    declared = getattr(model, "inputs", None)
    if not declared:
        return ()
    return tuple(
        InputSpec(str(tensor.name), tuple(tensor.shape[1:]), str(getattr(tensor.dtype, "name", tensor.dtype)))
        for tensor in declared
    )


def _structured(model: Any, tensors: list[Any]) -> Any:
    """The inputs as the model's call takes them (one tensor, a list, or a dict)."""
    structure = getattr(model, "_inputs_struct", None)
    if structure is not None:
        import keras

        return keras.tree.pack_sequence_as(structure, tensors)
    nested = getattr(model, "_nested_inputs", None)  # a Keras 2 functional model's
    if nested is not None:
        import tensorflow as tf

        return tf.nest.pack_sequence_as(nested, tensors)
    return tensors[0] if len(tensors) == 1 else tensors


def attention_bases(keras: Any) -> tuple[tuple[str, Any], ...]:
    """(kind, class) of every attention layer this Keras has that scan finds: MultiHeadAttention,
    and GroupQueryAttention where it exists (Keras 3; tf_keras has none)."""
    from mha_cli.core.kinds import KINDS

    found = ((name, getattr(keras.layers, kind.keras_class, None)) for name, kind in KINDS.items())
    return tuple((name, base) for name, base in found if base is not None)


def layer_kind(keras: Any, layer: Any) -> tuple[str, Any]:
    """The kind of an attention layer and the Keras class it is (or subclasses)."""
    return next((name, base) for name, base in attention_bases(keras) if isinstance(layer, base))


#: Methods of the base class a subclass may redefine without changing what the layer computes.
_BOOKKEEPING = frozenset({"get_config", "from_config"})


def _overrides(keras: Any, layer: Any) -> tuple[str, ...]:
    """Every method of the layer's Keras class (MultiHeadAttention's, GroupQueryAttention's) that its
    class redefines, in the base class's order: ``build``, ``call``, ``_compute_causal_mask``..."""
    _, base = layer_kind(keras, layer)
    return tuple(
        name
        for name, attribute in vars(base).items()
        if callable(attribute)
        and not name.startswith("__")
        and name not in _BOOKKEEPING
        and getattr(type(layer), name, None) is not attribute
    )


def _arguments(keras: Any, layer: Any) -> dict[str, Any]:
    """What the layer was built with, in its kind's configuration's terms (MHAConfig's, GQAConfig's)."""
    config = layer.get_config()
    use_bias = bool(config.get("use_bias", True))
    # A subclass's build may leave a projection's bias out (KerasHub Whisper's key): its real weights say.
    unbiased = tuple(
        "attention_output" if step == "output" else step
        for step, sublayer in _sublayers(layer).items()
        if use_bias and getattr(sublayer, "bias", None) is None
    )
    if layer_kind(keras, layer)[0] == "gqa":
        return {
            "unbiased": unbiased,
            "head_dim": int(config["head_dim"]),
            "num_query_heads": int(config["num_query_heads"]),
            "num_key_value_heads": int(config["num_key_value_heads"]),
            "use_bias": use_bias,
            "use_gate": bool(config.get("use_gate", False)),
            "dropout": float(config.get("dropout", 0.0)),
            "dtype": str(layer.compute_dtype),
            "sliding_window": config.get("sliding_window"),
        }
    output_shape = config.get("output_shape")
    if isinstance(output_shape, int):
        output_shape = (output_shape,)
    return {
        "unbiased": unbiased,
        "num_heads": int(config["num_heads"]),
        "key_dim": int(config["key_dim"]),
        "value_dim": None if config.get("value_dim") is None else int(config["value_dim"]),
        "output_shape": None if output_shape is None else tuple(int(size) for size in output_shape),
        # Keras 2 has no attention_axes property; its _attention_axes keeps negative axes as given.
        "attention_axes": tuple(
            int(axis) for axis in getattr(layer, "attention_axes", layer._attention_axes)
        ),
        "use_bias": use_bias,
        "use_gate": bool(config.get("use_gate", False)),
        "dropout": float(config.get("dropout", 0.0)),
        "dtype": str(layer.compute_dtype),
        "sliding_window": config.get("sliding_window"),
    }


@contextlib.contextmanager
def _captured(keras: Any, layers: tuple[Any, ...], real: bool) -> Iterator[list[CapturedCall]]:
    """Wrap each layer's ``call`` (an instance attribute, removed after) and record every call."""
    seen: list[CapturedCall] = []
    counts: dict[int, int] = {}
    keras2 = is_keras2(keras)

    def shape(tensor: Any) -> tuple[int, ...]:
        return tuple(tensor.shape[1:])

    def arrays_of(tensor: Any) -> np.ndarray:
        return _to_numpy(keras, tensor)

    def keras_mask(tensor: Any) -> Any:
        return getattr(tensor, "_keras_mask", None) if keras2 else keras.src.backend.get_keras_mask(tensor)

    for layer in layers:
        original = layer.call

        def call(
            query: Any,
            value: Any,
            key: Any = None,
            *args: Any,
            _layer: Any = layer,
            _call: Any = original,
            **kwargs: Any,
        ) -> Any:
            query_mask = keras_mask(query)
            if keras2:  # Keras 2 takes them off the tensors, never as arguments
                value_mask, key_mask = keras_mask(value), None if key is None else keras_mask(key)
            else:
                value_mask, key_mask = kwargs.get("value_mask"), kwargs.get("key_mask")
            attention_mask = kwargs.get("attention_mask")
            causal = bool(kwargs.get("use_causal_mask", False))
            sources = [
                name
                for name, given in (
                    ("attention_mask", attention_mask),
                    ("query_mask", query_mask),
                    ("value_mask", value_mask),
                    ("key_mask", key_mask),
                )
                if given is not None
            ]
            if causal:
                sources.append("use_causal_mask")
            # From the config: a Keras 2 layer resolves its other arguments only on its first call.
            if _layer.get_config().get("sliding_window") is not None:
                sources.append("sliding_window")
            combined = None
            if sources and keras2:  # Keras 2 reads the query's and value's masks off the tensors
                combined = _layer._compute_attention_mask(
                    query, value, key=key, attention_mask=attention_mask, use_causal_mask=causal
                )
            elif sources:
                combined = _layer._compute_attention_mask(
                    query,
                    value,
                    query_mask=query_mask,
                    value_mask=value_mask,
                    key_mask=None if key is None or key is value else key_mask,
                    attention_mask=attention_mask,
                    use_causal_mask=causal,
                )
            result = _call(query, value, key, *args, **kwargs)
            arguments = _arguments(keras, _layer)  # after the call, which builds a Keras 2 layer
            overrides = _overrides(keras, _layer)
            sharpened = None
            # Only a subclass's own call differs from its Keras class's call; other overridden methods
            # run in both (the NumPy reference holds those against the algebra).
            if real and "call" in overrides:
                own = (query, value, key, args, kwargs)
                tensor_masks = (query_mask, value_mask, key_mask)
                sharpened = _sharpened(keras, _layer, _call, own, combined, tensor_masks)
            index = counts.get(id(_layer), 0)
            counts[id(_layer)] = index + 1
            output = result[0] if isinstance(result, tuple | list) else result
            arrays: dict[str, np.ndarray | None] = {}
            if real:
                arrays = {
                    "query": arrays_of(query),
                    "value": arrays_of(value),
                    "key": None if key is None or key is value else arrays_of(key),
                    # Only masks the layer makes itself (causal, sliding window): it makes them again.
                    "attention_mask": None
                    if combined is None or not set(sources) - IMPLICIT_MASKS
                    else arrays_of(combined).astype(bool),
                    "output": arrays_of(output),
                }
            mask_shape = None if combined is None else (None, *tuple(combined.shape)[1:])
            if combined is not None and combined.shape[0] == 1:
                mask_shape = (1, *tuple(combined.shape)[1:])
            seen.append(
                CapturedCall(
                    layer=_layer,
                    path=str(getattr(_layer, "path", _layer.name)),
                    class_name=type(_layer).__name__,
                    call_index=index,
                    query_shape=shape(query),
                    value_shape=shape(value),
                    key_shape=shape(value if key is None else key),
                    value_is_query=value is query,
                    key_given=key is not None and key is not value,
                    mask_sources=tuple(sources),
                    mask_shape=mask_shape,
                    causal=causal,
                    scores_requested=bool(kwargs.get("return_attention_scores", False)),
                    overrides=overrides,
                    arguments=arguments,
                    arrays=arrays,
                    kind=layer_kind(keras, _layer)[0],
                    sharpened=sharpened,
                )
            )
            return result

        layer.call = call
    try:
        yield seen
    finally:
        for layer in layers:
            with contextlib.suppress(AttributeError):
                del layer.call


def _sharpened(
    keras: Any,
    layer: Any,
    own_call: Any,
    given: tuple[Any, Any, Any, tuple[Any, ...], dict[str, Any]],
    mask: Any,
    tensor_masks: tuple[Any, Any, Any],
) -> Sharpened:
    """The subclass's own call (with every argument the model gave it) and its Keras class's call
    (with the combined mask), both with the query and key kernels scaled until the logits spread
    about _LOGIT_SPREAD; the kernels are restored after, whatever happens.

    ``tensor_masks`` are the Keras masks the query, value and key carried into the model's call:
    Keras 3's MultiHeadAttention.call takes them off the tensors, so they are put back for the re-run.
    """
    query, value, key, args, kwargs = given
    scale = 1.0
    kernels: list[Any] = []
    saved: list[np.ndarray] = []

    def assign(variable: Any, array: np.ndarray) -> None:
        variable.assign(_to_tensor(keras, array, variable.dtype.name) if is_keras2(keras) else array)

    try:
        _, base = layer_kind(keras, layer)
        sublayers = _sublayers(layer)
        kernels = [sublayers[step].kernel for step in ("query", "key")]
        if not all(callable(getattr(kernel, "assign", None)) for kernel in kernels):
            return Sharpened(1.0, None, None, "its query and key kernels are computed, not variables")
        saved = [_to_numpy(keras, kernel) for kernel in kernels]
        q = np.tensordot(_to_numpy(keras, query).astype(np.float64), saved[0], axes=([-1], [0]))
        source = _to_numpy(keras, value if key is None else key).astype(np.float64)
        k = np.tensordot(source, saved[1], axes=([-1], [0]))
        spread = float(q.std() * k.std())  # a logit q.k / sqrt(dim) spreads about std(q) * std(k)
        scale = max(1.0, math.sqrt(_LOGIT_SPREAD / spread)) if spread > 0 else 1.0
        for kernel, original in zip(kernels, saved, strict=True):
            assign(kernel, original * scale)
        if not is_keras2(keras):
            for tensor, tensor_mask in zip((query, value, key), tensor_masks, strict=True):
                if tensor is not None and tensor_mask is not None:
                    keras.src.backend.set_keras_mask(tensor, tensor_mask)
        own = own_call(query, value, key, *args, **kwargs)
        masks = {} if mask is None else {"attention_mask": mask}
        theirs = base.call(layer, query, value, key, training=False, **masks)
        own_output = _to_numpy(keras, own[0] if isinstance(own, tuple | list) else own).astype(np.float64)
        base_output = _to_numpy(keras, theirs[0] if isinstance(theirs, tuple | list) else theirs)
        base_output = base_output.astype(np.float64)
        if own_output.shape != base_output.shape:
            return Sharpened(
                scale, None, None, f"its output is {own_output.shape}, the base's {base_output.shape}"
            )
        difference = float(np.max(np.abs(own_output - base_output), initial=0.0))
        return Sharpened(scale, difference, float(np.max(np.abs(base_output), initial=0.0)))
    except Exception as error:  # the subclass's call, re-run: whatever it raises is reported, not raised
        return Sharpened(scale, None, None, f"{type(error).__name__}: {_one_line(error)[:200]}")
    finally:
        for kernel, original in zip(kernels[: len(saved)], saved, strict=True):
            with contextlib.suppress(Exception):  # a restore that fails must not hide the answer
                assign(kernel, original)


def _model_rejects(inputs: tuple[InputSpec, ...]) -> contextlib.AbstractContextManager[None]:
    """Keras's refusal during a model's forward pass, said of the model and the layer that failed
    (a Reshape that does not take these sizes is not the attention layer rejecting its configuration)."""
    shapes = ", ".join(f"{spec.name} {(None, *spec.shape)}" for spec in inputs)

    def refusal(where: str | None, reason: str) -> ConfigError:
        site = "" if where is None else f" in {where}"
        return ConfigError(
            "--input",
            None,
            f"the model's forward pass on {shapes} fails{site}: {reason}; give the inputs sizes the "
            "model takes",
        )

    return keras_rejects(refusal)


@uninterrupted
def symbolic_calls(loaded: LoadedModel, inputs: tuple[InputSpec, ...]) -> tuple[CapturedCall, ...]:
    """Every attention call, from tracing the model's own ``call`` on symbolic inputs (batch None).

    Keras 3 traces with compute_output_spec; Keras 2 (TensorFlow) with a tf.function's concrete function.
    """
    keras = loaded.keras
    if is_keras2(keras):
        import tensorflow as tf

        specs = [tf.TensorSpec((None, *spec.shape), spec.dtype or "float32") for spec in inputs]
        with native_output_silenced(), warnings.catch_warnings(), _model_rejects(inputs):
            warnings.simplefilter("ignore")
            with _captured(keras, loaded.attention_layers, real=False) as seen:
                call = tf.function(lambda structured: loaded.model(structured, training=False))
                call.get_concrete_function(_structured(loaded.model, specs))
        return tuple(seen)
    tensors = [keras.KerasTensor((None, *spec.shape), dtype=spec.dtype or "float32") for spec in inputs]
    with native_output_silenced(), warnings.catch_warnings(), _model_rejects(inputs):
        warnings.simplefilter("ignore")
        with _captured(keras, loaded.attention_layers, real=False) as seen:
            keras.src.backend.compute_output_spec(loaded.model.call, _structured(loaded.model, tensors))
    return tuple(seen)


@uninterrupted
def real_calls(
    loaded: LoadedModel, inputs: tuple[InputSpec, ...], *, batch: int, seed: int
) -> tuple[CapturedCall, ...]:
    """Every attention call, from one forward pass on random inputs of the model's input shapes.

    Float inputs are N(0, 1); integer inputs (token ids) are drawn from 1 up to
    below the smallest Embedding's input_dim, so they index every embedding and
    ``mask_zero`` masks nothing.
    """
    keras = loaded.keras
    tensors = _drawn(loaded, inputs, batch, seed)
    with native_output_silenced(), warnings.catch_warnings(), _model_rejects(inputs):
        warnings.simplefilter("ignore")
        with _captured(keras, loaded.attention_layers, real=True) as seen:
            loaded.model(_structured(loaded.model, tensors), training=False)
    nodes = _serialized_nodes(loaded.model)
    found = []
    for call in seen:
        recorded = nodes.get(call.layer.name)
        node = None if recorded is None or call.call_index >= len(recorded) else [recorded[call.call_index]]
        found.append(replace(call, inbound_nodes=node))
    return tuple(found)


@uninterrupted
def built(loaded: LoadedModel, inputs: tuple[InputSpec, ...], *, batch: int, seed: int) -> LoadedModel:
    """A model whose layers appear only when it first runs (a subclassed model whose build() makes
    them, as keras-io's Perceiver does): call it once on symbolic inputs, which builds it, then
    list its attention layers again."""
    keras = loaded.keras
    with native_output_silenced(), warnings.catch_warnings(), _model_rejects(inputs):
        warnings.simplefilter("ignore")
        if is_keras2(keras):  # tf_keras builds on a real call (no memory guard before it here)
            loaded.model(_structured(loaded.model, _drawn(loaded, inputs, batch, seed)), training=False)
        else:  # symbolic: __call__ builds the model on shapes alone, before the memory guard's estimate
            tensors = [keras.KerasTensor((None, *s.shape), dtype=s.dtype or "float32") for s in inputs]
            structured = _structured(loaded.model, tensors)
            keras.src.backend.compute_output_spec(lambda x: loaded.model(x, training=False), structured)
    return replace(loaded, attention_layers=_attention_layers(keras, loaded.model))


def _drawn(loaded: LoadedModel, inputs: tuple[InputSpec, ...], batch: int, seed: int) -> list[Any]:
    """Random inputs of the model's input shapes, as real_calls describes them."""
    keras = loaded.keras
    rng = np.random.default_rng(seed)
    vocabularies = [
        int(layer.input_dim)
        for layer in loaded.model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Embedding)
    ]
    highest = max(1, min([_MAX_TOKEN, *(size - 1 for size in vocabularies)]))
    tensors = []
    for spec in inputs:
        dtype = spec.dtype or "float32"
        shape = (batch, *(size for size in spec.shape if size is not None))  # resolved: all known
        if "int" in dtype:
            drawn: np.ndarray = rng.integers(1, highest + 1, size=shape)
        elif dtype == "bool":
            drawn = np.ones(shape, dtype=bool)
        else:
            drawn = rng.standard_normal(shape)
        tensors.append(_to_tensor(keras, drawn, dtype))
    return tensors


def _serialized_nodes(model: Any) -> dict[str, list[Any]]:
    """Each layer's ``inbound_nodes`` in the model's get_config(), by layer name, nested models included.

    A name found twice (layers of two nested models) is left out rather than guessed.
    A model that cannot serialize its graph (subclassed) has none.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = model.get_config()
    except Exception:
        return {}
    found: dict[str, list[Any]] = {}
    twice: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str) and isinstance(value.get("inbound_nodes"), list):
                if name in found:
                    twice.add(name)
                found[name] = value["inbound_nodes"]
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config)
    return {name: nodes for name, nodes in found.items() if name not in twice}
