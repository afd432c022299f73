"""Parse the shape, axes and size strings people type or paste.

A small grammar, no ``eval``: an optional pair of ``()`` or ``[]`` around a
comma-separated list of ASCII integers, a trailing comma allowed
(``32,64,4``, ``(1)``, ``(1,)``, ``[1, 2]``). Standard library only.
"""

from __future__ import annotations

import re
import shlex

from mha_cli.core.errors import ConfigError

# ASCII digits only: Python's int() also accepts "٣" and "³"-like digits, which
# nobody means in a shape.
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NONE_WORDS = frozenset({"none", "null"})
_BRACKETS = {"(": ")", "[": "]"}
# Larger than any tensor axis anyone can allocate; keeps arithmetic sane.
MAX_SIZE = 2**40


def quoted(text: str) -> str:
    """``text`` as a shell would need it typed: ``32,x`` bare, ``'(1, 2)'`` and ``''`` quoted.

    Error lines quote values this way, so the value in the line is the one the
    user typed and can be pasted back.
    """
    return shlex.quote(text)


def _items(option: str, text: str) -> list[str]:
    body = text.strip()
    if body[:1] in _BRACKETS:
        if not body.endswith(_BRACKETS[body[0]]):
            raise ConfigError(option, quoted(text), f"unbalanced '{body[0]}'; write e.g. 1,2 or (1, 2)")
        body = body[1:-1].strip()
    if not body:
        return []
    items = [item.strip() for item in body.split(",")]
    if items[-1] == "":  # "(1,)" is a one-element tuple in Python
        items.pop()
    return items


def parse_int(option: str, text: str, *, minimum: int | None = None) -> int:
    """One integer in ASCII digits, at least ``minimum``."""
    item = text.strip()
    if not _INTEGER.fullmatch(item):
        need = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ConfigError(option, quoted(text), f"not an integer; expected {need} in ASCII digits")
    value = int(item)
    if minimum is not None and value < minimum:
        raise ConfigError(option, quoted(text), f"must be >= {minimum}")
    if abs(value) > MAX_SIZE:
        raise ConfigError(option, quoted(text), f"too large; sizes are at most {MAX_SIZE}")
    return value


def parse_shape(option: str, text: str) -> tuple[int, ...]:
    """A shape without the batch axis, e.g. ``32,64,4``; every size >= 1."""
    items = _items(option, text)
    if not items:
        raise ConfigError(
            option, quoted(text), "empty shape; give the sizes without the batch axis, e.g. 32,64,4"
        )
    if items[0].lower() in _NONE_WORDS:
        rest = ",".join(items[1:]) or "32,64,4"
        raise ConfigError(option, quoted(text), f"leave out the batch axis (None); write {rest}")
    sizes = []
    for item in items:
        if not _INTEGER.fullmatch(item):
            raise ConfigError(
                option, quoted(text), f"{item!r} is not a size; sizes are positive integers, e.g. 32,64,4"
            )
        size = int(item)
        if size < 1:
            raise ConfigError(option, quoted(text), f"size {size} is not positive; every size must be >= 1")
        if size > MAX_SIZE:
            raise ConfigError(option, quoted(text), f"size {size} is too large; sizes are at most {MAX_SIZE}")
        sizes.append(size)
    return tuple(sizes)


def parse_mask_shape(option: str, text: str) -> tuple[int | None, ...]:
    """An attention_mask shape as passed to the layer, e.g. ``None,10,10`` or ``10,10``.

    Unlike --shape it may start with the batch axis, written None (the
    forward pass's --batch is used) or as a size.
    """
    items = _items(option, text)
    if items and items[0].lower() in _NONE_WORDS:
        rest = ",".join(items[1:])
        return (None, *parse_shape(option, rest)) if rest else (None,)
    return parse_shape(option, text)


def parse_position(option: str, text: str) -> tuple[int, ...]:
    """A position, one index from 0 per axis between batch and features, e.g. ``5,10``."""
    items = _items(option, text)
    if not items:
        raise ConfigError(option, quoted(text), "no position given; write e.g. 5,10")
    return tuple(parse_int(option, item, minimum=0) for item in items)


#: ``--axes all`` in compare: every legal choice for the input.
ALL_AXES = "all"


def parse_axes(option: str, text: str) -> tuple[int, ...] | None:
    """``none`` (all axes but batch, heads and features) or a list of axes.

    Axes may be negative; whether they are legal for a rank is the shape
    algebra's business, not the parser's.
    """
    if text.strip().lower() in _NONE_WORDS:
        return None
    if text.strip().lower() == ALL_AXES:
        raise ConfigError(
            option,
            quoted(text),
            "every choice is listed by compare (mha-explain compare --shape S --axes all); "
            "here give one, e.g. 1 or 1,2 or none",
        )
    items = _items(option, text)
    if not items:
        raise ConfigError(option, quoted(text), "no axes given; write e.g. 1 or 1,2, or none for all axes")
    axes = []
    for item in items:
        if item.lower() in _NONE_WORDS or not _INTEGER.fullmatch(item):
            raise ConfigError(
                option, quoted(text), f"{item!r} is not an axis; write integers like 1 or 1,2 or -2, or none"
            )
        axes.append(int(item))
    return tuple(axes)


def parse_axes_or_all(option: str, text: str) -> tuple[int, ...] | str | None:
    """What compare's ``--axes`` takes: :func:`parse_axes`, or ``all`` (:data:`ALL_AXES`)."""
    return ALL_AXES if text.strip().lower() == ALL_AXES else parse_axes(option, text)


def parse_names(option: str, text: str) -> tuple[str, ...]:
    """Comma-separated axis names, e.g. ``height,width``."""
    items = _items(option, text)
    if not items:
        raise ConfigError(option, quoted(text), "no names given; write e.g. height,width")
    for item in items:
        if not item.isidentifier() or not item.isascii():
            raise ConfigError(option, quoted(text), f"{item!r} is not a name; use letters, digits and _")
    return tuple(items)


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_BYTES = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", re.ASCII)


def parse_bytes(option: str, text: str) -> int:
    """A memory size: ``2GiB``, ``512MiB``, ``1.5GB``, or plain bytes."""
    match = _BYTES.fullmatch(text.strip().lower())
    if not match or match.group(2) not in _BYTE_UNITS:
        raise ConfigError(option, quoted(text), "not a size; write e.g. 2GiB, 512MiB or 1000000")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2)])


def format_bytes(size: int) -> str:
    """``2.0 GiB``-style, for messages."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def format_shape(shape: tuple[int | None, ...]) -> str:
    """``(None, 32, 64, 4)``, as Keras prints shapes."""
    inner = ", ".join("None" if size is None else str(size) for size in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
