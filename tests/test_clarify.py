"""mha_cli.clarify(): the real failures of public threads, reproduced on the installed Keras, and the
note each gains (its content, not just its presence); what no longer fails, and what is left alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import mha_cli

pytestmark = pytest.mark.keras


def _raised(call: Any) -> BaseException:
    """The exception ``call`` raises inside clarify(), as the user gets it."""
    with pytest.raises(Exception) as caught, mha_cli.clarify():
        call()
    return caught.value


def _note(error: BaseException) -> str:
    notes = [note for note in getattr(error, "__notes__", []) if note.startswith("mha-explain: ")]
    assert len(notes) == 1, getattr(error, "__notes__", None)
    return notes[0]


def test_keras_hub_783_a_mask_with_the_batch_where_the_heads_go() -> None:
    """keras-team/keras-hub#783: "Incompatible shapes: [2,8,3,3] vs. [2,2,3,3]", 8 heads, batch 2."""
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=8, key_dim=2)
    query = np.zeros((2, 3, 16), "float32")
    mask = np.ones((2, 2, 3, 3), bool)
    with pytest.raises(Exception) as plain:  # the same call without clarify: the error it explains
        layer(query, query, attention_mask=mask)
    assert "Incompatible shapes: [2,8,3,3] vs. [2,2,3,3]" in str(plain.value)
    error = _raised(lambda: layer(query, query, attention_mask=mask))
    assert type(error) is type(plain.value) and str(error) == str(plain.value)  # unchanged, a note added
    note = _note(error)
    assert note.startswith("mha-explain: the attention mask (2, 2, 3, 3): ")
    assert "its axis 1 has size 2 where the scores (None, 8, 3, 3) have 8 (heads)" in note
    assert "the layer expects (2, 3, 3) here (the scores without the heads), or (2, 1, 3, 3)" in note


def test_tensorflow_58726_mask_zero_and_attention_axes_on_an_image() -> None:
    """tensorflow/tensorflow#58726: an Embedding(mask_zero=True) feeding attention over axis 1 of a
    rank-4 input; the implicit masks combine to (B, 12, 20, 20) for scores (B, 20, 2, 12, 12)."""
    import keras

    tokens = keras.Input((12, 20), dtype="int32")
    embedded = keras.layers.Embedding(50, 8, mask_zero=True)(tokens)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(1,))(
        embedded, embedded
    )
    model = keras.Model(tokens, attended)
    batch = np.random.default_rng(0).integers(0, 50, (3, 12, 20))
    error = _raised(lambda: model(batch))
    # Keras 3.15's Softmax checks the mask; 3.12's leaves it to TensorFlow's op, which says it otherwise.
    assert "The `mask` must be broadcastable to `inputs`" in str(error) or "Incompatible shapes" in str(error)
    note = _note(error)
    assert note.startswith("mha-explain: the attention mask (3, 12, 20, 20): ")
    assert "its axis 1 has size 12 where the scores (None, 20, 2, 12, 12) have 20 (width)" in note
    assert "Keras made it from the query's own mask (3, 12, 20) & the value's own mask (3, 12, 20)" in note
    assert "the layer expects (3, 20, 12, 12) here" in note
    # Attention over axis 2, where the implicit masks fit: the same model runs.
    fits = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(2,))(embedded, embedded)
    with mha_cli.clarify():
        keras.Model(tokens, fits)(batch)


def test_tensorflow_60626_a_masking_layer_before_attention_over_two_axes() -> None:
    """tensorflow/tensorflow#60626: rank > 3 and ``query_mask[:, :, newaxis]``."""
    import keras

    images = keras.Input((4, 5, 8))
    masked = keras.layers.Masking()(images)
    attended = keras.layers.MultiHeadAttention(2, 4, attention_axes=(1, 2))(masked, masked)
    model = keras.Model(images, attended)
    note = _note(_raised(lambda: model(np.random.default_rng(0).standard_normal((2, 4, 5, 8)))))
    assert "the attention mask (2, 4, 5, 5)" in note and "the layer expects (2, 4, 5, 4, 5) here" in note
    assert "expanded as if the inputs were (B, T, features), which a query of rank 4 or more" in note


