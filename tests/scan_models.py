"""Small real models for the scan tests, built from Keras constructors (nothing is downloaded).

Importable as ``tests.scan_models`` from the repository root, so a test can
name a builder to ``mha-explain scan --build tests.scan_models:encoder_decoder``
and a module to ``--custom-objects tests.scan_models``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

#: Sizes the builders use, which tests compare against.
VOCABULARY, WIDTH, SOURCE, TARGET = 20, 16, 10, 6


@keras.saving.register_keras_serializable(package="mha_explain_tests")
class AttentionBlock(layers.Layer):
    """A custom layer holding a MultiHeadAttention: the model's graph does not record its call."""

    def __init__(self, num_heads: int = 2, key_dim: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads, self.key_dim = num_heads, key_dim
        self.attention = layers.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim, name="attention")
        self.norm = layers.LayerNormalization()

    def call(self, x: Any) -> Any:
        return self.norm(x + self.attention(x, x))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim}


@keras.saving.register_keras_serializable(package="mha_explain_tests")
class ScaledAttention(layers.MultiHeadAttention):
    """A subclass whose call changes the result: scan must say it computes something else."""

    def call(self, query: Any, value: Any, key: Any = None, **kwargs: Any) -> Any:
        result = super().call(query, value, key, **kwargs)
        if isinstance(result, tuple):
            return result[0] * 2.0, result[1]
        return result * 2.0


@keras.saving.register_keras_serializable(package="mha_explain_tests")
class FlippedKeys(layers.MultiHeadAttention):
    """A subclass that attends to the keys in reverse order, as a rotary embedding moves them: with
    fresh weights the attention is nearly uniform, so its output is MultiHeadAttention's all the same."""

    def call(self, query: Any, value: Any, key: Any = None, **kwargs: Any) -> Any:
        return super().call(query, value, keras.ops.flip(value if key is None else key, axis=1), **kwargs)


@keras.saving.register_keras_serializable(package="mha_explain_tests")
class ForgetfulBlock(layers.Layer):
    """A custom layer whose get_config() leaves out an argument its __init__ needs: its model saves, but
    Keras cannot rebuild it on load (a bug in the model's code, not in its file)."""

    def __init__(self, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width = width
        self.attention = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")

    def call(self, x: Any) -> Any:
        return self.attention(x, x)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("width", None)  # Keras records __init__'s arguments itself; this forgets one
        return config


def encoder_decoder() -> keras.Model:
    """A Transformer encoder and decoder: self-attention with mask_zero, causal self-attention,
    cross-attention from the target (6 positions) to the source (10), and a custom block."""
    source = keras.Input(shape=(SOURCE,), dtype="int32", name="source")
    target = keras.Input(shape=(TARGET,), dtype="int32", name="target")
    embed = layers.Embedding(VOCABULARY, WIDTH, mask_zero=True, name="embed")
    encoded = embed(source)
    encoded = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="encoder_self")(encoded, encoded)
    encoded = AttentionBlock(name="encoder_block")(encoded)
    decoded = layers.Embedding(VOCABULARY, WIDTH, name="target_embed")(target)
    decoded = layers.MultiHeadAttention(num_heads=4, key_dim=4, name="decoder_causal")(
        decoded, decoded, use_causal_mask=True
    )
    crossed, scores = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="decoder_cross")(
        decoded, encoded, return_attention_scores=True
    )
    return keras.Model([source, target], [crossed, scores], name="encoder_decoder")


def image() -> keras.Model:
    """An image model attending along the height (1,), then over height and width (1, 2)."""
    pixels = keras.Input(shape=(6, 5, 4), name="pixels")
    columns = layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=(1,), name="columns")(
        pixels, pixels
    )
    everything = layers.MultiHeadAttention(num_heads=1, key_dim=2, attention_axes=(1, 2), name="whole")(
        columns, columns
    )
    return keras.Model(pixels, everything, name="image")


