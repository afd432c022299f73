"""Heads read from a not-explained layer's own projections (mha_cli.core.other): pure, no Keras."""

from __future__ import annotations

from mha_cli.core.other import Heads, Projection, per_head, read_heads


def llama(
    query_heads: int = 4, kv_heads: int = 2, head_dim: int = 4, hidden: int = 16
) -> tuple[Projection, ...]:
    return (
        Projection("query", "EinsumDense", "bqm,muh->bquh", (hidden, query_heads, head_dim)),
        Projection("key", "EinsumDense", "bkm,mvh->bkvh", (hidden, kv_heads, head_dim)),
        Projection("value", "EinsumDense", "bkm,mvh->bkvh", (hidden, kv_heads, head_dim)),
        Projection("attention_output", "EinsumDense", "bquh,uhm->bqm", (query_heads, head_dim, hidden)),
    )


def test_heads_and_their_size_come_in_the_outputs_order() -> None:
    assert per_head(Projection("q", "EinsumDense", "bqm,muh->bquh", (16, 4, 8))) == (4, 8, False)
    assert per_head(Projection("q", "EinsumDense", "btd,ndh->btnh", (4, 16, 8))) == (4, 8, True)
    assert per_head(Projection("o", "EinsumDense", "bquh,uhm->bqm", (4, 8, 16))) is None  # back from heads
    assert per_head(Projection("d", "Dense", None, (16, 16))) is None
    assert per_head(Projection("x", "EinsumDense", "...m,mh->...h", (16, 4))) is None


def test_the_call_must_agree_with_the_kernels() -> None:
    heads = read_heads(llama(), "softmax", (None, 4, 8, 8))
    assert isinstance(heads, Heads)
    assert (heads.query_heads, heads.key_value_heads, heads.head_dim, heads.heads_first) == (4, 2, 4, False)
    assert (
        heads.kv_cache_bytes_per_token("float32") == 64 and heads.kv_cache_bytes_per_token("bfloat16") == 32
    )
    fused = read_heads(llama(), "dot_product_attention", (None, 8, 4, 4))
    assert isinstance(fused, Heads) and "has 4 heads of 4" in fused.agreement
    # Scores with 8 heads where the kernels say 4: what the kernels say is not what ran.
    assert read_heads(llama(), "softmax", (None, 8, 8, 8)) == (
        "not read: its kernels say 4 query heads of 4 (2 key/value), but its scores (None, 8, 8, 8) "
        "have 8 heads"
    )
    assert read_heads(llama(), "softmax", (None, 8, 8)).startswith(
        "not read: its kernels say 4 query heads, and"
    )


def test_what_is_not_grouped_query_attention_is_not_read() -> None:
    assert read_heads(llama(kv_heads=3), "softmax", (None, 4, 8, 8)).startswith(
        "not read: query 4 x 4, key 3 x 4 and value 3 x 4 are not grouped-query heads"
    )
    unnamed = tuple(Projection(f"p{i}", p.class_name, p.equation, p.kernel) for i, p in enumerate(llama()))
    assert read_heads(unnamed, "softmax", (None, 4, 8, 8)) == (
        "not read: its projections are not one each named query, key and value"
    )
