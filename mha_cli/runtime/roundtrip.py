"""A real round trip through a converter: the layer converted, run in the target's runtime, compared.

The layer of one configuration is built in a functional model (its query, value, key and
attention_mask as the model's inputs, use_causal_mask in the call), its weights drawn from the seed,
and run by Keras on drawn inputs; then converted (ONNX: Keras's own ``model.export(format="onnx")``,
which uses tf2onnx, run by ONNX Runtime; LiteRT: TensorFlow's TFLite converter, run by its
interpreter) and run on the same inputs. Runs in a process of its own (operations/roundtrip.py),
so a converter that hangs is stopped by its timeout and one that crashes takes nothing with it.

For a model's call (``scan --targets --run``), ``given`` holds what that call received (query, value,
key, the attention_mask Keras combined) and its layer's weights by short name ("query/kernel"): the
layer is built alone from the call's configuration, given those weights, and run on those inputs.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mha_cli.core.derived import Derived
from mha_cli.core.kinds import KINDS
from mha_cli.runtime.keras_adapter import load_keras
from mha_cli.runtime.quiet import native_output_silenced

#: What each target needs installed, and how to install it.
NEEDS = {"tf2onnx": ("onnxruntime", "pip install 'mha-explain[targets]'"), "litert-float": ("tensorflow", "")}
TARGETS = tuple(NEEDS)


def _model(
    keras: Any, d: Derived, rng: np.random.Generator, given: dict[str, np.ndarray] | None = None
) -> tuple[Any, dict[str, np.ndarray]]:
    """The layer in a functional model with a fixed batch, its weights drawn (or ``given``), and drawn
    inputs (or ``given``: a model's call)."""
    config = d.config
    batch = config.batch if given is None else int(given["query"].shape[0])
    names = ["query"]
    if config.value_shape is not None:
        names.append("value")
    if config.key_shape is not None:
        names.append("key")
    tensors = {name: keras.Input(d.inputs[name].shape[1:], batch_size=batch, name=name) for name in names}
    if given is not None:
        arrays = {name: given[name].astype("float32") for name in names}
    else:
        arrays = {
            name: rng.standard_normal(d.inputs[name].with_batch(batch)).astype("float32") for name in names
        }
    call: dict[str, Any] = {}
    if given is not None and given.get("attention_mask") is not None:
        shape = tuple(given["attention_mask"].shape)
        tensors["attention_mask"] = keras.Input(batch_shape=shape, name="attention_mask", dtype="bool")
        arrays["attention_mask"] = given["attention_mask"].astype(bool)
        call["attention_mask"] = tensors["attention_mask"]
    elif config.mask_shape is not None:  # a shorter mask gains the batch axis in front: it broadcasts alike
        stated = tuple(batch if size is None else size for size in config.mask_shape)
        full = len(stated) == len(d.shapes["attention_scores"].shape) - (
            "heads" in d.shapes["attention_scores"].labels
        )
        shape = (batch, *stated[1:]) if full else (batch, *stated)
        tensors["attention_mask"] = keras.Input(batch_shape=shape, name="attention_mask", dtype="bool")
        arrays["attention_mask"] = rng.random(shape) < 0.8
        call["attention_mask"] = tensors["attention_mask"]
    if config.causal:
        call["use_causal_mask"] = True
    layer = getattr(keras.layers, KINDS[d.kind].keras_class)(**KINDS[d.kind].keras_kwargs(d))
    query = tensors["query"]
    output = layer(query, tensors.get("value", query), key=tensors.get("key"), **call)
    model = keras.Model(list(tensors.values()), output)
    for variable in layer.weights:
        if given is None:
            variable.assign(rng.normal(0.0, 0.5, tuple(variable.shape)).astype("float32"))
            continue
        name = "/".join(variable.path.split("/")[-2:])
        if name not in given or tuple(given[name].shape) != tuple(variable.shape):
            raise ValueError(f"the call's layer has no weight {name} of shape {tuple(variable.shape)}")
        variable.assign(given[name].astype("float32"))
    return model, arrays


def round_trip(
    d: Derived, target: str, seed: int = 0, given: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """``target``'s verdict on ``d``: converted and run, or why not (status, max |diff|, one line);
    with ``given``, on a model's call's inputs and weights (see the module's docstring)."""
    module, install = NEEDS[target]
    if importlib.util.find_spec(module) is None:
        return {"status": "not installed", "detail": f"needs {module}: {install}"}
    keras = load_keras("tensorflow")
    rng = np.random.default_rng(seed)
    with native_output_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the layer in Keras: an error here is not the converter's
            model, arrays = _model(keras, d, rng, given)
            expected = np.asarray(model.predict(list(arrays.values()), verbose=0), dtype="float64")
        except Exception as error:
            return {
                "status": "not run",
                "detail": f"Keras could not run the layer this way: {_one_line(error)}",
            }
        try:
            got = _onnx(model, arrays) if target == "tf2onnx" else _litert(model, arrays)
        except Exception as error:  # the converter's or the runtime's own refusal, in one line
            return {"status": "failed", "detail": _one_line(error)}
    difference = float(np.abs(np.asarray(got, dtype="float64") - expected).max())
    return {"status": "ran", "max_abs_diff": difference, "detail": ""}


def save_given(path: Path, given: Mapping[str, np.ndarray]) -> None:
    """A model's call's inputs and weights for the round trip's process: plain arrays in an .npz."""
    arrays: dict[str, Any] = {name: np.asarray(array) for name, array in given.items()}
    np.savez(path, **arrays)


def load_given(path: str) -> dict[str, np.ndarray]:
    """A model's call's inputs and weights, as operations/roundtrip.py saved them (no pickles read)."""
    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}


def _one_line(error: Exception) -> str:
    """The converter's own words in one line: MLIR's first ``error:`` without its locations (and its
    error code), else the message's first line."""
    text = str(error)
    failing = next((line for line in text.splitlines() if " error: " in line), None)
    if failing is not None and "): " in failing:
        words = failing.rsplit("): ", 1)[1].strip()
        code = re.search(r"Error code: (\w+)", text)
        return f"{type(error).__name__}: {words}" + (f" ({code.group(1)})" if code else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _onnx(model: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "layer.onnx"
        model.export(str(path), format="onnx", verbose=False)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fed = {node.name: arrays[name] for node, name in zip(session.get_inputs(), arrays, strict=True)}
    return np.asarray(session.run(None, fed)[0])


def _litert(model: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    import tensorflow as tf

    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = tf.lite.Interpreter(model_content=blob)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    by_name = {detail["name"].split(":")[0].removeprefix("serving_default_"): detail for detail in details}
    for name, array in arrays.items():
        detail = by_name.get(name) or details[list(arrays).index(name)]
        interpreter.set_tensor(detail["index"], array.astype(detail["dtype"]))
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