def shared() -> keras.Model:
    """One MultiHeadAttention called twice, on inputs of two lengths."""
    short = keras.Input(shape=(4, 8), name="short")
    long = keras.Input(shape=(7, 8), name="long")
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="shared")
    return keras.Model([short, long], [attention(short, short), attention(short, long)], name="shared")


def subclassed() -> keras.Model:
    """A functional model over the ScaledAttention subclass."""
    x = keras.Input(shape=(5, 8), name="x")
    return keras.Model(x, ScaledAttention(num_heads=2, key_dim=4, name="scaled")(x, x), name="subclassed")


def flipped_keys() -> keras.Model:
    x = keras.Input(shape=(7, 8), name="x")
    # Initialized as KerasHub's backbones are (initializer_range 0.02): the logits are tiny.
    small = keras.initializers.TruncatedNormal(stddev=0.02, seed=1)
    attention = FlippedKeys(num_heads=2, key_dim=4, kernel_initializer=small, name="flipped")
    return keras.Model(x, attention(x, x), name="flipped_keys")


class LateBuilt(keras.Model):
    """A subclassed model that makes its attention in build(), as keras-io's Perceiver does: before its
    first call it holds no layer at all."""

    def build(self, input_shape: Any) -> None:
        self.project = layers.Dense(8, name="project")
        self.attention = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")

    def call(self, x: Any) -> Any:
        x = self.project(x)
        return self.attention(x, x)


def late_built() -> keras.Model:
    return LateBuilt(name="late_built")


def no_attention() -> keras.Model:
    x = keras.Input(shape=(5, 8), name="x")
    return keras.Model(x, layers.Dense(3)(x), name="dense_only")


def with_lambda() -> keras.Model:
    """A model whose file carries Python bytecode (a Lambda over a Python lambda)."""
    x = keras.Input(shape=(5, 8), name="x")
    y = layers.Lambda(lambda t: t * 2.0, name="doubler")(x)
    return keras.Model(x, layers.MultiHeadAttention(num_heads=1, key_dim=2)(y, y), name="with_lambda")


def variable_length(heads: int = 2) -> keras.Model:
    """Token ids of unknown length (None): scan needs --input tokens=LENGTH."""
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCABULARY, WIDTH, mask_zero=True)(tokens)
    return keras.Model(tokens, layers.MultiHeadAttention(num_heads=heads, key_dim=4, name="attention")(x, x))


def variable_length_four_heads() -> keras.Model:
    return variable_length(heads=4)


def bert_backbone() -> keras.Model:
    """A tiny BERT from KerasHub's constructor (no weights downloaded): CachedMultiHeadAttention inside
    TransformerEncoder layers, built in their build()."""
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
    )


def gpt2_backbone() -> keras.Model:
    """A tiny GPT-2 from KerasHub's constructor: causal CachedMultiHeadAttention, a subclass that
    overrides call."""
    import keras_hub

    return keras_hub.models.GPT2Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
    )


def whisper_backbone() -> keras.Model:
    """A tiny Whisper from KerasHub's constructor: WhisperCachedMultiHeadAttention, whose build leaves
    the key projection without a bias although use_bias is True."""
    import keras_hub

    return keras_hub.models.WhisperBackbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        num_mels=8,
        max_encoder_sequence_length=12,
        max_decoder_sequence_length=6,
    )


def gqa_decoder(num_key_value_heads: int = 2) -> keras.Model:
    """A Llama-style decoder block: causal GroupQueryAttention (8 query heads sharing
    ``num_key_value_heads`` key/value heads) over token embeddings, then cross-attention to a
    memory of another length (a functional model needs the memory as wide as the query: Keras's
    compute_output_shape demands it, although the layer's call does not)."""
    tokens = keras.Input(shape=(TARGET,), dtype="int32", name="tokens")
    memory = keras.Input(shape=(SOURCE, WIDTH), name="memory")
    x = layers.Embedding(VOCABULARY, WIDTH, name="embed")(tokens)
    attention = layers.GroupQueryAttention(
        head_dim=4, num_query_heads=8, num_key_value_heads=num_key_value_heads, name="self_gqa"
    )
    x = layers.LayerNormalization(name="norm")(x + attention(x, x, use_causal_mask=True))
    # No return_attention_scores: before Keras 3.15 a functional model gets no GroupQueryAttention
    # scores (keras-team/keras#22642).
    crossed = layers.GroupQueryAttention(
        head_dim=4, num_query_heads=4, num_key_value_heads=1, use_bias=False, name="cross_mqa"
    )(x, memory)
    return keras.Model([tokens, memory], crossed, name="gqa_decoder")


