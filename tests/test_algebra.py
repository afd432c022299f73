"""The pure shape algebra, against facts measured on the real layer.

Expected values here come from the forum answer in shared/seeds and from
KERAS_FACTS.md (real forward passes), not from this tool's output.
"""

import math

import opt_einsum
import pytest

from mha_cli.core.config import MHAConfig, Role
from mha_cli.core.errors import ConfigError
from mha_cli.core.mha import attention_equations, derive, projection_equation, shrunk

IMAGE = (32, 64, 4)


def test_forum_case_1_all_axes() -> None:
    d = derive(MHAConfig(IMAGE, num_heads=2, key_dim=128))
    assert d.shapes["attention_scores"].shape == (None, 2, 32, 64, 32, 64)
    assert d.shapes["output"].shape == (None, 32, 64, 4)
    assert d.layer.attention_axes == (1, 2)


def test_forum_case_2_height_only() -> None:
    d = derive(MHAConfig(IMAGE, num_heads=2, key_dim=128, attention_axes=(1,)))
    assert d.shapes["attention_scores"].shape == (None, 64, 2, 32, 32)
    assert d.shapes["output"].shape == (None, 32, 64, 4)
    assert d.equations == {
        "query": "abcd,def->abcef",
        "key": "abcd,def->abcef",
        "value": "abcd,def->abcef",
        "dot_product": "afcde,abcde->acdbf",
        "combine": "acdbf,afcde->abcde",
        "output": "abcde,def->abcf",
    }
    assert [axis.role for axis in d.axes] == [Role.BATCH, Role.ATTENDED, Role.FREE, Role.FEATURE]
    assert d.shapes["attention_scores"].labels == ("batch", "width", "heads", "height_q", "height_k")
    assert d.params == 4868  # model.summary() for this layer


def test_cross_attention_scores_use_key_length() -> None:
    d = derive(MHAConfig((8, 16), (4, 16), num_heads=2, key_dim=2))
    assert d.shapes["attention_scores"].shape == (None, 2, 8, 4)
    assert d.equations["dot_product"] == "aecd,abcd->acbe"


def test_negative_axis_resolves_against_input_rank() -> None:
    assert derive(MHAConfig(IMAGE, attention_axes=(-2,))).layer.attention_axes == (2,)
    assert derive(MHAConfig(IMAGE, attention_axes=(-3,))).layer.attention_axes == (1,)


def test_rank3_none_and_axis_1_are_the_same_layer() -> None:
    none = derive(MHAConfig((10, 16)))
    one = derive(MHAConfig((10, 16), attention_axes=(1,)))
    assert none.layer.attention_axes == one.layer.attention_axes == (1,)
    assert none.equations == one.equations
    assert any("resolve to the same axes (1,)" in line for line in none.summary)


def test_axis_order_is_kept_in_scores_layout() -> None:
    d = derive(MHAConfig(IMAGE, attention_axes=(2, 1)))
    assert d.shapes["attention_scores"].shape == (None, 2, 64, 32, 64, 32)


def test_output_shape_tuple_replaces_feature_axis() -> None:
    d = derive(MHAConfig((8, 16), (4, 16), output_shape=(3, 2), value_dim=5))
    assert d.shapes["output"].shape == (None, 8, 3, 2)
    weights = {w.projection: w for w in d.weights}
    assert weights["attention_output"].kernel == (2, 5, 3, 2)
    assert weights["attention_output"].bias == (3, 2)


def test_gate_adds_a_query_projection_to_value_dim() -> None:
    d = derive(MHAConfig((8, 16), use_gate=True, value_dim=3, num_heads=4))
    assert d.shapes["gate"].shape == (None, 8, 4, 3)
    assert d.equations["gate"] == d.equations["query"]
    assert {w.projection for w in d.weights} == {"query", "key", "value", "gate", "attention_output"}


def test_no_bias_drops_bias_params() -> None:
    with_bias = derive(MHAConfig((8, 16)))
    without = derive(MHAConfig((8, 16), use_bias=False))
    assert all(w.bias is None for w in without.weights)
    assert with_bias.params - without.params == 3 * 2 * 8 + 16


