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
    assert "__call__" not in vars(keras.layers.Attention)


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


# --- Attention and AdditiveAttention: called on a list -------------------------------------------------


def _listed_failure(call: Any) -> tuple[BaseException, str]:
    """The error ``call`` raises without clarify(), and the note it gains inside, the error unchanged."""
    with pytest.raises(Exception) as plain:
        call()
    error = _raised(call)
    assert type(error) is type(plain.value) and str(error) == str(plain.value)
    return plain.value, _note(error)


@pytest.mark.parametrize("name", ["Attention", "AdditiveAttention"])
def test_seed_002_attention_called_as_multi_head_attention_is(name: str) -> None:
    """Seed 002: MultiHeadAttention is mha(query, value), Attention and AdditiveAttention take a list.
    Called the other way, Keras says it wants a list; the note says why the second tensor was lost."""
    import keras

    layer_class = getattr(keras.layers, name)
    query, value = np.zeros((2, 8, 16), "float32"), np.zeros((2, 4, 16), "float32")
    error, note = _listed_failure(lambda: layer_class()(query, value))
    assert "must be called on a list of inputs" in str(error)
    assert note.startswith(f"mha-explain: {name} takes one list, layer([query, value]) or ")
    assert "gave the tensor (2, 8, 16) and the tensor (2, 4, 16) as two arguments" in note
    assert "the second one went to mask" in note and "here write layer([query, value])" in note
    _, note = _listed_failure(lambda: layer_class()(query=query, value=value))
    assert "gave query=, value= as keywords, which is how MultiHeadAttention is called" in note
    _, note = _listed_failure(lambda: layer_class()({"query": query, "value": value}))
    assert note.endswith("this call gave a dict of query, value")
    _, note = _listed_failure(lambda: layer_class()((query, value)))
    assert note.endswith(
        "this call gave a tuple of (2, 8, 16), (2, 4, 16) (Keras checks for a list, not a tuple)"
    )
    # The list itself works: the note's advice, run.
    assert tuple(layer_class()([query, value]).shape) == (2, 8, 16)


def test_unequal_widths_for_the_scores_are_named_with_what_fits() -> None:
    """Attention's dot scores are query @ key^T (no projection): a value of another width fails in a
    matmul (TensorFlow: "Matrix size-incompatible"), AdditiveAttention's in an add."""
    import keras

    query, value = np.zeros((2, 5, 4), "float32"), np.zeros((2, 7, 6), "float32")
    _, note = _listed_failure(lambda: keras.layers.Attention()([query, value]))
    assert note == (
        "mha-explain: query (2, 5, 4), value (2, 7, 6) (the key too, as no key is given): dot scores are "
        "query @ key^T, so the key needs the query's 4 features (it has 6); project one of them to the "
        "other's width (keras.layers.Dense(4) on the value), or use MultiHeadAttention, which projects "
        "query, key and value itself"
    )
    _, note = _listed_failure(lambda: keras.layers.AdditiveAttention()([query, value]))
    assert "AdditiveAttention's scores add query and key (tanh(query + key)), so they need the same " in note
    # The advice, run: the value projected to the query's width.
    projected = keras.layers.Dense(4)(value)
    assert tuple(keras.layers.AdditiveAttention()([query, projected]).shape) == (2, 5, 4)
    key = np.zeros((2, 8, 4), "float32")
    _, note = _listed_failure(lambda: keras.layers.Attention()([query, np.zeros((2, 7, 4), "float32"), key]))
    assert note.startswith(
        "mha-explain: key (2, 8, 4), value (2, 7, 4): the key needs the value's 7 positions"
    )


def test_attention_masks_a_tensor_for_a_list_and_swapped_masks() -> None:
    import keras

    query, value = np.zeros((2, 5, 4), "float32"), np.zeros((2, 7, 4), "float32")
    value_mask, query_mask = np.ones((2, 7), bool), np.ones((2, 5), bool)
    layer = keras.layers.Attention()
    error, note = _listed_failure(lambda: layer([query, value], mask=value_mask))
    assert "mask must be a list" in str(error)
    assert note.startswith("mha-explain: mask (2, 7) is not a list: Attention takes mask=[query_mask, ")
    assert note.endswith("mask=[None, value_mask] with value_mask (2, 7)")
    _, note = _listed_failure(lambda: layer([query, value], mask=[value_mask, query_mask]))
    # Keras applies the value mask first: (2, 5) as (2, 1, 5) against the scores (2, 5, 7).
    assert note == (
        "mha-explain: value_mask (2, 5): Keras applies it to the scores (2, 5, 7) as (2, 1, 5), which does "
        "not fit; a value mask has the value's positions: (2, 7); 5 is the query's length "
        "(mask=[query_mask, value_mask]: swapped?)"
    )
    _, note = _listed_failure(lambda: layer([query, value], mask=[value_mask, None]))
    assert note.startswith("mha-explain: query_mask (2, 7): Keras zeroes the output (2, 5, 4) with it as ")
    assert tuple(layer([query, value], mask=[query_mask, value_mask]).shape) == (2, 5, 4)


def test_a_functional_model_builds_with_unequal_widths_and_its_call_is_explained() -> None:
    """Keras's symbolic call does not check Attention's widths: the model builds, its output claimed
    (None, 8, 12), and the forward pass fails inside; the note names the model's own call."""
    import keras

    query, value = keras.Input((8, 16)), keras.Input((4, 12))
    output = keras.layers.Attention()([query, value])
    assert tuple(output.shape) == (None, 8, 12)
    model = keras.Model([query, value], output)
    arrays = [np.zeros((2, 8, 16), "float32"), np.zeros((2, 4, 12), "float32")]
    _, note = _listed_failure(lambda: model(arrays))
    assert note.startswith("mha-explain: query (2, 8, 16), value (2, 4, 12) (the key too, as no key ")
    assert "needs the query's 16 features (it has 12)" in note


def test_a_value_mask_of_the_scores_shape_fails_only_with_the_causal_mask() -> None:
    """Attention uses a (B, Tq, Tv) value mask as it is, but with use_causal_mask it inserts the Tq axis
    whatever the mask's rank (Attention._calculate_score_mask): the same mask runs, then fails."""
    import keras

    query, value = np.zeros((2, 5, 4), "float32"), np.zeros((2, 7, 4), "float32")
    mask = [None, np.ones((2, 5, 7), bool)]
    with mha_cli.clarify():
        assert tuple(keras.layers.Attention()([query, value], mask=mask).shape) == (2, 5, 4)
    _, note = _listed_failure(
        lambda: keras.layers.Attention()([query, value], mask=mask, use_causal_mask=True)
    )
    assert note == (
        "mha-explain: value_mask (2, 5, 7): Keras applies it to the scores (2, 5, 7) as (2, 5, 1, 7), which "
        "does not fit; a value mask has the value's positions: (2, 7)"
    )
