"""mha-explain why: real tracebacks of failed calls, made here on the installed Keras, explained."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

runner = CliRunner()


def _traceback_of(call: Any) -> str:
    try:
        call()
    except Exception as error:
        return "".join(traceback.format_exception(error))
    raise AssertionError("the call did not fail")


def _hub_783() -> None:
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=8, key_dim=2)
    query = np.zeros((2, 3, 16), "float32")
    layer(query, query, attention_mask=np.ones((2, 2, 3, 3), bool))


@pytest.mark.keras
def test_keras_hub_783_from_its_traceback() -> None:
    text = _traceback_of(_hub_783)
    result = runner.invoke(app, ["why"], input=text)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "read: MultiHeadAttention.call() got query (2, 3, 16), value (2, 3, 16), attention_mask (2, 2, 3, 3)"
    )
    assert lines[1] == "read: the error's (2, 8, 3, 3) is the scores (batch, heads, T, S): 8 heads"
    assert "its axis 1 has size 2 where the scores (None, 8, 3, 3) have 8 (heads)" in lines[2]
    assert "the layer expects (2, 3, 3) here" in lines[2]


@pytest.mark.keras
def test_the_same_call_on_jax_words_its_error_otherwise_and_is_explained_alike() -> None:
    pytest.importorskip("jax", reason="needs the jax extra: pip install '.[jax]'")
    script = (
        "import os, traceback\nos.environ['KERAS_BACKEND'] = 'jax'\n"
        "from tests.test_why import _hub_783\n"
        "try:\n    _hub_783()\nexcept Exception as e:\n    print(''.join(traceback.format_exception(e)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "Arguments received by MultiHeadAttention.call():" in done.stdout
    result = runner.invoke(app, ["why", "--json"], input=done.stdout)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    if "with N=8 but got (2, 2, 3, 3)" in done.stdout:  # Keras 3.15 on JAX names the heads
        assert document["read"][1] == "the error names N=8 heads"
        assert "the layer expects (2, 3, 3) here" in document["explanation"][0]
    else:  # Keras 3.12 on JAX: a bare `assert tN == N` in jax, no shape of the scores to read the heads from
        assert document["explanation"][0].startswith(
            "cannot explain it: neither the layer's num_heads nor a scores shape to read it from"
        )


@pytest.mark.keras
def test_tensorflow_58726_from_the_softmax_s_traceback() -> None:
    import keras

    tokens = keras.Input((12, 20), dtype="int32")
    embedded = keras.layers.Embedding(50, 8, mask_zero=True)(tokens)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(1,))(
        embedded, embedded
    )
    model = keras.Model(tokens, attended)
    text = _traceback_of(lambda: model(np.random.default_rng(0).integers(0, 50, (3, 12, 20))))
    result = runner.invoke(app, ["why", "--text", text])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # from 3.15's Softmax message, or 3.12's printed arguments
    assert lines[0] == "read: Softmax got scores (3, 20, 2, 12, 12) and a mask (3, 12, 1, 20, 20)"
    assert lines[1].startswith("the mask differs from the scores at axis 1 (12 where the scores have 20)")
    assert "a mask that fits is (3, 20, 1, 12, 12) (1 at axis 2, the heads Keras inserted)" in lines[1]
    assert "pass attention_mask (3, 20, 12, 12) yourself" in lines[2]


def test_text_without_a_failed_attention_call_is_refused_in_one_line() -> None:
    result = runner.invoke(app, ["why"], input="Traceback (most recent call last):\nZeroDivisionError: x\n")
    assert result.exit_code == 2
    assert result.output.startswith("mha-explain: error: why: no failed call of an attention layer")
    assert len(result.output.strip().splitlines()) == 1


def test_a_rank_4_query_says_what_the_text_lacks() -> None:
    text = (
        "ValueError: Exception encountered when calling MultiHeadAttention.call().\n\n"
        "Something else went wrong\n\n"
        "Arguments received by MultiHeadAttention.call():\n"
        "  • query=tf.Tensor(shape=(2, 6, 5, 8), dtype=float32)\n"
        "  • value=tf.Tensor(shape=(2, 6, 5, 8), dtype=float32)\n"
        "  • attention_mask=None\n"
    )
    result = runner.invoke(app, ["why", "--text", text])
    assert result.exit_code == 0
    assert "cannot explain it: a traceback does not hold the layer's attention_axes" in result.stdout
    assert "mha_cli.clarify()" in result.stdout


def test_what_a_traceback_lacks_is_said_not_guessed() -> None:
    """No shape for the query: said in one line, no traceback. A symbolic call's None sizes stay None:
    a rank-4 query printed as a KerasTensor is rank 4, not a sentence."""
    no_shape = "Arguments received by MultiHeadAttention.call():\n  • query=None\n  • value=None\n"
    result = runner.invoke(app, ["why", "--text", no_shape])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "cannot explain it: the text holds no shape of the query or the value" in result.stdout
    symbolic = (
        "Arguments received by MultiHeadAttention.call():\n"
        "  • query=<KerasTensor shape=(None, 6, 5, 8), dtype=float32>\n"
        "  • value=<KerasTensor shape=(None, 6, 5, 8), dtype=float32>\n"
    )
    result = runner.invoke(app, ["why", "--text", symbolic])
    assert "got query (None, 6, 5, 8)" in result.stdout and "this query is not rank 3" in result.stdout


def test_a_softmax_mask_that_fits_is_not_blamed() -> None:
    text = (
        "ValueError: Exception encountered when calling Softmax.call().\n\nSomething else\n\n"
        "Arguments received by Softmax.call():\n"
        "  • inputs=tf.Tensor(shape=(2, 2, 4, 5), dtype=float32)\n"
        "  • mask=tf.Tensor(shape=(2, 1, 4, 5), dtype=bool)\n"
    )
    result = runner.invoke(app, ["why", "--text", text])
    assert (
        result.stdout.splitlines()[1]
        == "the mask broadcasts to the scores: the error is not about their shapes"
    )


@pytest.mark.keras
def test_attention_called_as_multi_head_attention_is_from_its_traceback() -> None:
    """Seed 002's two conventions: Attention(query, value) fails before Keras prints its arguments."""
    import keras

    query, value = np.zeros((2, 8, 16), "float32"), np.zeros((2, 4, 16), "float32")
    text = _traceback_of(lambda: keras.layers.Attention()(query, value))
    result = runner.invoke(app, ["why"], input=text)
    assert result.exit_code == 0, result.output
    assert "read: Attention was called on the tensor (2, 8, 16), not on a list" in result.output
    assert "Attention takes one list, layer([query, value]) or layer([query, value, key])" in result.output
    assert "the value went to its mask argument: write layer([query, value])" in result.output
    # A layer built by an earlier call refuses in its call, where Keras prints the arguments.
    built = keras.layers.Attention()
    built([query, value])
    text = _traceback_of(lambda: built(query, value))
    result = runner.invoke(app, ["why"], input=text)
    assert result.exit_code == 0, result.output
    assert "read: Attention.call() got inputs the tensor (2, 8, 16), mask (2, 4, 16)" in result.output
    said = " ".join(result.output.split())
    assert (
        "this call gave the tensor (2, 8, 16) and the tensor (2, 4, 16) as two arguments, so the second"
        in said
    )


