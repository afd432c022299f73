"""The public Python API (docs/api.md): its names, and each function against the real layer and the CLI.

The live-layer tests build Keras layers themselves, call them on tensors made here, and hold what the
API says against what the layer itself returns; the configuration tests hold the API's documents to
the command line's, byte for byte.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import mha_cli
from mha_cli.cli.app import app

#: The documented API (docs/api.md): adding a name is a decision, so it fails here first.
PUBLIC = [
    *(
        "DenseConfig",
        "GQAConfig",
        "MHAConfig",
        "Result",
        "__version__",
        "clarify",
        "compare",
        "explain",
        "scan",
    ),
]


def test_the_public_names_are_the_documented_ones() -> None:
    assert sorted(mha_cli.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(mha_cli, name) is not None
    with pytest.raises(AttributeError):
        mha_cli.derive  # noqa: B018  (internal modules are not the API)


def test_importing_the_package_imports_nothing_heavy() -> None:
    probe = (
        "import sys, mha_cli\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'numpy', 'rich', 'typer', 'mha_cli.api') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_configuration_answers_as_the_command_line_does() -> None:
    result = mha_cli.explain({"shape": [32, 64, 4], "axes": 1}, execute=False)
    cli = CliRunner().invoke(app, ["--shape", "32,64,4", "--axes", "1", "--no-run", "--json"])
    assert result.to_json() == cli.stdout.rstrip("\n")
    assert result.get("shapes.attention_scores") == [None, 64, 2, 32, 32]
    assert result.command == "explain" and result.failed == ()
    with pytest.raises(ValueError, match="no 'shapez' in the document"):
        result.get("shapez")


def test_configurations_of_every_kind_and_their_mistakes() -> None:
    gqa = mha_cli.explain(mha_cli.GQAConfig(query_shape=(10, 64), num_key_value_heads=2), execute=False)
    assert gqa.get("layer") == "gqa"
    dense = mha_cli.explain(mha_cli.DenseConfig("additive", (5, 4)), execute=False)
    assert dense.get("shapes.attention_scores") == [None, 5, 5]
    with pytest.raises(ValueError, match=r"--axes \(3,\): axis 3 is the key_dim axis"):
        mha_cli.explain({"shape": [5, 4], "axes": 3}, execute=False)
    with pytest.raises(ValueError, match="pass tensors with a layer"):
        mha_cli.explain(mha_cli.MHAConfig(query_shape=(5, 4)), np.zeros((1, 5, 4)))
    with pytest.raises(ValueError, match="give a layer"):
        mha_cli.explain()


def test_a_result_renders_itself_for_rich_and_for_jupyter() -> None:
    from rich.console import Console

    result = mha_cli.explain(mha_cli.MHAConfig(query_shape=(4, 8)), execute=False)
    console = Console(width=80, record=True, color_system=None)
    console.print(result)
    shown = console.export_text()
    assert shown.startswith("layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)\n")
    assert "Verification" in shown and max(len(line) for line in shown.splitlines()) <= 80
    page = result._repr_html_()
    assert page.startswith("<pre") and "(None, 2, 4, 4): batch, heads" in page
    assert "<script" not in page and "http" not in page.split("<body", 1)[-1]
    assert str(result) == result.text(100)


# --- Live layers and models ------------------------------------------------------------------------


@pytest.mark.keras
def test_a_live_layer_is_explained_on_its_own_call_with_its_implicit_masks() -> None:
    """An image attention over the height, the query carrying a mask_zero mask (tensorflow/tensorflow
    #58726's ingredients): the API explains the call Keras made, masks combined, on the layer's weights."""
    import keras

    rng = np.random.default_rng(0)
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=(1,))
    query = rng.standard_normal((2, 6, 5, 8)).astype("float32")
    mask = rng.random((2, 5, 6, 6)) < 0.8  # (B, width, height_q, height_k): the scores without heads
    result = mha_cli.explain(layer, query, attention_mask=mask)
    _, scores = layer(query, query, attention_mask=mask, return_attention_scores=True)
    assert result.get("shapes.attention_scores") == [None, *scores.shape[1:]]
    statuses = {name: check["status"] for name, check in result.to_dict()["checks"].items()}
    assert statuses == dict.fromkeys(
        ("derivation", "numpy_reference", "keras_symbolic", "plain_call", "model_call"), "passed"
    )
    assert result.get("checks.model_call.output_max_abs_diff") == 0.0
    assert result.get("mask.expected_shape") == [None, 5, 6, 6]