def test_defaults_are_recorded() -> None:
    d = derive(MHAConfig((8, 16)))
    assert (d.layer.num_heads, d.layer.key_dim, d.layer.value_dim) == (2, 8, 8)
    assert {"num_heads", "key_dim", "value_dim", "attention_axes", "output_shape"} <= d.layer.defaulted
    assert derive(MHAConfig((8, 1))).layer.key_dim == 1


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            MHAConfig((16,)),
            r"--shape \(16,\): rank 2 with the batch axis; MultiHeadAttention needs rank >= 3",
        ),
        (
            MHAConfig(IMAGE, attention_axes=(4,)),
            r"axis 4 is the key_dim axis of the projected query \(batch, ..., heads, key_dim\); the real "
            r"layer fails on it \(its einsum would repeat a letter\); attention axes are 1..2 \(or -3..-2\)",
        ),
        (MHAConfig(IMAGE, attention_axes=(-5,)), "axis -5 is out of range for a rank-4 input"),
        (MHAConfig(IMAGE, attention_axes=(0,)), "axis 0 is the batch axis"),
        (MHAConfig(IMAGE, attention_axes=(-4,)), "axis -4 is the batch axis"),
        (MHAConfig(IMAGE, attention_axes=(5,)), "axis 5 is out of range"),
        (MHAConfig(IMAGE, attention_axes=(1, -3)), r"axis -3 is given twice \(as axis 1\)"),
        (MHAConfig(IMAGE, attention_axes=()), "no axes given"),
        (MHAConfig((8, 16), (4, 4, 16)), "rank 4 differs from the query's rank 3"),
        (MHAConfig((8, 16), (4, 16), (5, 16)), "key and value must agree on every axis but the last"),
        (MHAConfig((3, 8, 16), (1, 8, 16), attention_axes=(2,)), r"axis 1 \(height\) is free"),
        (MHAConfig((8, 16), num_heads=0), "--num-heads 0: must be a positive integer"),
        (MHAConfig((8, 16), key_dim=-1), "--key-dim -1: must be a positive integer"),
        (MHAConfig((8, 16), output_shape=()), "--output-shape"),
        (MHAConfig((8, 16), dropout=1.0), r"must be in \[0, 1\)"),
        (MHAConfig((8, 16), dtype="int8"), "unknown dtype"),
        (MHAConfig(IMAGE, axis_names=("h",)), "1 names for 2 axes"),
        (MHAConfig(IMAGE, axis_names=("h", "h")), "distinct"),
        (MHAConfig(IMAGE, axis_names=("heads", "w")), "'heads' is reserved"),
        (MHAConfig((2,) * 14), "too many axes"),
    ],
)
def test_invalid_configurations_name_the_option_and_the_fix(config: MHAConfig, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        derive(config)
    assert str(error.value).startswith("--")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("free", "bound", "out", "expected"),
    [
        (2, 1, 2, "abc,cde->abde"),
        (3, 1, 2, "abcd,def->abcef"),
        (3, 2, 1, "abcde,def->abcf"),
        (2, 2, 2, "abcd,cdef->abef"),
    ],
)
def test_projection_equation_strings(free: int, bound: int, out: int, expected: str) -> None:
    assert projection_equation(free, bound, out) == expected


def test_attention_equations_strings() -> None:
    assert attention_equations(4, (1,)) == ("aecd,abcd->acbe", "acbe,aecd->abcd")


@pytest.mark.parametrize(
    "config",
    [
        MHAConfig(IMAGE, num_heads=2, key_dim=128, attention_axes=(1,)),
        MHAConfig(
            (6, 5, 3),
            (4, 5, 7),
            num_heads=3,
            key_dim=2,
            value_dim=4,
            attention_axes=(1,),
            output_shape=(2, 3),
        ),
        MHAConfig((2, 3, 4, 5), attention_axes=(3, 1), use_gate=True),
    ],
)
def test_flops_match_opt_einsum(config: MHAConfig) -> None:
    """Our 2 x product-of-letter-sizes count against opt_einsum's contract_path."""
    d = derive(config)
    for einsum in d.einsums.values():
        shapes = [tuple(1 if s is None else s for s in t.shape) for t in einsum.operands]
        _, info = opt_einsum.contract_path(einsum.equation, *shapes, shapes=True, optimize="optimal")
        assert einsum.flops_per_item() == info.opt_cost, einsum.name
        assert math.prod(1 if s is None else s for s in einsum.result.shape) == info.largest_intermediate


def test_shrunk_keeps_features_and_cuts_every_other_axis() -> None:
    config = MHAConfig(
        (224, 3, 64, 16), value_shape=(100, 3, 64, 8), key_shape=(100, 3, 64, 12), attention_axes=(1,)
    )
    small = shrunk(config)
    assert (small.query_shape, small.value_shape, small.key_shape) == (
        (4, 3, 4, 16),
        (4, 3, 4, 8),
        (4, 3, 4, 12),
    )
    assert small.attention_axes == config.attention_axes
    assert derive(small).equations == derive(config).equations
    assert derive(small).weights == derive(config).weights