@pytest.mark.keras
def test_attention_s_widths_and_masks_from_their_tracebacks() -> None:
    """From the inputs and masks Keras prints for Attention.call(): the same diagnosis as clarify()'s."""
    import keras

    query, value, wide = (np.zeros(shape, "float32") for shape in ((2, 5, 4), (2, 7, 4), (2, 7, 6)))
    text = _traceback_of(lambda: keras.layers.AdditiveAttention()([query, wide]))
    result = runner.invoke(app, ["why"], input=text)
    assert result.exit_code == 0, result.output
    assert "read: AdditiveAttention.call() got inputs [(2, 5, 4), (2, 7, 6)]" in result.output
    said = " ".join(result.output.split())
    assert (
        "query (2, 5, 4), value (2, 7, 6) (the key too, as no key is given): AdditiveAttention's scores add "
        "query and key (tanh(query + key)), so they need the same features (query 4, key 6); project one "
        "of them to the other's width (keras.layers.Dense(4) on the value)"
    ) in said
    swapped = [np.ones((2, 7), bool), np.ones((2, 5), bool)]
    text = _traceback_of(lambda: keras.layers.Attention()([query, value], mask=swapped))
    result = runner.invoke(app, ["why"], input=text)
    assert "value_mask (2, 5): Keras applies it to the scores (2, 5, 7) as (2, 1, 5)" in result.output
    assert "(mask=[query_mask, value_mask]: swapped?)" in " ".join(result.output.split())
