"""compare --axes all: every attention_axes choice, its row, and which choices compute the same function.

The enumeration and the grouping are checked against Keras itself: layers built
here, straight from keras.layers.MultiHeadAttention with one set of weights,
decide which choices give the same output, not the tool's own runs.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mha_cli.cli.app import app
from mha_cli.core import choices as choices_module
from mha_cli.core.choices import candidate_axes, every_choice, group_letter
from mha_cli.core.config import MHAConfig
from mha_cli.core.limits import check_shape_limits
from mha_cli.operations.explore import explore

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["compare", *args], env={"COLUMNS": "120", "NO_COLOR": "1"})


def labels_by_group(found) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[found.choices[i].label for i in group.members] for group in found.groups]


# --- The algebra: no Keras -------------------------------------------------------


@pytest.mark.parametrize("rank", [3, 4, 5, 6])
def test_every_ordered_selection_of_the_middle_axes_is_listed_once(rank: int) -> None:
    middle = range(1, rank - 1)
    expected = {
        chosen
        for size in range(1, len(middle) + 1)
        for chosen in itertools.product(middle, repeat=size)
        if len(set(chosen)) == size
    }
    found = candidate_axes(rank)
    assert found[0] is None
    assert len(found) == len(set(found)) == 1 + len(expected)
    assert set(found[1:]) == expected
    n = len(middle)
    assert len(found) == 1 + sum(math.perm(n, k) for k in range(1, n + 1))  # 2, 5, 16, 65


def test_for_a_sentence_axes_1_and_none_are_one_function() -> None:
    found = every_choice(MHAConfig((10, 16)), "tensorflow")
    assert labels_by_group(found) == [["None", "(1,)"]]


def test_for_the_forums_image_the_orders_of_both_axes_and_none_are_one_function() -> None:
    found = every_choice(MHAConfig((32, 64, 4)), "tensorflow")
    assert labels_by_group(found) == [["None", "(1, 2)", "(2, 1)"], ["(1,)"], ["(2,)"]]
    scores = {choice.label: choice.derivation.shapes["attention_scores"].shape for choice in found.choices}
    # The order changes the layout of the scores, not the output.
    assert scores["(1, 2)"] == (None, 2, 32, 64, 32, 64)
    assert scores["(2, 1)"] == (None, 2, 64, 32, 64, 32)


def test_an_axis_with_one_key_position_mixes_nothing() -> None:
    found = every_choice(MHAConfig((4, 1, 6, 8)), "tensorflow")
    groups = {tuple(group.axes): labels_by_group(found)[n] for n, group in enumerate(found.groups)}
    assert groups[(1,)] == ["(1,)", "(1, 2)", "(2, 1)"]
    assert groups[()] == ["(2,)"]  # every query attends to its own position only


def test_a_choice_the_shapes_rule_out_is_omitted_with_the_reason() -> None:
    found = every_choice(MHAConfig((8, 8, 16), value_shape=(8, 4, 16)), "tensorflow")
    assert [choice.label for choice in found.choices] == ["None", "(2,)", "(1, 2)", "(2, 1)"]
    assert [omitted.argument for omitted in found.omitted] == [(1,)]
    assert "free (not attended)" in found.omitted[0].problem


def test_with_a_mask_only_the_same_axes_in_the_same_order_are_grouped() -> None:
    found = every_choice(MHAConfig((6, 6, 8), mask_shape=(None, 6, 6, 6, 6)), "tensorflow")
    grouped = [labels for labels in labels_by_group(found) if len(labels) > 1]
    assert grouped == [["None", "(1, 2)"]]


def test_choices_tensorflow_refuses_are_listed_and_marked_not_dropped() -> None:
    found = every_choice(MHAConfig((2, 2, 2, 2, 4)), "tensorflow")
    assert len(found.choices) == 65
    for choice in found.choices:
        try:
            check_shape_limits(choice.derivation, "tensorflow")
            assert choice.rejected is None
        except Exception as error:  # the limit check raises ConfigError
            assert choice.rejected == str(error).split(": ", 1)[1]
    assert next(c for c in found.choices if c.label == "None").rejected is not None
    assert all(choice.rejected is None for choice in every_choice(MHAConfig((2, 2, 2, 2, 4)), "jax").choices)


def test_the_machine_dependent_onednn_limit_is_a_caveat_not_a_verdict() -> None:
    tf = {c.label: c.caveat for c in every_choice(MHAConfig((4, 5, 6, 8)), "tensorflow").choices}
    assert tf["(1,)"] is not None and "--run tells" in tf["(1,)"]
    assert tf["(1, 2)"] is None
    assert all(
        c.caveat is None for c in every_choice(MHAConfig((4, 5, 6, 8), dtype="float64"), "tensorflow").choices
    )
    assert all(c.caveat is None for c in every_choice(MHAConfig((4, 5, 6, 8)), "jax").choices)


def test_group_letters_go_on_past_z() -> None:
    assert [group_letter(n) for n in (0, 25, 26, 27, 701, 702)] == ["A", "Z", "AA", "AB", "ZZ", "AAA"]


def test_the_list_is_instant_from_the_algebra_and_readable_at_80_columns() -> None:
    result = runner.invoke(
        app, ["compare", "--shape", "4,1,6,8", "--axes", "all"], env={"COLUMNS": "80", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("attention_axes for a query of shape (None, 4, 1, 6, 8): 16 choices")
    assert max(map(len, lines)) <= 80
    rows = [line.split() for line in lines if line.startswith(" A ")]
    assert len(rows) == 9  # None and the 8 orders of (1, 3) and (1, 2, 3) that mix depth and width
    assert "answered from the shape algebra: --run runs every choice" in result.stdout


def test_json_lists_every_choice_with_its_resolved_axes_and_the_groups() -> None:
    result = invoke("--shape", "32,64,4", "--axes", "all", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["executed"] is False and doc["keras_version"] is None
    by_label = {choice["label"]: choice for choice in doc["choices"]}
    assert list(by_label) == ["None", "(1,)", "(2,)", "(1, 2)", "(2, 1)"]
    assert by_label["None"]["attention_axes"] == [1, 2] and by_label["None"]["attention_axes_given"] is None
    assert by_label["(2, 1)"]["attention_axes"] == [2, 1]
    assert by_label["(1,)"]["attention_scores"] == [None, 64, 2, 32, 32]
    assert (
        by_label["(1,)"]["free_axes"] == ["width"] and by_label["(1,)"]["attention_weights_per_query"] == 32
    )
    assert by_label["(1,)"]["runs"] is True and by_label["(1,)"]["checks"] is None
    assert [(g["name"], [doc["choices"][i]["label"] for i in g["members"]]) for g in doc["groups"]] == [
        ("A", ["None", "(1, 2)", "(2, 1)"]),
        ("B", ["(1,)"]),
        ("C", ["(2,)"]),
    ]
    assert doc["groups"][0]["mixes"] == ["height", "width"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["compare", "--shape", "8,16", "--axes", "all", "--axes", "1"], "--axes all: all stands for every"),
        (["--shape", "8,16", "--axes", "all"], "--axes all: every choice is listed by compare"),
        (["compare", "--shape", "8,16", "--axes", "all", "--run", "--no-run"], "--run and --no-run"),
        (["compare", "--shape", "8", "--axes", "all"], "--shape 8: rank 2"),
    ],
)
def test_bad_uses_are_one_line_and_exit_2(args: list[str], problem: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 2, result.output
    assert problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- Against the real layer ------------------------------------------------------


def keras_outputs(shape: tuple[int, ...], choices: list[tuple[int, ...] | None], heads: int, key_dim: int):  # type: ignore[no-untyped-def]
    """Each choice's output and scores shape from keras.layers.MultiHeadAttention, on one set of weights."""
    import keras
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, *shape)).astype("float32")
    weights = None
    found = {}
    for choice in choices:
        layer = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=key_dim, attention_axes=choice)
        layer.build(x.shape, x.shape)
        if weights is None:
            weights = [rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        output, scores = layer(x, x, return_attention_scores=True)
        found[choice] = (np.asarray(output), tuple(scores.shape))
    return found


@pytest.mark.keras
def test_the_real_layer_agrees_with_the_grouping_of_the_forums_image() -> None:
    import numpy as np

    found = every_choice(MHAConfig((8, 16, 4)), "tensorflow")
    real = keras_outputs((8, 16, 4), [choice.argument for choice in found.choices], heads=2, key_dim=2)
    for one, other in itertools.combinations(range(len(found.choices)), 2):
        same = found.group_of(one) == found.group_of(other)
        first, second = (real[found.choices[i].argument][0] for i in (one, other))
        assert np.allclose(first, second, atol=1e-5) == same, (
            found.choices[one].label,
            found.choices[other].label,
        )
    for choice in found.choices:
        assert real[choice.argument][1][1:] == choice.derivation.shapes["attention_scores"].shape[1:]


@pytest.mark.keras
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(lambda middle: (*middle, 4)),
    heads=st.integers(1, 2),
)
def test_same_group_exactly_when_keras_gives_the_same_output(shape: tuple[int, ...], heads: int) -> None:
    """Property: for small inputs of rank 3 and 4 (size-1 axes included), grouping == Keras's outputs."""
    import numpy as np

    found = every_choice(MHAConfig(shape, num_heads=heads, key_dim=3), "tensorflow")
    real = keras_outputs(shape, [choice.argument for choice in found.choices], heads=heads, key_dim=3)
    for one, other in itertools.combinations(range(len(found.choices)), 2):
        same = found.group_of(one) == found.group_of(other)
        first, second = (real[found.choices[i].argument][0] for i in (one, other))
        assert np.allclose(first, second, atol=1e-5) == same, (
            shape,
            found.choices[one].label,
            found.choices[other].label,
        )


