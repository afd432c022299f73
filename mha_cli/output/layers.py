"""What each layer kind's explain shows of its own: its arguments, its headline rows, its features.

The explain room (output/explain.py, output/headline.py) asks here by the derivation's kind; a new
kind adds its module beside output/mha.py and output/gqa.py and a line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mha_cli.core.derived import Derived
from mha_cli.output import gqa, mha


@dataclass(frozen=True)
class LayerText:
    """One kind's own parts of the explain tables."""

    #: The layer's arguments: (name, value, where the value came from).
    arguments: Callable[[Any], list[tuple[str, str, str]]]
    #: The headline's rows between the output and the weights: (label, text).
    headline_rows: Callable[[Any], list[tuple[str, str]]]
    #: What the feature axis becomes, for the Axes table.
    feature_meaning: str
    #: Tables of its own, printed after the einsum equations.
    sections: Callable[[Any], list[Any]] = lambda d: []


_TEXTS = {
    "mha": LayerText(mha.arguments, mha.headline_rows, mha.FEATURE_MEANING),
    "gqa": LayerText(gqa.arguments, gqa.headline_rows, gqa.FEATURE_MEANING, gqa.sections),
}


def text_of(d: Derived) -> LayerText:
    return _TEXTS[d.kind]