def test_bytes_per_item_are_elements_times_the_dtype_size() -> None:
    for dtype, itemsize in (("float32", 4), ("float64", 8), ("bfloat16", 2)):
        d = derive(MHAConfig(IMAGE, num_heads=2, key_dim=128, attention_axes=(1,), dtype=dtype))
        assert d.bytes_per_item(d.shapes["attention_scores"]) == 64 * 2 * 32 * 32 * itemsize
        assert d.bytes_per_item(d.inputs["query"]) == 32 * 64 * 4 * itemsize


@pytest.mark.parametrize(
    ("config", "message"),
    [
        # Review bug 7: names that collide with the _q/_k sides or the output labels were accepted,
        # then failed as an internal error or labelled two axes alike.
        (MHAConfig((8, 8, 4), axis_names=("seq_k", "seq")), "'seq_k' ends in _k, which marks"),
        (
            MHAConfig((8, 8, 4), attention_axes=(1, 2), axis_names=("a_k", "a_q")),
            "'a_k' ends in _k, which marks",
        ),
        (
            MHAConfig((4, 5, 6), output_shape=(2, 3), attention_axes=(2,), axis_names=("out2", "b")),
            "'out2' is reserved",
        ),
    ],
)
def test_axis_names_that_would_collide_are_refused(config: MHAConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        derive(config)


def test_every_accepted_name_labels_one_axis() -> None:
    d = derive(MHAConfig((4, 5, 6), output_shape=(2, 3), attention_axes=(2,), axis_names=("rows", "b")))
    labels = d.shapes["output"].labels
    assert len(set(labels)) == len(labels)


def test_shrinking_for_verify_small_shrinks_the_mask_too() -> None:
    """Review bug 6: --verify-small kept the full mask, so a valid mask became an error."""
    big = MHAConfig((30000, 8), batch=1, mask_shape=(30000, 30000))
    small = shrunk(big)
    assert small.mask_shape == (4, 4)
    derive(small)  # valid, as the full one is
    batched = shrunk(MHAConfig((30000, 8), batch=8, mask_shape=(8, 1, 30000)))
    assert batched.mask_shape == (8, 1, 4)  # the batch axis is not a position: kept
    assert shrunk(MHAConfig((30, 8), mask_shape=(None, 30, 30))).mask_shape == (None, 4, 4)


def test_the_summary_counts_what_the_masks_let_through() -> None:
    """Review bug 4: with --causal the summary said every query attends to all N key positions."""
    causal = derive(MHAConfig((30, 16), causal=True)).summary[0]
    assert causal.startswith("Each query position attends to 1 to 30 of the 30 key positions (seq)")
    assert "as the causal mask allows" in causal
    window = derive(MHAConfig((30, 16), sliding_window=3)).summary[0]
    assert window.startswith("Each query position attends to 3 to 5 of the 30 key positions (seq)")
    # Cross-attention with a window: queries far from every key position have none left.
    far = derive(MHAConfig((12, 16), (4, 16), sliding_window=2)).summary[0]
    assert "0 to 3 of the 4 key positions" in far
    assert "7 query positions have none left: with return_attention_scores their weights are all zero" in far
    assert "the fused path a plain call takes gives them other outputs (see plain_call)" in far
    given = derive(MHAConfig((10, 16), mask_shape=(10, 10))).summary[0]
    assert "up to 10 key positions (seq) of the same batch item, as the masks decide" in given


def test_summary_wording_for_one_head_and_cross_attention_features() -> None:
    """Review bug 12: "1 heads", and a feature sentence that gave only the query's size."""
    d = derive(MHAConfig((8, 16), (4, 12), num_heads=1))
    assert "separately in each of 1 heads" not in " ".join(d.summary)
    assert "in its one head" in d.summary[0]
    feature = next(line for line in d.summary if line.startswith("The feature axis"))
    assert "size 16 in the query, 12 in the key and value" in feature
    assert "projected to 1 head x 16 (key_dim)" in feature


def test_the_fused_path_is_not_said_to_spare_the_scores() -> None:
    """Review bug 5: on TensorFlow the fused path builds the full logits (+532 MiB measured for a
    4096-token input, as the call with scores), so "never materialises" was wrong."""
    summary = " ".join(derive(MHAConfig((4096, 64))).summary)
    assert "never materialises" not in summary
    assert "TensorFlow's builds the full logits all the same" in summary