def test_gqa_mask_and_a_rank_mistake_are_explained_too() -> None:
    import keras

    gqa = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    query = np.zeros((2, 5, 16), "float32")
    note = _note(_raised(lambda: gqa(query, query, attention_mask=np.ones((2, 3, 5, 5), bool))))
    assert note.startswith("mha-explain: the attention mask (2, 3, 5, 5): ")
    mha = keras.layers.MultiHeadAttention(2, 4)
    note = _note(_raised(lambda: mha(query, np.zeros((2, 5, 16, 1), "float32"))))
    assert note == (
        "mha-explain: value (5, 16, 1): rank 4 differs from the query's rank 3; query and value need the "
        "same number of axes"
    )


@pytest.mark.parametrize(
    "thread",
    [
        "tensorflow/tensorflow#58322",  # use_causal_mask on a sequence of length 1 (Softmax axis=())
        "tensorflow/tensorflow#77057",  # attention_axes=-1 in a subclassed model
        "keras-team/keras#19769",  # query and value of other widths, symbolic
    ],
)
def test_what_the_installed_keras_no_longer_fails_on_runs_inside_clarify(thread: str) -> None:
    """These threads' calls run on Keras >= 3.12: clarify changes nothing about them."""
    import keras

    with mha_cli.clarify():
        if thread.endswith("58322"):
            one = np.zeros((2, 1, 8), "float32")
            keras.layers.MultiHeadAttention(2, 4)(one, one, use_causal_mask=True)
        elif thread.endswith("77057"):

            class Model(keras.Model):
                def __init__(self) -> None:
                    super().__init__()
                    self.attention = keras.layers.MultiHeadAttention(2, 4, attention_axes=-1)

                def call(self, x: Any) -> Any:
                    return self.attention(x, x)

            Model()(np.zeros((2, 5, 8), "float32"))
        else:
            query, value = keras.Input((5, 8)), keras.Input((6, 4))
            keras.layers.MultiHeadAttention(2, 4)(query, value)


def test_errors_outside_attention_calls_pass_untouched_and_the_classes_are_restored() -> None:
    import keras

    error = _raised(lambda: 1 / 0)
    assert isinstance(error, ZeroDivisionError) and not getattr(error, "__notes__", [])
    dense = keras.layers.Dense(3)
    error = _raised(lambda: dense(np.zeros((2, 3, 4), "float32"), np.zeros(1)))  # a Dense's own mistake
    assert not [note for note in getattr(error, "__notes__", []) if note.startswith("mha-explain")]
    assert "__call__" not in vars(keras.layers.MultiHeadAttention)
    assert "__call__" not in vars(keras.layers.GroupQueryAttention)


def test_a_call_that_fails_for_another_reason_says_the_shapes_are_fine() -> None:
    import keras

    class Broken(keras.layers.MultiHeadAttention):
        def call(self, query: Any, value: Any, key: Any = None, **kwargs: Any) -> Any:
            raise RuntimeError("my own bug")

    query = np.zeros((2, 5, 8), "float32")
    error = _raised(lambda: Broken(2, 4)(query, query))
    assert "my own bug" in str(error) and isinstance(error, RuntimeError)
    assert _note(error) == (
        "mha-explain: the layer takes these shapes (scores (2, 2, 5, 5)); the error is not about the "
        "shapes of query, value or key"
    )


def test_an_explicit_value_mask_argument_is_the_one_diagnosed() -> None:
    """Keras 3 takes value_mask= as an argument too: a wrong one is named, not the tensors' own masks."""
    import keras

    layer = keras.layers.MultiHeadAttention(2, 4)
    query, value = np.zeros((2, 3, 8), "float32"), np.zeros((2, 5, 8), "float32")
    note = _note(_raised(lambda: layer(query, value, value_mask=np.ones((2, 7), bool))))
    assert note.startswith("mha-explain: the attention mask (2, 1, 7): ")
    assert "Keras made it from the value's own mask (2, 7)" in note