@pytest.mark.keras
def test_run_verifies_every_row_and_a_refused_choice_is_not_fatal() -> None:
    result = invoke("--shape", "2,2,2,2,4", "--axes", "all", "--run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["executed"] is True and doc["keras_version"]
    refused = [choice for choice in doc["choices"] if not choice["runs"]]
    ran = [choice for choice in doc["choices"] if choice["executed"]]
    assert refused and ran and len(refused) + len(ran) == 65
    assert all(choice["rejected"] and choice["checks"] is None for choice in refused)
    assert all(set(choice["checks"].values()) <= {"passed", "warning"} for choice in ran)
    assert doc["failures"] == []
    compared = [group for group in doc["groups"] if group["output_max_abs_diff"] is not None]
    assert compared and all(group["output_max_abs_diff"] <= doc["tolerance"] for group in compared)
    assert doc["closest_groups"]["output_max_abs_diff"] > doc["tolerance"]


@pytest.mark.keras
def test_run_says_how_close_the_outputs_came_in_text() -> None:
    result = invoke("--shape", "32,64,4", "--axes", "all", "--run")
    assert result.exit_code == 0, result.output
    verdict = result.stdout[result.stdout.index("verified on Keras") :]
    assert "5 of 5 choices ran" in verdict
    assert "outputs agree within each group (A within" in verdict
    assert "groups differ (closest:" in verdict


@pytest.mark.keras
@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda derivation: (), "grouped as one function, but their outputs differ"),
        (lambda derivation: derivation.layer.attention_axes, "the algebra grouped one function as two"),
    ],
    ids=["one-group-for-all", "a-group-per-order"],
)
def test_a_wrong_grouping_fails_the_run(monkeypatch: pytest.MonkeyPatch, wrong, says: str) -> None:  # type: ignore[no-untyped-def]
    """The verification can fail: group every choice together, or split (1, 2) from (2, 1)."""
    monkeypatch.setattr(choices_module, "function_of", wrong)
    result = invoke("--shape", "4,4,8", "--axes", "all", "--run")
    assert result.exit_code == 1, result.output
    assert says in " ".join(result.stdout.split())
    assert "check failed:" in result.stderr
    found = explore(MHAConfig((4, 4, 8)), "tensorflow", run=True)
    assert any(says in failure for failure in found.failures)


@pytest.mark.keras
def test_with_a_mask_groups_are_not_claimed_to_differ() -> None:
    """A mask broadcast over a size-1 axis makes (1, 2) and (2, 1)... one function: no false failure."""
    result = invoke("--shape", "1,6,8", "--axes", "all", "--mask-shape", "1,1,1,1,1", "--run")
    assert result.exit_code == 0, result.output
    assert "does not claim that other groups differ" in " ".join(result.stdout.split())
