"""The one module that touches Keras.

Everything that needs the real layer lives here behind a small interface:
:func:`load_keras` (backend selection, quiet import) and :func:`run_layer`
(build, forward pass, symbolic call, and reading the layer's own equations,
weights and intermediate shapes). A second backend or Keras version changes
this module only. Keras is imported lazily, inside these functions.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import numpy as np

from mha_cli.core.config import BACKENDS, ExecutionPath
from mha_cli.core.derived import Derivation, Derived
from mha_cli.core.errors import ConfigError, EnvironmentProblem, InternalError
from mha_cli.core.grammar import format_shape
from mha_cli.core.kinds import KINDS, kind_of
from mha_cli.core.limits import ONEDNN_MAX_SOFTMAX_RANK
from mha_cli.runtime.quiet import native_output_silenced, sigint_ends, sigint_held

#: What to install for each backend. Keras's numpy backend imports scipy and jax
#: (keras/src/backend/numpy/linalg.py, nn.py); jax brings scipy, but a fresh
#: environment without either reports scipy first.
_PIP_NAME = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "jax scipy"}
#: The layer's EinsumDense sublayers, by the einsum step they run.
_SUBLAYERS = {
    "query": "_query_dense",
    "key": "_key_dense",
    "value": "_value_dense",
    "gate": "_gate_dense",  # Keras >= 3.14, with use_gate only
    "output": "_output_dense",
}


@dataclass(frozen=True)
class LayerRun:
    """What the real layer reported for one configuration."""

    keras_version: str
    backend: str
    #: True for a forward pass; False when the layer was only built (inspect_layer).
    executed: bool
    #: The attended axes the built layer holds; None for a layer without attention_axes (GroupQueryAttention).
    resolved_axes: tuple[int, ...] | None
    #: Concrete shapes seen in the forward pass (batch is the real batch size);
    #: without one, only ``output`` from compute_output_shape.
    shapes: dict[str, tuple[int, ...]]
    #: The einsum equations the built layer holds.
    equations: dict[str, str]
    #: Weight shapes by Keras path without the layer name, e.g. "query/kernel".
    weights: dict[str, tuple[int, ...]]
    #: Shapes from calling the layer on keras.Input (the model.summary() path); empty when Keras's
    #: symbolic call refused what the forward pass ran (``symbolic_refusal`` says why).
    symbolic: dict[str, tuple[int | None, ...]]
    #: Inputs as fed, weights, output and scores, all as float64 numpy arrays (empty without a forward pass);
    #: with the execution path observed, also ``output_without_scores``, that call's output.
    arrays: dict[str, np.ndarray]
    #: The path a call without return_attention_scores took, as observed (None when not observed).
    execution_path: ExecutionPath | None = None
    #: The built layer's get_config(), as JSON values (a Keras 2 TensorShape becomes a list).
    layer_config: dict[str, Any] = field(default_factory=dict)
    #: Each weight's whole Keras variable path by its short name ("query/kernel" ->
    #: "multi_head_attention/query/kernel"); Keras 2's variable name without ":0".
    variable_paths: dict[str, str] = field(default_factory=dict)
    #: With ``intermediates``: the tensors inside the forward pass with scores, as float64 arrays
    #: (see INTERMEDIATES); empty otherwise.
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    #: Keras's own words when its symbolic call refused a configuration its forward pass ran.
    symbolic_refusal: str | None = None

    #: What ``intermediates`` holds, in the order the layer computes it, and what each is.
    INTERMEDIATES: ClassVar[dict[str, str]] = {
        "query_projected": "query through the query projection (query/kernel, query/bias), before scaling",
        "key_projected": "key through the key projection",
        "value_projected": "value through the value projection",
        "key_repeated": "GroupQueryAttention: the projected key repeated num_query_heads // "
        "num_key_value_heads times along the heads axis (ops.repeat, axis 2), as the dot product reads it",
        "value_repeated": "GroupQueryAttention: the projected value repeated likewise, for the combine",
        "gate": "sigmoid of the gate projection of query (use_gate only)",
        "attention_logits": "scores before the softmax: the projected query times 1/sqrt(key_dim), "
        "dotted with the projected key; the mask is not applied yet",
        "softmax_mask": "the boolean mask the softmax applied (True: attend), after Keras combined "
        "attention_mask, use_causal_mask and its implicit masks; heads not expanded yet",
        "attention_output": "the scores (after the softmax) combined with the projected value, "
        "before the gate and the output projection",
        "output_projection_input": "what the output projection received: attention_output times gate "
        "(use_gate only)",
    }
    #: The arrays the layer computed; every other one was fed to it (inputs, mask, weights).
    COMPUTED: ClassVar[tuple[str, ...]] = ("output", "attention_scores", "output_without_scores")

    def fed(self) -> dict[str, np.ndarray]:
        """The inputs, mask and weights the layer was given, as float64 arrays."""
        return {name: array for name, array in self.arrays.items() if name not in self.COMPUTED}


def load_keras(backend: str, major: int = 3) -> ModuleType:
    """Import Keras on ``backend``, silencing native log noise (``major`` 2: tf_keras, TensorFlow only).

    Keras binds its backend at import, so a process can only ever use one.
    Keras 2 and Keras 3 on TensorFlow share one process.
    """
    if major == 2:
        return _load_keras2(backend)
    if backend not in BACKENDS:
        raise ConfigError("--backend", backend, f"unknown backend; choose one of {', '.join(BACKENDS)}")
    loaded = sys.modules.get("keras")
    if loaded is not None:
        active = loaded.backend.backend()
        if active != backend:
            raise EnvironmentProblem(
                f"--backend {backend}: Keras is already running on {active} in this process "
                "(Keras binds its backend at import); run a new process"
            )
        return loaded
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with sigint_ends(), native_output_silenced():  # Ctrl-C here: exit 130 at once, nothing lost
            keras = importlib.import_module("keras")
    except ImportError as error:
        missing = getattr(error, "name", None) or str(error)
        package = "keras" if missing == "keras" else _PIP_NAME[backend]
        raise EnvironmentProblem(
            f"--backend {backend}: cannot import {missing} ({error}); install it with: pip install {package}"
        ) from error
    return keras


def _check_supported(keras: ModuleType, derivation: Derived) -> None:
    if is_keras2(keras):  # derive refuses what Keras 2 lacks (use_gate, sliding_window)
        return
    parameters = inspect.signature(
        getattr(keras.layers, KINDS[derivation.kind].keras_class).__init__
    ).parameters
    if derivation.layer.use_gate and "use_gate" not in parameters:
        raise ConfigError(
            "--gate",
            None,
            f"the installed Keras {keras.__version__} has no use_gate (added in Keras 3.14); "
            "upgrade Keras or leave out --gate",
        )
    if derivation.layer.sliding_window is not None and "sliding_window" not in parameters:
        raise ConfigError(
            "--sliding-window",
            derivation.layer.sliding_window,
            f"the installed Keras {keras.__version__} has no sliding_window (added in Keras 3.15); "
            "upgrade Keras or leave it out",
        )


_softmax_rank_limits: dict[str, int | None] = {}


def softmax_rank_limit(dtype: str) -> int | None:
    """The highest rank TensorFlow's Softmax accepts in ``dtype`` here, or None for no limit.

    Probed once per dtype on a tiny tensor, because whether oneDNN runs depends
    on the CPU, the TensorFlow build and TF_ENABLE_ONEDNN_OPTS.
    """
    if dtype not in _softmax_rank_limits:
        import tensorflow as tf

        probe = tf.ones((1,) * (ONEDNN_MAX_SOFTMAX_RANK + 1), dtype=dtype)
        try:
            with native_output_silenced():
                tf.nn.softmax(probe)
            _softmax_rank_limits[dtype] = None
        except tf.errors.OpError:  # AbortedError in TF 2.21: "Input dims must be <= 5"
            _softmax_rank_limits[dtype] = ONEDNN_MAX_SOFTMAX_RANK
    return _softmax_rank_limits[dtype]


def _check_backend_limits(derivation: Derived, backend: str) -> None:
    KINDS[derivation.kind].check_backend(derivation, backend)
    if backend != "tensorflow":
        return
    attended = derivation.layer.attention_axes
    given_axes = derivation.config.attention_axes if isinstance(derivation, Derivation) else None
    given = format_shape(given_axes or attended)
    scores_rank = len(derivation.shapes["attention_scores"].shape)
    # Probe only when the limit could matter: a single axis, scores above rank 5.
    single_axis_over = len(attended) == 1 and scores_rank > ONEDNN_MAX_SOFTMAX_RANK
    limit = softmax_rank_limit(derivation.layer.dtype) if single_axis_over else None
    if limit is not None and scores_rank > limit:
        # Which dtypes escape oneDNN depends on the CPU (float16 does on some, not on others): probed.
        free = [d for d in ("float64", "float32", "float16", "bfloat16") if softmax_rank_limit(d) is None]
        dtypes = f"use dtype {' or '.join(free)}, or " if free else ""
        raise ConfigError(
            "--axes",
            given,
            f"the attention scores would have rank {scores_rank}; this TensorFlow runs Softmax with "
            f"oneDNN, which takes at most rank {limit} in {derivation.layer.dtype}, so the real layer "
            f"fails here: set TF_ENABLE_ONEDNN_OPTS=0, or {dtypes}attend over more axes, or use another "
            "backend",
        )


def known_wrong_results(derivation: Derived, backend: str) -> tuple[str, ...]:
    """Projections whose bias the installed Keras adds along the wrong axis.

    Keras's TensorFlow ``ops.add`` routes a bias that squeezes to one vector
    through ``tf.nn.bias_add`` (keras-team/keras#20386), and EinsumDense adds
    its bias with ``ops.add`` (#21299). When that vector's length differs from
    the last axis but equals axis 1, it picks NCHW and adds the bias along axis
    1: for MHA, a (num_heads, 1) bias when key_dim or value_dim is 1 and axis 1
    has num_heads positions. Shapes are right; numbers are not (measured,
    Keras 3.15.1, TF 2.21). This mirrors that condition.
    """
    if backend != "tensorflow" or not derivation.layer.use_bias or derivation.config.keras == 2:
        return ()
    einsum_of = {"attention_output": "output"}
    found = []
    for weight in derivation.weights:
        if weight.bias is None:
            continue
        result = derivation.einsums[einsum_of.get(weight.projection, weight.projection)].result.shape
        squeezed = [size for size in weight.bias if size > 1]
        if len(squeezed) == 1 and squeezed[0] != result[-1] and squeezed[0] == result[1]:
            found.append(
                f"the {weight.projection} bias {format_shape(weight.bias)} is added along axis 1 "
                f"(size {result[1]}) instead of its own axes"
            )
    return tuple(found)


F = TypeVar("F", bound=Callable[..., Any])


def uninterrupted(function: F) -> F:
    """Run ``function`` with Ctrl-C held back until it returns.

    A KeyboardInterrupt cutting through TensorFlow's import or Keras's lazy
    imports can crash the process or leave half-imported modules (measured:
    a segfault, "initialization failed", an AttributeError). These calls are
    bounded by the memory guard, so Ctrl-C is answered right after, with exit 130.
    """

    @functools.wraps(function)
    def held(*args: Any, **kwargs: Any) -> Any:
        with sigint_held():
            return function(*args, **kwargs)

    return held  # type: ignore[return-value]


@uninterrupted
def run_layer(
    derivation: Derived,
    backend: str,
    *,
    observe_path: bool = False,
    intermediates: bool = False,
    weights: Mapping[str, np.ndarray] | None = None,
) -> LayerRun:
    """Build the real layer, run it forward and symbolically, and read it back.

    With ``observe_path``, also call it once without return_attention_scores
    to see which execution path Keras takes (one more forward pass). With
    ``intermediates``, keep the tensors inside the forward pass (LayerRun.INTERMEDIATES).
    ``weights`` (by short name, "query/kernel") replaces the drawn weights, e.g.
    weights mapped from PyTorch; the inputs and mask are drawn as always.
    """
    keras = _prepared(derivation, backend)
    with native_output_silenced():
        return _run(keras, derivation, backend, observe_path, intermediates, weights)


@uninterrupted
def inspect_layer(derivation: Derived, backend: str) -> LayerRun:
    """Build the real layer without running it forward (for configurations too big to run).

    Reads back what needs no tensor beyond the weights, whose size does not
    depend on the attended sizes: the resolved axes, the einsum equations, the
    weight shapes, ``compute_output_shape`` and the symbolic (keras.Input) call.
    """
    keras = _prepared(derivation, backend)
    config = derivation.config
    query, value, key = (derivation.inputs[name].with_batch(config.batch) for name in _INPUTS)
    shapes = (query, value, None if config.key_shape is None else key)
    with native_output_silenced():
        layer = _built_layer(keras, derivation, *shapes)
        try:
            with keras_rejects():
                reported = {"output": tuple(layer.compute_output_shape(*shapes))}
        except ConfigError:
            # GroupQueryAttention's compute_output_shape refuses query and value widths that differ,
            # which its call runs (and the symbolic check reports); anything else is a refusal.
            if derivation.inputs["query"].shape[-1] == derivation.inputs["value"].shape[-1]:
                raise
            reported = {}
        return _read_back(keras, layer, derivation, backend, reported, {}, executed=False)


def _load_keras2(backend: str) -> ModuleType:
    if backend != "tensorflow":
        raise ConfigError(
            "--keras", 2, f"Keras 2 (tf_keras) runs on TensorFlow only, not {backend}; leave out --backend"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with sigint_ends(), native_output_silenced():  # Ctrl-C here: exit 130 at once, nothing lost
            return importlib.import_module("tf_keras")
    except ImportError as error:
        raise EnvironmentProblem(
            f"--keras 2: cannot import tf_keras ({error}); install Keras 2 for your TensorFlow with: "
            "pip install 'mha-explain[keras2]' (or pip install tf-keras==<your TensorFlow's version>)"
        ) from error


def is_keras2(keras: ModuleType) -> bool:
    return keras.__name__ == "tf_keras"


def _to_tensor(keras: ModuleType, value: Any, dtype: str | None = None) -> Any:
    if is_keras2(keras):
        import tensorflow as tf

        return tf.convert_to_tensor(value, dtype=dtype)
    return keras.ops.convert_to_tensor(value, dtype=dtype)


def _to_numpy(keras: ModuleType, tensor: Any) -> np.ndarray:
    if is_keras2(keras):
        return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _variable_path(variable: Any) -> str:
    """``.../query/kernel``: Keras 3's ``path``, or Keras 2's name without its ``:0``."""
    path = getattr(variable, "path", None)
    return str(path) if isinstance(path, str) else str(variable.name).split(":")[0]


def _variable_array(keras: ModuleType, variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy()) if is_keras2(keras) else _to_numpy(keras, variable.value)


def _resolved_axes(keras: ModuleType, layer: Any, rank: int) -> tuple[int, ...] | None:
    """The attended input axes the built layer holds (Keras 2 keeps negatives, on the projected rank);
    None for a layer that has no attention_axes (GroupQueryAttention attends over axis 1 by its equations)."""
    if not hasattr(layer, "attention_axes") and not hasattr(layer, "_attention_axes"):
        return None
    if not is_keras2(keras):
        return tuple(int(axis) for axis in layer.attention_axes)
    return tuple(int(axis) + rank + 1 if axis < 0 else int(axis) for axis in layer._attention_axes)


def _prepared(derivation: Derived, backend: str) -> ModuleType:
    keras = load_keras(backend, derivation.config.keras)
    _check_supported(keras, derivation)
    _check_backend_limits(derivation, backend)
    return keras


@contextmanager
def keras_rejects(refusal: Callable[[str | None, str], ConfigError] | None = None) -> Iterator[None]:
    """Turn the layer's own refusals into ConfigError, around Keras calls only.

    ``refusal`` words the error from where Keras failed (``"Reshape.call()"``, or None) and its
    reason, for a forward pass through more than the one layer (a model's). Kept narrow so a bug
    in this module still surfaces as an internal error.
    """
    worded = refusal or _layer_rejects
    try:
        yield
    except (ValueError, TypeError, IndexError) as error:
        raise worded(*keras_reason(error)) from error
    except Exception as error:
        # Backend op errors (tf.errors.InvalidArgumentError...) have no
        # common base class in Keras.
        if type(error).__module__.startswith(("tensorflow", "jax", "torch")):
            raise worded(*keras_reason(error)) from error
        raise


def keras_reason(error: Exception) -> tuple[str | None, str]:
    """Where Keras says it failed (``"Reshape.call()"``, None if it does not say) and why, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # Keras wraps errors as "Exception encountered when calling X.call().\n\n<reason>".
    wrapped = next((line for line in lines if line.startswith("Exception encountered when calling ")), None)
    where = (
        None if wrapped is None else wrapped.removeprefix("Exception encountered when calling ").rstrip(".")
    )
    reason = next(
        (line for line in lines if not line.startswith("Exception encountered")), type(error).__name__
    )
    return where, reason.replace("\x1b[1m", "").replace("\x1b[0m", "")


def _layer_rejects(where: str | None, reason: str) -> ConfigError:
    return ConfigError("keras", None, f"the real layer rejects this configuration: {reason}")


_INPUTS = ("query", "value", "key")


def _built_layer(keras: Any, derivation: Derived, *input_shapes: tuple[int, ...] | None) -> Any:
    """The layer as the user would construct it, built for (query, value, key) shapes."""
    with keras_rejects():
        kind = KINDS[derivation.kind]
        layer = getattr(keras.layers, kind.keras_class)(
            **kind.keras_kwargs(derivation),
            kernel_initializer="zeros",  # every weight is assigned before a forward pass
            bias_initializer="zeros",
            # One name in every process, so weight paths ("multi_head_attention/query/kernel",
            # in test vectors) do not depend on how many layers were built before: Keras's own
            # first name for the class (grouped_query_attention for GroupQueryAttention).
            name=re.sub(r"(?<!^)(?=[A-Z])", "_", kind.saved_class).lower(),
        )
        if is_keras2(keras):
            # Keras 2's MultiHeadAttention builds its projections on the first call, not in build():
            # one call on zeros creates every weight (their values are assigned before each run).
            import tensorflow as tf

            query, value, key = (
                None if shape is None else tf.zeros(shape, derivation.layer.dtype) for shape in input_shapes
            )
            layer(query, value, key=key)
        else:
            layer.build(*input_shapes)
    return layer


#: Built layers, reused by later runs in the same process (check and the pytest
#: plugin run many cases in one): building costs more than the forward pass,
#: 21 of 37 ms for a small case (measured, Keras 3.15.1 on TensorFlow).
_built: OrderedDict[Hashable, Any] = OrderedDict()
_REUSE_MAX_LAYERS = 32
#: Larger layers are built afresh every time, so kept layers hold at most
#: _REUSE_MAX_LAYERS x this much memory, beyond what the memory guard counts.
_REUSE_MAX_WEIGHT_BYTES = 8 * 2**20


def build_signature(derivation: Derived) -> Hashable:
    """What ``MultiHeadAttention.build`` depends on: layers with equal signatures are interchangeable.

    Build reads only the constructor arguments and the inputs' ranks and last
    axes (and checks that key and value agree on the axes between, which
    ``derive`` has already required): equal signatures build the same
    sublayers, equations and weight shapes, whatever the batch and attended
    sizes (Keras 3.12 to 3.15).
    """
    kind = KINDS[derivation.kind]
    arguments = kind.keras_kwargs(derivation)
    inputs = (derivation.inputs[name].shape for name in ("query", "value", "key"))
    keras = derivation.config.keras
    signature = (keras, repr(sorted(arguments.items())), *((len(shape), shape[-1]) for shape in inputs))
    return signature if kind.name == "mha" else (kind.name, *signature)


def _reusable_layer(keras: Any, derivation: Derived, *input_shapes: tuple[int, ...] | None) -> Any:
    """A layer built for these inputs: one built earlier in this process if its build_signature is equal.

    Users call one layer on inputs of several lengths in just this way. Every
    run assigns all weights, so nothing carries over from an earlier case; a
    property test checks that a reused layer reports exactly what a fresh one does.
    """
    if derivation.weights_bytes() > _REUSE_MAX_WEIGHT_BYTES:
        return _built_layer(keras, derivation, *input_shapes)
    signature = build_signature(derivation)
    layer = _built.get(signature)
    if layer is None:
        layer = _built[signature] = _built_layer(keras, derivation, *input_shapes)
        if len(_built) > _REUSE_MAX_LAYERS:
            _built.popitem(last=False)
    _built.move_to_end(signature)
    return layer


def _run(
    keras: Any,
    derivation: Derived,
    backend: str,
    observe_path: bool,
    intermediates: bool,
    given: Mapping[str, np.ndarray] | None = None,
) -> LayerRun:
    config = derivation.config
    dtype = derivation.layer.dtype
    # Inputs and weights come from one NumPy generator, not Keras's seeded
    # initializers: keras.utils.set_random_seed costs ~10 ms per call (measured,
    # Keras 3.15.1), a third of a small case in `check`.
    rng = np.random.default_rng(config.seed)

    def draw(name: str) -> Any:
        shape = derivation.inputs[name].with_batch(config.batch)
        return _to_tensor(keras, rng.standard_normal(shape), dtype)

    # Called as users call it: layer(x, x) for self-attention, key only when given.
    query = draw("query")
    value = query if config.value_shape is None else draw("value")
    key = None if config.key_shape is None else draw("key")
    layer = _reusable_layer(keras, derivation, query.shape, value.shape, None if key is None else key.shape)
    expected = len(_sublayers(layer)) * (2 if derivation.layer.use_bias else 1)
    if len(layer.weights) != expected:  # a weight left unassigned would pass every check with zeros
        raise InternalError(
            f"the built layer holds {len(layer.weights)} weights, not the {expected} expected"
        )
    for variable in layer.weights:
        drawn = _random_weight(rng, _variable_path(variable), tuple(variable.shape))
        if given is not None:  # drawn all the same, so the inputs after them do not change
            drawn = np.asarray(given["/".join(_variable_path(variable).split("/")[-2:])])
            if drawn.shape != tuple(variable.shape):
                raise InternalError(
                    f"{_variable_path(variable)}: given {drawn.shape}, held {tuple(variable.shape)}"
                )
        # Keras 3 converts to the variable's dtype; Keras 2's assign wants that dtype already.
        variable.assign(_to_tensor(keras, drawn, variable.dtype.name) if is_keras2(keras) else drawn)
    # The call's masks: a random attention_mask (3 in 4 positions attend) and/or use_causal_mask.
    masks: dict[str, Any] = {"use_causal_mask": True} if config.causal else {}
    if config.mask_shape is not None:
        mask_shape = tuple(config.batch if size is None else size for size in config.mask_shape)
        masks["attention_mask"] = _to_tensor(keras, rng.random(mask_shape) < 0.75)
    inputs = (query, value, key)
    return _forward(keras, layer, layer, derivation, backend, inputs, masks, observe_path, intermediates)


def _forward(
    keras: Any,
    layer: Any,
    invoke: Callable[..., Any],
    derivation: Derived,
    backend: str,
    inputs: tuple[Any, Any, Any],
    masks: dict[str, Any],
    observe_path: bool,
    intermediates: bool = False,
    observed: tuple[ExecutionPath, np.ndarray] | None = None,
) -> LayerRun:
    """Call ``layer`` through ``invoke`` with scores (and, observing the path, without), and read it back.

    ``observed``: the path and output of a call without scores that was already made on these
    inputs (the user's own, mha_cli.explain(layer, ...)): used instead of making one more.
    """
    query, value, key = inputs
    inside: dict[str, Any] = {}
    attended: dict[str, Any] = {}
    with (
        _recording_sublayers(layer) as seen,
        _inside_attention(layer, inside, attended, intermediates),
        keras_rejects(),
    ):
        output, scores = invoke(query, value, key=key, return_attention_scores=True, training=False, **masks)
    path, output_without_scores = (
        observed
        if observed is not None
        else _observed_path(layer, invoke, query, value, key, masks)
        if observe_path
        else (None, None)
    )
    shapes = {f"{step}_projected": tuple(seen[step][1].shape) for step in ("query", "key", "value")}
    if "gate" in seen:
        shapes["gate"] = tuple(seen["gate"][1].shape)
    # The output projection's input is the attention output (after the gate).
    if "key_repeated" in derivation.shapes:  # GroupQueryAttention: what the attention saw, after ops.repeat
        shapes.update(
            key_repeated=tuple(attended["key"].shape), value_repeated=tuple(attended["value"].shape)
        )
    shapes.update(
        attention_output=tuple(seen["output"][0].shape),
        attention_scores=tuple(scores.shape),
        output=tuple(output.shape),
    )
    tensors = {"query": query, "value": value, "key": value if key is None else key}
    tensors.update(output=output, attention_scores=scores)
    if "attention_mask" in masks:
        tensors["attention_mask"] = masks["attention_mask"]
    if output_without_scores is not None:
        tensors["output_without_scores"] = output_without_scores
    run = _read_back(keras, layer, derivation, backend, shapes, tensors, executed=True)
    kept = {}
    if intermediates:
        kept = {f"{step}_projected": seen[step][1] for step in ("query", "key", "value")}
        if "gate" in seen:
            kept["gate"] = seen["gate"][1]
        kept.update(inside)
        if "key_repeated" in derivation.shapes:
            kept.update(key_repeated=attended["key"], value_repeated=attended["value"])
        if "gate" in seen:
            kept["output_projection_input"] = seen["output"][0]
        kept = {name: kept[name] for name in LayerRun.INTERMEDIATES if kept.get(name) is not None}
    return replace(
        run,
        execution_path=path,
        intermediates={name: _to_numpy(keras, tensor).astype(np.float64) for name, tensor in kept.items()},
    )


@contextmanager
def _inside_attention(
    layer: Any, kept: dict[str, Any], attended: dict[str, Any], wanted: bool
) -> Iterator[None]:
    """Record the shapes of the key and value the attention itself receives (``attended``), and with
    ``wanted`` keep the scores before the softmax, the mask it applies, and the attention output.

    Wraps the layer's ``_compute_attention`` (called with the projected query,
    key and value, after GroupQueryAttention's repeat, and returning the
    attention output before the output projection) and ``_masked_softmax``
    (called with the logits and the combined mask), for this layer object
    only: the same private methods Keras 2.21 and Keras 3.12 to 3.15 call on
    the path with scores, in MultiHeadAttention and GroupedQueryAttention alike.
    """

    def masked_softmax(*args: Any, _original: Any = layer._masked_softmax, **kwargs: Any) -> Any:
        given = dict(zip(("attention_scores", "attention_mask"), args, strict=False)) | kwargs
        kept["attention_logits"] = given["attention_scores"]
        kept["softmax_mask"] = given.get("attention_mask")
        return _original(*args, **kwargs)

    def compute_attention(*args: Any, _original: Any = layer._compute_attention, **kwargs: Any) -> Any:
        given = dict(zip(("query", "key", "value"), args, strict=False)) | kwargs
        attended.update(key=given["key"], value=given["value"])
        result = _original(*args, **kwargs)
        if wanted:
            kept["attention_output"] = result[0]
        return result

    layer._compute_attention = compute_attention
    if wanted:
        layer._masked_softmax = masked_softmax
    try:
        yield
    finally:
        del layer._compute_attention
        if wanted:
            del layer._masked_softmax


@uninterrupted
def run_captured(
    layer: Any,
    derivation: Derived,
    backend: str,
    arrays: dict[str, np.ndarray | None],
    *,
    causal: bool,
    base_call: bool,
    intermediates: bool = False,
    observed: tuple[ExecutionPath, np.ndarray] | None = None,
) -> LayerRun:
    """A model's own layer, on the inputs one of its calls received (``arrays``), read back as run_layer does.

    ``arrays`` holds ``query``, ``value``, ``key`` (None: the call gave none)
    and the ``attention_mask`` Keras combined for that call (explicit, implicit
    and causal masks ANDed), when there was one. With ``base_call``, the call
    is the kind's own class's (MultiHeadAttention.call, GroupQueryAttention.call), for a subclass
    that overrides it. ``observed``: that call's own path and output, when it was made without scores
    by the kind's own call (see _forward), so it is not made again.
    """
    keras = load_keras(backend, derivation.config.keras)
    dtype = derivation.layer.dtype
    tensors = [
        None if arrays.get(name) is None else _to_tensor(keras, arrays[name], dtype) for name in _INPUTS
    ]
    masks: dict[str, Any] = {"use_causal_mask": True} if causal else {}
    if arrays.get("attention_mask") is not None:
        masks["attention_mask"] = _to_tensor(keras, arrays["attention_mask"])
    base = getattr(keras.layers, kind_of(derivation.config).keras_class)
    invoke = functools.partial(base.call, layer) if base_call else layer
    query, value, key = tensors
    with native_output_silenced():
        inputs = (query, value, key)
        return _forward(
            keras, layer, invoke, derivation, backend, inputs, masks, True, intermediates, observed
        )


def _observed_path(
    layer: Any, invoke: Callable[..., Any], query: Any, value: Any, key: Any, masks: dict[str, Any]
) -> tuple[ExecutionPath, Any]:
    """Call the layer as users mostly do, without scores: the path it took, and its output."""
    with path_observed(layer) as taken, keras_rejects():
        output = invoke(query, value, key=key, training=False, **masks)
    return taken(), output


@contextmanager
def path_observed(layer: Any) -> Iterator[Callable[[], ExecutionPath]]:
    """Watch this layer object's calls inside the block; the callable it gives says the path they took.

    Keras's einsum path goes through ``_masked_softmax``; the fused
    ``ops.dot_product_attention`` path does not (Keras 3.15).
    """
    softmaxed = []

    def masked_softmax(*args: Any, _original: Any = layer._masked_softmax, **kwargs: Any) -> Any:
        softmaxed.append(True)
        return _original(*args, **kwargs)

    layer._masked_softmax = masked_softmax
    try:
        yield lambda: ExecutionPath.EINSUM if softmaxed else ExecutionPath.FUSED
    finally:
        del layer._masked_softmax


def _read_back(
    keras: Any,
    layer: Any,
    derivation: Derived,
    backend: str,
    shapes: dict[str, tuple[int, ...]],
    tensors: dict[str, Any],
    *,
    executed: bool,
) -> LayerRun:
    """What the built layer holds (equations, weights, axes), its symbolic call, and arrays."""
    layer_config = _plain(layer.get_config())
    symbolic, rejected = _symbolic_call(keras, layer, derivation, layer_config, backend)
    refusal = None
    if rejected is not None:
        if not executed and "output" in shapes:  # nothing ran that Keras's refusal could contradict
            raise rejected
        # GroupQueryAttention's compute_output_shape demands query width == value width; its call does not.
        refusal = rejected.problem.removeprefix("the real layer rejects this configuration: ")
    equations = {step: sublayer.equation for step, sublayer in _sublayers(layer).items()}
    equations.update(dot_product=layer._dot_product_equation, combine=layer._combine_equation)

    def numpy64(tensor: Any) -> np.ndarray:
        # NumPy widens every float dtype (bfloat16 through ml_dtypes) exactly.
        return _to_numpy(keras, tensor).astype(np.float64)

    arrays = {name: numpy64(tensor) for name, tensor in tensors.items()}
    weights = {}
    paths = {}
    for variable in layer.weights:
        # "query/kernel": the sublayer and the variable, whatever the layer is nested in.
        name = "/".join(_variable_path(variable).split("/")[-2:])
        weights[name] = tuple(variable.shape)
        paths[name] = _variable_path(variable)
        if executed:
            arrays[name] = _variable_array(keras, variable).astype(np.float64)
    return LayerRun(
        keras_version=keras.__version__,
        backend=backend,
        executed=executed,
        resolved_axes=_resolved_axes(keras, layer, derivation.rank),
        layer_config=layer_config,
        variable_paths=paths,
        shapes=shapes,
        equations=equations,
        weights=weights,
        symbolic=symbolic,
        symbolic_refusal=refusal,
        arrays=arrays,
    )


#: Keras's symbolic answers by (class, config without the name, input shapes, Keras, backend): a pure
#: function of these, asked again for every call of the same layer (a notebook's explain in a loop, a
#: model's blocks), at the cost of a Keras call each time. Bounded: the oldest answer goes first.
_SYMBOLIC: dict[tuple[Any, ...], tuple[dict[str, tuple[int | None, ...]], tuple[str, Any, str] | None]] = {}
_SYMBOLIC_KEPT = 256


def _symbolic_call(
    keras: Any, layer: Any, derivation: Derived, layer_config: dict[str, Any], backend: str
) -> tuple[dict[str, tuple[int | None, ...]], ConfigError | None]:
    """The layer called on keras.Input with scores: the shapes it gives, or Keras's refusal."""
    config = derivation.config
    inputs = tuple(
        None if shape is None else derivation.inputs[name].shape[1:]
        for name, shape in (("value", config.value_shape), ("key", config.key_shape))
    )
    named = {name: value for name, value in layer_config.items() if name != "name"}
    cache_key = (
        type(layer),
        repr(sorted(named.items())),
        derivation.inputs["query"].shape[1:],
        inputs,
        keras.__version__,
        backend,
    )
    if cache_key in _SYMBOLIC:  # the refusal's words only: an error object would keep the layer alive
        known, words = _SYMBOLIC[cache_key]
        return known, None if words is None else ConfigError(*words)
    symbolic_query = keras.Input(shape=derivation.inputs["query"].shape[1:])
    symbolic_value = symbolic_query if inputs[0] is None else keras.Input(shape=inputs[0])
    symbolic_key = None if inputs[1] is None else keras.Input(shape=inputs[1])
    symbolic: dict[str, tuple[int | None, ...]] = {}
    rejected = None
    try:
        with keras_rejects():
            called = layer(symbolic_query, symbolic_value, key=symbolic_key, return_attention_scores=True)
        if isinstance(called, tuple | list):
            symbolic = {"output": tuple(called[0].shape), "attention_scores": tuple(called[1].shape)}
        else:  # GroupQueryAttention before Keras 3.15 returns the output alone (keras-team/keras#22642)
            symbolic = {"output": tuple(called.shape)}
    except ConfigError as error:
        rejected = error
    while len(_SYMBOLIC) >= _SYMBOLIC_KEPT:
        del _SYMBOLIC[next(iter(_SYMBOLIC))]
    words = None if rejected is None else (rejected.option, rejected.value, rejected.problem)
    _SYMBOLIC[cache_key] = (symbolic, words)
    return symbolic, rejected


def _plain(value: Any) -> Any:
    """A get_config() value as JSON values: tuples and TensorShapes become lists."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if hasattr(value, "as_list"):  # tf.TensorShape (Keras 2's query_shape, ...)
        return None if value.rank is None else value.as_list()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _random_weight(rng: np.random.Generator, path: str, shape: tuple[int, ...]) -> np.ndarray:
    """Distinct random values for every weight, so a swapped or misplaced one shows in the NumPy check.

    Kernels are N(0, 1/fan_in), keeping outputs O(1) like Keras's Glorot default;
    fan_in is the contracted axes: the features for the input projections,
    heads x value_dim for the output projection. Biases are N(0, 0.5), not
    Keras's zeros, so the bias adds are checked too.
    """
    if path.endswith("bias"):
        return rng.normal(0.0, 0.5, shape)
    contracted = shape[:2] if path.split("/")[-2] == "attention_output" else shape[:1]
    return rng.normal(0.0, 1.0 / np.sqrt(np.prod(contracted)), shape)


def _sublayers(layer: Any) -> dict[str, Any]:
    """The built layer's projections that exist, by einsum step."""
    found = {step: getattr(layer, attribute, None) for step, attribute in _SUBLAYERS.items()}
    return {step: sublayer for step, sublayer in found.items() if sublayer is not None}


@contextmanager
def _recording_sublayers(layer: Any) -> Iterator[dict[str, tuple[Any, Any]]]:
    """Wrap the projections' ``call`` so a forward pass inside reports their tensors.

    Keras has no forward hooks; an instance attribute shadows the method for
    this layer object only, and is removed on the way out (the layer may be
    reused). Records (input tensor, output tensor) by step, the last call's.
    """
    seen: dict[str, tuple[Any, Any]] = {}
    sublayers = _sublayers(layer)
    for step, sublayer in sublayers.items():

        def call(*args: Any, _call: Any = sublayer.call, _step: str = step, **kwargs: Any) -> Any:
            out = _call(*args, **kwargs)
            seen[_step] = (args[0], out)
            return out

        sublayer.call = call
    try:
        yield seen
    finally:
        for sublayer in sublayers.values():
            del sublayer.call


#: Keras's list-input attention layers, shown beside MultiHeadAttention by --graph.
_LIST_INPUT_LAYERS = {"attention": "Attention", "additive_attention": "AdditiveAttention"}


@uninterrupted
def call_convention(derivation: Derivation, backend: str) -> dict[str, dict[str, Any]]:
    """How a functional model records the call, read from the real ``Model.get_config()``.

    MultiHeadAttention is called as a user would, ``layer(query, value)`` (or
    ``layer(x, x)``, with ``key=key`` when a key is given); Attention and
    AdditiveAttention, where the inputs suit them, with their list
    ``[query, value]``. Each entry gives the call, and the ``args`` and
    ``kwargs`` of its inbound node with every tensor named by its input.
    """
    keras = load_keras(backend, derivation.config.keras)
    keras2 = is_keras2(keras)
    config = derivation.config
    shape_of = {name: derivation.inputs[name].shape[1:] for name in _INPUTS}
    # Keras 2 names inputs input_1, input_2, ... in a fresh session: seed 002's model, exactly.
    numbered = iter(f"input_{number}" for number in range(1, 5))

    def named(name: str) -> str:
        return next(numbered) if keras2 else name

    with native_output_silenced(), keras_rejects():
        if config.value_shape is None:
            query = value = keras.Input(shape=shape_of["query"], name=named("x"))
            inputs, arguments = [query], ["x, x"]
        else:
            query = keras.Input(shape=shape_of["query"], name=named("query"))
            value = keras.Input(shape=shape_of["value"], name=named("value"))
            inputs, arguments = [query, value], ["query, value"]
        keywords: dict[str, Any] = {}
        if config.key_shape is not None:
            keywords["key"] = keras.Input(shape=shape_of["key"], name=named("key"))
            inputs.append(keywords["key"])
            arguments.append("key=key")
        if config.mask_shape is not None:  # None in the mask's first axis is the batch, as in --mask-shape
            keywords["attention_mask"] = keras.Input(
                batch_shape=config.mask_shape, name=named("mask"), dtype="bool"
            )
            inputs.append(keywords["attention_mask"])
            arguments.append("attention_mask=mask")
        if config.causal:
            keywords["use_causal_mask"] = True
            arguments.append("use_causal_mask=True")
        call = f"layer({', '.join(arguments)})"
        layer = keras.layers.MultiHeadAttention(
            **derivation.layer.keras_kwargs(config.attention_axes), name="multi_head_attention"
        )
        outputs = [layer(query, value, **keywords)]
        calls = {"multi_head_attention": call}
        # Attention and AdditiveAttention take [batch, T, dim] query and [batch, S, dim] value.
        if derivation.rank == 3 and shape_of["query"][-1] == shape_of["value"][-1]:
            pair = [query, value]
            names = "[x, x]" if config.value_shape is None else "[query, value]"
            for name, class_name in _LIST_INPUT_LAYERS.items():
                outputs.append(getattr(keras.layers, class_name)(name=name)(pair))
                calls[name] = f"{class_name}()({names})"
        model = keras.Model(inputs, outputs)
        layers = {entry["name"]: entry for entry in model.get_config()["layers"]}
    recorded = {}
    for name, call_text in calls.items():
        (node,) = layers[name]["inbound_nodes"]
        if keras2:  # [[input, node, tensor, {keyword: [input, node, tensor]}], ...]: one entry per positional
            recorded[name] = {
                "call": call_text,
                "args": [entry[0] for entry in node],
                "kwargs": {key: _keras2_tensor(item) for key, item in node[0][3].items()},
                "inbound_nodes": layers[name]["inbound_nodes"],
            }
            continue
        recorded[name] = {
            "call": call_text,
            "args": _named_tensors(node["args"]),
            "kwargs": _named_tensors(node["kwargs"]),
            "inbound_nodes": layers[name]["inbound_nodes"],
        }
    return recorded


def _keras2_tensor(value: Any) -> Any:
    """A Keras 2 inbound node's keyword value: ``[input, node, tensor]`` is that input's name."""
    is_tensor = isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
    return value[0] if is_tensor else value


def _named_tensors(value: Any) -> Any:
    """A serialized inbound node with every tensor replaced by the name of the input it comes from."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return value["config"]["keras_history"][0]
    if isinstance(value, dict):
        return {key: _named_tensors(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_named_tensors(item) for item in value]
    return value
