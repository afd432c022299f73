"""``mha_cli.clarify()``: a failed call of an attention layer gains a note saying why (PEP 678).

Inside the block, MultiHeadAttention's, GroupQueryAttention's and Attention's ``__call__`` (so their
subclasses', AdditiveAttention's among them, and every call a model makes of them) is wrapped: the
call runs as ever, and an exception it raises propagates unchanged, the same object, with one note
added from core/clarify.py's diagnosis of what the call was given. Nothing is caught, retried or
hidden, and errors outside these calls pass untouched. The classes are restored when the block ends,
also on error.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

from mha_cli.core.clarify import (
    CallFacts,
    ListedCallFacts,
    diagnose,
    diagnose_listed,
)
from mha_cli.core.grammar import format_shape

#: Where a note by this module starts, so a layer called inside another (a subclass calling its
#: base class's __call__, a model's call of a layer) adds it once.
_MARK = "mha-explain: "


def _dims(tensor: Any) -> tuple[int | None, ...] | None:
    shape = getattr(tensor, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if size is None else int(size) for size in shape)
    except (TypeError, ValueError):
        return None


def facts_of(
    kind: str, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], carried: list[tuple[Any, Any]]
) -> CallFacts | None:
    """What the failed call was given, as the diagnosis reads it (None where it cannot be read);
    ``carried``: each argument with the mask it carried into the call."""
    try:
        bound = inspect.signature(type(layer).call).bind(layer, *args, **kwargs).arguments
    except TypeError:
        return None
    query, value, key = bound.get("query"), bound.get("value"), bound.get("key")
    query_dims, value_dims = _dims(query), _dims(value)
    if query_dims is None or value_dims is None:
        return None

    def own_mask(tensor: Any, argument: str) -> tuple[int | None, ...] | None:
        """The mask given as the call's own argument (query_mask=...), else the one the tensor carries."""
        explicit = bound.get(argument)
        if explicit is not None:
            return _dims(explicit)
        mask = next((mask for given, mask in carried if given is tensor), None)
        return None if tensor is None or mask is None else _dims(mask)

    try:
        config = layer.get_config()
    except Exception:  # a subclass's get_config that fails: nothing to diagnose from
        return None
    mask = bound.get("attention_mask")
    own_key = key is not None and key is not value
    return CallFacts(
        kind=kind,
        arguments=config,
        query=query_dims,
        value=value_dims,
        key=_dims(key) if own_key else None,
        attention_mask=None if mask is None else _dims(mask),
        query_mask=own_mask(query, "query_mask"),
        value_mask=own_mask(value, "value_mask"),
        key_mask=own_mask(key, "key_mask") if own_key else None,
        causal=bool(bound.get("use_causal_mask", False)),
        dtype=str(getattr(layer, "compute_dtype", "float32")),
    )


def _described(given: Any) -> str:
    """What a call's ``inputs`` was, when not a list: "the tensor (2, 5, 4)", "a dict of query, value",
    "a tuple of (2, 5, 4), (2, 7, 4) (a list, not a tuple)"."""
    if isinstance(given, dict):
        return "a dict of " + ", ".join(map(str, given))
    if isinstance(given, tuple):
        shapes = ", ".join(format_shape(dims) if (dims := _dims(item)) else "?" for item in given)
        return f"a tuple of {shapes} (Keras checks for a list, not a tuple)"
    dims = _dims(given)
    if dims is not None:
        return "the tensor " + format_shape(dims)
    return "nothing" if given is None else f"a {type(given).__name__}"


def listed_facts_of(
    keras: Any, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ListedCallFacts | None:
    """What a failed call of Attention or AdditiveAttention was given (None where it cannot be read)."""
    kind = "additive" if isinstance(layer, keras.layers.AdditiveAttention) else "dot"
    signature = inspect.signature(type(layer).call)
    taken = set(signature.parameters)
    unknown = tuple(name for name in kwargs if name not in taken)
    known = {name: value for name, value in kwargs.items() if name in taken}
    try:
        bound = signature.bind_partial(layer, *args, **known).arguments
    except TypeError:
        return None
    inputs = bound.get("inputs")
    # Keras's _validate_inputs takes a list, and only a list, for both.
    items = tuple(inputs) if isinstance(inputs, list) else None
    mask = bound.get("mask")
    mask_is_list = mask is None or isinstance(mask, list)
    masks = tuple(mask) if isinstance(mask, list) else None
    return ListedCallFacts(
        kind=kind,
        class_name=type(layer).__name__,
        inputs=None if items is None else tuple(_dims(item) for item in items),
        given="" if items is not None else _described(inputs),
        mask=None if masks is None else tuple(None if item is None else _dims(item) for item in masks),
        mask_shape=None if mask_is_list else _dims(mask),
        mask_is_list=mask_is_list,
        unknown=unknown,
        score_mode=str(getattr(layer, "score_mode", "dot")),
        causal=bool(bound.get("use_causal_mask", False)),
    )


def _carried(keras: Any, tensor: Any) -> Any:
    """The mask a tensor carries (Keras's ``_keras_mask``: mask_zero, Masking), or None."""
    try:
        return keras.src.backend.get_keras_mask(tensor)
    except Exception:  # not a tensor, or a Keras without the function
        return None


@contextlib.contextmanager
def clarified() -> Iterator[None]:
    """Wrap the attention layers' ``__call__`` for the block (see the module's docstring), in the Keras
    this process imports (on the backend KERAS_BACKEND names, as ``import keras`` would)."""
    import keras

    classes = {"mha": keras.layers.MultiHeadAttention}
    if hasattr(keras.layers, "GroupQueryAttention"):
        classes["gqa"] = keras.layers.GroupQueryAttention
    classes["listed"] = keras.layers.Attention  # and AdditiveAttention, its subclass
    wrapped: list[tuple[Any, bool, Any]] = []

    def wrap(kind: str, cls: Any) -> Any:
        original = cls.__call__

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            # The masks the tensors carry, read before the call: Keras takes them off on the way.
            carried = [(tensor, _carried(keras, tensor)) for tensor in (*args, *kwargs.values())]
            try:
                return original(self, *args, **kwargs)
            except Exception as error:
                notes = getattr(error, "__notes__", [])
                if not any(str(note).startswith(_MARK) for note in notes):
                    note = (
                        _listed_note(keras, self, args, kwargs)
                        if kind == "listed"
                        else _note(kind, self, args, kwargs, carried)
                    )
                    if note is not None:
                        error.add_note(note)
                raise

        return __call__

    try:
        for kind, cls in classes.items():
            wrapped.append((cls, "__call__" in vars(cls), vars(cls).get("__call__")))
            cls.__call__ = wrap(kind, cls)
        yield
    finally:
        for cls, had, before in reversed(wrapped):
            if had:
                cls.__call__ = before
            else:
                del cls.__call__


def _note(
    kind: str, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], carried: list[tuple[Any, Any]]
) -> str | None:
    """The diagnosis, or None when the call's arguments cannot be read; never an error of its own."""
    try:
        facts = facts_of(kind, layer, args, kwargs, carried)
        return None if facts is None else diagnose(facts)
    except Exception:  # the user's error is what matters: a failing diagnosis adds nothing
        return None


def _listed_note(keras: Any, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Attention's or AdditiveAttention's diagnosis, or None; never an error of its own."""
    try:
        facts = listed_facts_of(keras, layer, args, kwargs)
        return None if facts is None else diagnose_listed(facts)
    except Exception:  # the user's error is what matters: a failing diagnosis adds nothing
        return None