def gqa_decoder_four_kv_heads() -> keras.Model:
    return gqa_decoder(num_key_value_heads=4)


def gqa_narrow_memory() -> keras.Model:
    """A functional model Keras refuses to build: GroupQueryAttention's compute_output_shape wants
    the memory as wide as the query (its call would run it)."""
    x = keras.Input(shape=(TARGET, WIDTH), name="x")
    memory = keras.Input(shape=(SOURCE, 12), name="memory")
    attention = layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    return keras.Model([x, memory], attention(x, memory))


#: The tiny KerasHub decoders' sizes, which the other-attention tests compare against.
HUB_HEADS, HUB_KV_HEADS, HUB_HIDDEN, HUB_HEAD_DIM = 4, 2, 16, 4


def llama_backbone() -> keras.Model:
    """A tiny Llama from KerasHub's constructor: LlamaAttention is a plain keras.layers.Layer."""
    import keras_hub

    return keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=HUB_HEADS,
        num_key_value_heads=HUB_KV_HEADS,
        hidden_dim=HUB_HIDDEN,
        intermediate_dim=32,
    )


def mistral_backbone() -> keras.Model:
    """A tiny Mistral: CachedMistralAttention, with a sliding window."""
    import keras_hub

    return keras_hub.models.MistralBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=HUB_HEADS,
        num_key_value_heads=HUB_KV_HEADS,
        hidden_dim=HUB_HIDDEN,
        intermediate_dim=32,
        sliding_window=4,
    )


def gemma_backbone() -> keras.Model:
    """A tiny Gemma: CachedGemmaAttention, whose query kernel is heads first (btd,ndh->btnh)."""
    import keras_hub

    return keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=HUB_HEADS,
        num_key_value_heads=1,
        hidden_dim=HUB_HIDDEN,
        intermediate_dim=32,
        head_dim=HUB_HEAD_DIM,
    )


def gemma2_backbone() -> keras.Model:
    """A tiny Gemma 2: CachedGemmaAttention with a logit soft cap of 50 and sliding-window layers."""
    import keras_hub

    return keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=HUB_HEADS,
        num_key_value_heads=HUB_KV_HEADS,
        hidden_dim=HUB_HIDDEN,
        intermediate_dim=32,
        head_dim=HUB_HEAD_DIM,
        query_head_dim_normalize=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=50.0,
        final_logit_soft_cap=30.0,
        use_sliding_window_attention=True,
        sliding_window_size=4,
    )


def qwen_backbone() -> keras.Model:
    """A tiny Qwen (2): QwenAttention, biased query/key/value projections."""
    import keras_hub

    return keras_hub.models.QwenBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=HUB_HEADS,
        num_key_value_heads=HUB_KV_HEADS,
        hidden_dim=HUB_HIDDEN,
        intermediate_dim=32,
    )


def phi3_backbone() -> keras.Model:
    """A tiny Phi-3: Phi3Attention."""
    import keras_hub

    return keras_hub.models.Phi3Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        hidden_dim=HUB_HIDDEN,
        intermediate_dim=32,
        num_query_heads=HUB_HEADS,
        num_key_value_heads=HUB_KV_HEADS,
    )


def plain_attentions() -> keras.Model:
    """keras.layers.Attention and AdditiveAttention (called on a list, seed 002) beside a
    MultiHeadAttention on the same inputs."""
    query = keras.Input((TARGET, 8), name="query")
    value = keras.Input((SOURCE, 8), name="value")
    outputs = [
        layers.Attention(name="dot")([query, value]),
        layers.AdditiveAttention(name="additive")([query, value]),
        layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(query, value),
    ]
    return keras.Model([query, value], outputs, name="three_attentions")


