"""The NumPy re-execution's einsum, against np.einsum itself (pure NumPy, no Keras)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mha_cli.core.config import MHAConfig
from mha_cli.core.mha import derive
from mha_cli.runtime import reference
from mha_cli.runtime.reference import contract


@st.composite
def contractions(draw: st.DrawFn) -> tuple[str, np.ndarray, np.ndarray]:
    """A two-operand einsum of the matmul form, in any letter order, with random operands."""
    letters = iter("abcdefghij")
    kinds = ("batch", "summed", "first", "second")
    group = {kind: [next(letters) for _ in range(draw(st.integers(0, 2)))] for kind in kinds}
    size = {letter: draw(st.integers(0, 4)) for letters_of in group.values() for letter in letters_of}
    first = draw(st.permutations(group["batch"] + group["summed"] + group["first"]))
    second = draw(st.permutations(group["batch"] + group["summed"] + group["second"]))
    result = draw(st.permutations(group["batch"] + group["first"] + group["second"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    left = rng.standard_normal([size[letter] for letter in first])
    right = rng.standard_normal([size[letter] for letter in second])
    return f"{''.join(first)},{''.join(second)}->{''.join(result)}", left, right


@settings(max_examples=300)
@given(contractions())
def test_contract_equals_np_einsum(contraction: tuple[str, np.ndarray, np.ndarray]) -> None:
    equation, left, right = contraction
    expected = np.einsum(equation, left, right)
    got = contract(equation, left, right)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("equation", ["ii,i->i", "ab,bc->c", "ab,cd->ad", "ij,jk->ik"])
def test_other_forms_match_np_einsum(equation: str) -> None:
    """Diagonals and axes summed within one operand go to np.einsum; the last one is a plain matmul."""
    rng = np.random.default_rng(0)
    first, second = equation.split("->")[0].split(",")
    left, right = rng.standard_normal([3] * len(first)), rng.standard_normal([3] * len(second))
    np.testing.assert_allclose(contract(equation, left, right), np.einsum(equation, left, right), atol=1e-12)


def _every_layout() -> list[MHAConfig]:
    """Ranks 3 to 6, every attention_axes choice, self- and cross-attention, with and without a gate."""
    configs = []
    for middle in range(1, 5):
        query = (*range(2, 2 + middle), 3)
        choices = [
            None,
            *itertools.chain.from_iterable(
                itertools.combinations(range(1, middle + 1), n) for n in range(1, middle + 1)
            ),
        ]
        for axes in choices:
            configs.append(MHAConfig(query, attention_axes=axes, use_gate=middle == 2))
            attended = range(1, middle + 1) if axes is None else axes
            value = tuple(size + 1 if axis + 1 in attended else size for axis, size in enumerate(query[:-1]))
            configs.append(
                MHAConfig(query, (*value, 5), num_heads=2, key_dim=3, value_dim=4, attention_axes=axes)
            )
    return configs


@pytest.mark.parametrize("config", _every_layout(), ids=str)
def test_every_einsum_of_the_layer_is_one_batched_matmul(
    config: MHAConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed claim in contract(): MultiHeadAttention's einsums never fall back to np.einsum."""
    derivation = derive(config)
    rng = np.random.default_rng(0)
    operands = {
        name: [
            rng.standard_normal([2 if size is None else size for size in tensor.shape])
            for tensor in e.operands
        ]
        for name, e in derivation.einsums.items()
    }
    expected = {name: np.einsum(e.equation, *operands[name]) for name, e in derivation.einsums.items()}

    def no_einsum(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"np.einsum called for {args[0]}")

    monkeypatch.setattr(reference.np, "einsum", no_einsum)
    for name, einsum in derivation.einsums.items():
        got = contract(einsum.equation, *operands[name])
        assert got.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(got, expected[name], atol=1e-12, err_msg=name)
