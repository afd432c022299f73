"""The layer-kind seam: every kind in KINDS answers the same contract, on its own examples.

The pure half holds the algebra together (the einsum legends agree with the
operands' shapes, the costs add up, the JSON document is complete); the keras
half builds the real layer from the kind's own name and arguments and runs
the whole explain on it, so a new kind lands with the proofs MHA has.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from mha_cli.core.errors import ConfigError
from mha_cli.core.kinds import KINDS, Derived, LayerKind, kind
from mha_cli.output.documents import dumps
from mha_cli.output.documents.explain import to_document

EXAMPLES = [
    pytest.param(layer_kind, config, id=f"{name}-{index}")
    for name, layer_kind in KINDS.items()
    for index, config in enumerate(layer_kind.examples())
]


def test_the_kinds_are_listed_by_name_and_mha_is_first() -> None:
    assert next(iter(KINDS)) == "mha"
    for name, layer_kind in KINDS.items():
        assert isinstance(layer_kind, LayerKind)
        assert layer_kind.name == name and kind(name) is layer_kind
        assert len(layer_kind.examples()) >= 2


def test_an_unknown_kind_is_one_line_naming_the_kinds() -> None:
    with pytest.raises(ConfigError, match=r"^--layer lstm: unknown layer kind; choose one of mha, gqa$"):
        kind("lstm")


@pytest.mark.parametrize(("layer_kind", "config"), EXAMPLES)
def test_a_derivation_holds_together(layer_kind: LayerKind, config: Any) -> None:
    derived = layer_kind.derive(config)
    assert isinstance(derived, Derived) and derived.kind == layer_kind.name
    assert derived.rank == len(derived.axes) == len(derived.inputs["query"].shape)
    for tensor in (*derived.inputs.values(), *derived.shapes.values()):
        assert tensor.shape[0] is None and len(tensor.labels) == len(tensor.shape), tensor.name
    for name, einsum in derived.einsums.items():
        operands, result = einsum.equation.split("->")
        sizes = dict((letter, size) for letter, _, size in einsum.legend)
        for letters, tensor in zip(operands.split(","), (*einsum.operands, einsum.result), strict=False):
            assert tuple(sizes[letter] for letter in letters) == tensor.shape, f"{name}: {tensor.name}"
        assert tuple(sizes[letter] for letter in result) == einsum.result.shape, name
    assert derived.params == sum(math.prod(w.kernel) + math.prod(w.bias or (0,)) for w in derived.weights)
    assert derived.flops_per_item == sum(e.flops_per_item() for e in derived.einsums.values()) > 0
    assert derived.equations == {name: e.equation for name, e in derived.einsums.items()}
    assert derived.summary and all(sentence.endswith(".") for sentence in derived.summary)


@pytest.mark.parametrize(("layer_kind", "config"), EXAMPLES)
def test_a_derivation_is_a_json_document_without_keras(layer_kind: LayerKind, config: Any) -> None:
    from mha_cli.operations.explain import algebra_only

    derived = layer_kind.derive(config)
    document = json.loads(dumps(to_document(algebra_only(derived, "tensorflow", "--no-run", "asked"))))
    assert document["shapes"]["output"] == list(derived.shapes["output"].shape)
    assert set(document["einsums"]) == set(derived.einsums)
    # The document's config names every argument the real layer is built with.
    assert set(layer_kind.keras_kwargs(derived)) <= set(document["config"])


@pytest.mark.keras
@pytest.mark.parametrize(("layer_kind", "config"), EXAMPLES)
def test_the_real_layer_is_built_from_the_kind_and_agrees(layer_kind: LayerKind, config: Any) -> None:
    from mha_cli.operations.explain import Status, explain
    from mha_cli.runtime.keras_adapter import load_keras

    keras = load_keras("tensorflow")
    derived = layer_kind.derive(config)
    arguments = layer_kind.keras_kwargs(derived)
    held = getattr(keras.layers, layer_kind.keras_class)(**arguments).get_config()
    assert {name: held[name] for name in arguments if name != "dtype"} == {
        name: value for name, value in arguments.items() if name != "dtype"
    }
    result = explain(config, "tensorflow")
    # The symbolic check may warn: it is there to flag a model.summary() that Keras gets wrong.
    assert [check.name for check in result.checks if check.status is not Status.PASSED] in (
        [],
        ["keras_symbolic"],
    )
    assert result.failed == () and result.check("numpy_reference").status is Status.PASSED
    assert result.run is not None
    assert result.run.arrays["output"].shape == derived.shapes["output"].with_batch(config.batch)


def test_every_table_keyed_by_kind_covers_every_kind() -> None:
    """A kind registered in KINDS and forgotten in a renderer's table fails here, not in a user's hands."""
    from mha_cli.cli.options import LAYER_OPTION_NAMES
    from mha_cli.core.cases import KNOBS
    from mha_cli.output import code, layers

    assert set(layers._TEXTS) == set(code._CONSTRUCTORS) == set(KINDS)
    for layer_kind in KINDS.values():
        # Each kind's own arguments are options of the CLI and keys of case files and --jsonl lines.
        assert set(layer_kind.own_arguments) <= set(LAYER_OPTION_NAMES) & set(KNOBS), layer_kind.name