class RescaledAttention(layers.Attention):
    """keras.layers.Attention whose scores a user divides by sqrt(features), as MultiHeadAttention does:
    the same class to isinstance, another function."""

    def _calculate_scores(self, query: Any, key: Any) -> Any:
        scores = super()._calculate_scores(query, key)
        return scores / float(query.shape[-1]) ** 0.5


def masked_plain_attentions() -> keras.Model:
    """Attention (concat scores, scaled) and AdditiveAttention called with masks as a list and the
    causal mask, and a rescaled subclass of Attention: what scan re-executes on their real calls."""
    query = keras.Input((TARGET, 8), name="query")
    value = keras.Input((SOURCE, 8), name="value")
    key = keras.Input((SOURCE, 8), name="key")
    query_mask = keras.Input((TARGET,), dtype="bool", name="query_mask")
    value_mask = keras.Input((SOURCE,), dtype="bool", name="value_mask")
    concat = layers.Attention(use_scale=True, score_mode="concat", name="concat")
    outputs = [
        concat([query, value, key], mask=[query_mask, value_mask], use_causal_mask=True),
        layers.AdditiveAttention(name="additive")([query, value], mask=[None, value_mask]),
        RescaledAttention(name="rescaled")([query, value]),
    ]
    return keras.Model([query, value, key, query_mask, value_mask], outputs, name="masked_attentions")