@pytest.mark.keras
def test_a_live_call_is_made_once_and_re_run_once_with_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's call is not repeated to see its path: explain makes it, then one call with scores
    (the fused path never computes them); the symbolic call is made for the first explain of a layer
    and shapes only. A query row with no key left (the last item's first position) is where Keras's
    fused path and its path with scores disagree: plain_call and model_call warn, neither fails."""
    import keras

    calls: list[str] = []
    original = keras.layers.MultiHeadAttention.call

    @functools.wraps(original)  # Keras reads call's signature
    def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("scores" if kwargs.get("return_attention_scores", False) else "plain")
        return original(self, query, *args, **kwargs)

    symbolic_input = keras.Input

    def symbolic(*args: Any, **kwargs: Any) -> Any:  # the symbolic call's keras.Input
        calls.append("keras.Input")
        return symbolic_input(*args, **kwargs)

    monkeypatch.setattr(keras.layers.MultiHeadAttention, "call", counted)
    monkeypatch.setattr(keras, "Input", symbolic)
    rng = np.random.default_rng(2)
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    query = rng.standard_normal((2, 5, 8)).astype("float32")
    mask = rng.random((2, 5, 5)) < 0.7
    mask[:, :, 0] = True
    mask[1, 0, :] = False
    for symbolic_asked in (True, False):
        calls.clear()
        result = mha_cli.explain(layer, query, attention_mask=mask)
        assert [call for call in calls if call != "keras.Input"] == ["plain", "scores"]
        assert ("keras.Input" in calls) is symbolic_asked
    own = np.asarray(layer(query, query, attention_mask=mask), "float64")
    rerun, _ = layer(query, query, attention_mask=mask, return_attention_scores=True)
    difference = float(np.abs(own - np.asarray(rerun, "float64")).max())
    plain, model = result.get("checks.plain_call"), result.get("checks.model_call")
    assert model["output_max_abs_diff"] == plain["output_max_abs_diff"] == pytest.approx(difference)
    if plain["path"] == "fused":  # Keras 3.15: the row with no key left differs on the fused path
        assert difference > 0.1 and plain["status"] == model["status"] == "warning"
        assert "where 2 (item, head, query) rows of the scores have no key left" in model["detail"]
    else:  # a Keras whose call without scores takes the einsum path: the same computation
        assert difference <= plain["tolerance"] and model["status"] == "passed"
    assert result.failed == () and result.get("checks.numpy_reference.status") == "passed"


@pytest.mark.keras
def test_a_re_run_that_misses_the_user_s_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """model_call can fail on the path that reuses the user's output: a recorded output that is not
    what re-running the layer gives (as a wrongly rebuilt mask would make it) is a failure, not Keras
    disagreeing with itself."""
    import keras

    from mha_cli.runtime import live

    recorded = live.captured_call

    def shifted(*args: Any, **kwargs: Any) -> Any:
        call, observed = recorded(*args, **kwargs)
        assert observed is not None
        return call, (observed[0], observed[1] + 0.5)

    monkeypatch.setattr(live, "captured_call", shifted)
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    query = np.random.default_rng(3).standard_normal((2, 5, 8)).astype("float32")
    result = mha_cli.explain(layer, query)
    assert result.failed == ("model_call",)
    assert result.get("checks.model_call.detail").startswith(
        "re-running the layer with scores on your call's inputs gives another output than your call"
    )


@pytest.mark.keras
def test_a_live_attention_takes_its_list_and_a_changed_formula_fails() -> None:
    import keras

    from tests.scan_models import RescaledAttention

    rng = np.random.default_rng(1)
    query, value = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 7, 4))
    value_mask = np.ones((2, 7), bool)
    value_mask[1, 3:] = False
    layer = keras.layers.Attention(use_scale=True)
    result = mha_cli.explain(layer, [query, value], mask=[None, value_mask], use_causal_mask=True)
    assert result.get("layer") == "dot" and result.get("shapes.attention_scores") == [None, 5, 7]
    assert result.get("checks.model_call.status") == "passed" and result.failed == ()
    # The same class to isinstance, scores divided by sqrt(4): the user's call is not the formula.
    rescaled = mha_cli.explain(RescaledAttention(), query, value)
    assert rescaled.failed == ("model_call",)
    assert "not reproduced: Attention's dot formula" in rescaled.get("checks.model_call.detail")


@pytest.mark.keras
def test_the_user_s_own_call_errors_propagate_unchanged() -> None:
    """keras-team/keras-hub#783's mask: (B, T, S) with the batch where the heads go works only when
    batch == heads; the API does not catch the layer's own error."""
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=8, key_dim=2)
    query = np.zeros((2, 3, 16), "float32")
    bad = np.ones((2, 2, 3, 3), bool)  # a heads axis of 2 for 8 heads
    with pytest.raises(Exception) as direct:
        layer(query, query, attention_mask=bad)
    with pytest.raises(type(direct.value)):
        mha_cli.explain(layer, query, attention_mask=bad)
    with pytest.raises(ValueError, match=r"not a keras\.layers\.MultiHeadAttention"):
        mha_cli.explain(keras.layers.Dense(3), query)


@pytest.mark.keras
def test_a_live_model_is_scanned_with_its_own_weights() -> None:
    import keras

    tokens = keras.Input((6,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, name="self_attention")(x, x, use_causal_mask=True)
    model = keras.Model(tokens, x, name="tiny")
    result = mha_cli.scan(model)
    document = result.to_dict()
    assert document["model"]["kind"] == "live" and document["model"]["name"] == "tiny"
    assert document["model"]["weights_from"] == "its own (a live model)"
    (call,) = document["calls"]
    assert call["layer"] == "self_attention" and result.failed == ()
    assert {check["status"] for check in call["checks"].values()} == {"passed"}
    with pytest.raises(ValueError, match=r"not a keras\.Model"):
        mha_cli.scan(keras.layers.Dense(2))


@pytest.mark.keras
def test_compare_from_python() -> None:
    three = mha_cli.compare(mha_cli.DenseConfig("dot", (8, 16)))
    assert three.get("layers.mha.shapes.attention_scores") == [None, 2, 8, 8]
    axes = mha_cli.compare(
        mha_cli.MHAConfig(query_shape=(10, 16), attention_axes=(1,)), mha_cli.MHAConfig(query_shape=(10, 16))
    )
    document: dict[str, Any] = json.loads(axes.to_json())
    assert len(document["configs"]) == 2 and document["equivalence"]["outputs_equal"] is True
    with pytest.raises(ValueError, match="two or more MHAConfig"):
        mha_cli.compare(mha_cli.MHAConfig(query_shape=(10, 16)))