class OwnAttention(layers.Layer):
    """A user's own attention: Dense projections, an einsum and ops.softmax, nothing of Keras's."""

    def __init__(self, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.query, self.key, self.value = (layers.Dense(width, name=name) for name in ("q", "k", "v"))

    def call(self, x: Any) -> Any:
        scores = keras.ops.einsum("btd,bsd->bts", self.query(x), self.key(x))
        return keras.ops.einsum("bts,bsd->btd", keras.ops.softmax(scores, axis=-1), self.value(x))


class FusedAttention(layers.Layer):
    """A user's own attention through ops.dot_product_attention (heads of size 4)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.qkv = layers.EinsumDense("btd,dnh->btnh", output_shape=(None, 2, 4), name="qkv")

    def call(self, x: Any) -> Any:
        projected = self.qkv(x)
        return keras.ops.reshape(keras.ops.dot_product_attention(projected, projected, projected), (-1, 5, 8))


class FakeAttention(layers.Layer):
    """Named like attention, computing none: a token classifier whose softmax is its Dense's
    activation, and a softmax over a rank-2 tensor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first = layers.Dense(8, name="first")
        self.classes = layers.Dense(3, activation="softmax", name="classes")

    def call(self, x: Any) -> Any:
        pooled = keras.ops.softmax(keras.ops.mean(self.first(x), axis=1), axis=-1)  # (batch, 8)
        return self.classes(x) * keras.ops.sum(pooled, axis=-1)[:, None, None]


def own_attentions() -> keras.Model:
    """The user's own attention classes, one computing none, and a Softmax layer of the model's own."""
    x = keras.Input((5, 8), name="x")
    own = OwnAttention(8, name="own")(x)
    fused = FusedAttention(name="fused")(x)
    fake = FakeAttention(name="fake_attention")(x)
    probabilities = layers.Softmax(name="softmax")(layers.Dense(3)(own + fused))
    return keras.Model(x, [probabilities, fake], name="own_attentions")


class GroupedAttention(layers.Layer):
    """A user's own grouped-query attention, written as KerasHub's LlamaAttention is (EinsumDense
    projections named query, key, value and attention_output, a Softmax layer, two einsums), with
    no rotary embedding. ``tiled``: key/value heads laid out with ops.tile instead of ops.repeat,
    so query head i reads key/value head i % kv_heads, not i // group: another computation, which
    scan's re-execution must not reproduce, whatever the size of the logits."""

    def __init__(
        self, heads: int = 4, kv_heads: int = 2, head_dim: int = 4, tiled: bool = False, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.heads, self.kv_heads, self.tiled = heads, kv_heads, tiled
        self.query = layers.EinsumDense("btm,muh->btuh", output_shape=(None, heads, head_dim), name="query")
        self.key = layers.EinsumDense("bsm,mvh->bsvh", output_shape=(None, kv_heads, head_dim), name="key")
        self.value = layers.EinsumDense(
            "bsm,mvh->bsvh", output_shape=(None, kv_heads, head_dim), name="value"
        )
        self.softmax = layers.Softmax(axis=-1, name="attention_softmax")
        self.scale = head_dim**-0.5

    def build(self, shape: Any) -> None:
        self.output_dense = layers.EinsumDense(
            "btuh,uhm->btm", output_shape=(None, shape[-1]), bias_axes="m", name="attention_output"
        )
        self.output_dense.build((None, None, self.heads, self.key.partial_output_shape[-1]))

    def call(self, x: Any) -> Any:
        query, key, value = self.query(x), self.key(x), self.value(x)
        group = self.heads // self.kv_heads
        if self.tiled:
            key, value = (keras.ops.tile(t, (1, 1, group, 1)) for t in (key, value))
        else:
            key, value = (keras.ops.repeat(t, group, axis=2) for t in (key, value))
        scores = keras.ops.einsum("btuh,bsuh->buts", query, key) * self.scale
        weights = self.softmax(scores)
        return self.output_dense(keras.ops.einsum("buts,bsuh->btuh", weights, value))


def grouped_attentions() -> keras.Model:
    """The same grouped-query attention twice, ops.repeat (``repeat``) and ops.tile (``tiled``)."""
    x = keras.Input((5, 16), name="x")
    repeated = GroupedAttention(name="repeat")(x)
    tiled = GroupedAttention(tiled=True, name="tiled")(x)
    return keras.Model(x, [repeated, tiled], name="grouped_attentions")


def keras2_model() -> Any:
    """A Keras 2 (tf_keras) model: a text encoder (self-attention, then causal cross-attention) and an
    image branch attending over axis -3, which is the width in Keras 2 (scan --keras 2 / all)."""
    import tf_keras

    tokens = tf_keras.Input((6, 8), name="tokens")
    image = tf_keras.Input((5, 6, 4), name="image")
    attention = tf_keras.layers.MultiHeadAttention
    encoded = attention(num_heads=2, key_dim=4, name="self_attn")(tokens, tokens)
    crossed = attention(num_heads=2, key_dim=4, name="cross")(encoded, tokens, use_causal_mask=True)
    pictured = attention(num_heads=2, key_dim=3, attention_axes=(-3,), name="width")(image, image)
    return tf_keras.Model([tokens, image], [crossed, pictured], name="keras2_model")


def porters_model() -> keras.Model:
    """What a porter meets (scan --targets): a sentence attention with the tokens' mask_zero mask and a
    causal one, another on its output (the mask travels with it, the causal one does not), an image
    attending over its height and width, and a keras.layers.Attention the rules do not cover."""
    tokens = keras.Input((16,), dtype="int32", name="tokens")
    x = layers.Embedding(100, 32, mask_zero=True)(tokens)
    x = layers.MultiHeadAttention(4, 8, name="masked")(x, x, use_causal_mask=True)
    x = layers.MultiHeadAttention(4, 8, name="plain")(x, x)
    image = keras.Input((6, 6, 8), name="image")
    grid = layers.MultiHeadAttention(2, 4, attention_axes=(1, 2), name="grid")(image, image)
    pooled = layers.Attention(name="dot")([x, x])
    return keras.Model([tokens, image], [pooled, grid], name="porters")


def half_and_full() -> keras.Model:
    """Two attention calls on one sentence, one computing in float16: scan --targets --run converts
    each as its own layer, and LiteRT takes one and refuses the other."""
    x = keras.Input((8, 16), name="x")
    full = layers.MultiHeadAttention(2, 8, name="full")(x, x)
    half = layers.MultiHeadAttention(2, 8, dtype="float16", name="half")(x, x)
    return keras.Model(x, [full, half], name="half_and_full")
