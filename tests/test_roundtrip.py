"""targets --run: the layer converted for real (ONNX through Keras's export and ONNX Runtime; LiteRT
through TensorFlow's converter and interpreter), run, and compared with Keras; what passes, what fails."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

pytestmark = pytest.mark.keras
runner = CliRunner()


def _onnx_or_skip() -> None:
    pytest.importorskip("onnxruntime", reason="needs the targets extra: pip install '.[targets]'")


def _trips(*args: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    result = runner.invoke(app, ["targets", *args, "--run", "--json"])
    document = json.loads(result.stdout)
    return result, {trip["target"]: trip for trip in document["round_trips"]}


def test_a_sentence_round_trips_through_onnx_and_litert_as_their_rules_say() -> None:
    """A finding: the rules say both take a sentence, and both conversions reproduce Keras; with a mask
    and the causal mask, which nobody has read in their source (unknown), the round trip settles it."""
    _onnx_or_skip()
    for extra, said in (((), "supported"), (("--causal", "--mask-shape", "None,8,8"), "unknown")):
        result, trips = _trips("--shape", "8,16", *extra)
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        verdicts = {target["name"]: target["verdict"] for target in document["targets"]}
        assert verdicts["tf2onnx"] == verdicts["litert-float"] == said
        for target in ("tf2onnx", "litert-float"):
            assert trips[target]["status"] == "passed", trips[target]
            assert trips[target]["max_abs_diff"] < trips[target]["tolerance"] == 1e-4


def test_half_precision_fails_where_the_converters_fail_in_their_own_words() -> None:
    """A finding: float16 converts to ONNX and runs within float16's tolerance, while TensorFlow's
    LiteRT converter refuses the layer's float16 matmuls; bfloat16 fails in both."""
    _onnx_or_skip()
    result, trips = _trips("--shape", "8,16", "--dtype", "float16")
    assert result.exit_code == 1
    assert trips["tf2onnx"]["status"] == "passed" and trips["tf2onnx"]["tolerance"] == 5e-2
    assert trips["litert-float"] == {
        "target": "litert-float",
        "status": "failed",
        "detail": (
            "ConverterError: 'tf.BatchMatMulV2' op is neither a custom op nor a flex op "
            "(ERROR_NEEDS_FLEX_OPS)"
        ),
        "max_abs_diff": None,
        "tolerance": 5e-2,
    }
    assert "--run: litert-float: failed: ConverterError" in result.output
    result, trips = _trips("--shape", "8,16", "--dtype", "bfloat16")
    assert result.exit_code == 1
    assert trips["tf2onnx"]["status"] == trips["litert-float"]["status"] == "failed"
    assert "(MatMul) bound to different types" in trips["tf2onnx"]["detail"]


def test_a_mask_without_its_batch_axis_round_trips_too() -> None:
    _onnx_or_skip()
    result, trips = _trips("--shape", "8,16", "--mask-shape", "8,8", "--target", "tf2onnx")
    assert result.exit_code == 0, result.output
    assert trips["tf2onnx"]["status"] == "passed"


def test_a_conversion_that_does_not_answer_is_stopped() -> None:
    result, trips = _trips("--shape", "8,16", "--target", "litert-float", "--timeout", "0.5")
    assert result.exit_code == 1
    assert trips["litert-float"]["status"] == "timed out"
    assert trips["litert-float"]["detail"] == "no answer in 0.5 s; stopped"


def test_without_onnx_runtime_it_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from mha_cli.core.config import MHAConfig
    from mha_cli.core.mha import derive
    from mha_cli.runtime import roundtrip

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    assert roundtrip.round_trip(derive(MHAConfig(query_shape=(8, 16))), "tf2onnx") == {
        "status": "not installed",
        "detail": "needs onnxruntime: pip install 'mha-explain[targets]'",
    }


def test_a_model_s_calls_round_trip_each_as_its_own_layer_with_the_model_s_weights() -> None:
    """scan --targets --run: each call converted alone, with its layer's weights, on the inputs it
    received. LiteRT converts the float32 call and reproduces it; the float16 call fails in the
    converter's own words, and the command exits 1 naming it."""
    _onnx_or_skip()
    result = runner.invoke(
        app,
        [
            "scan",
            "--build",
            "tests.scan_models:half_and_full",
            "--targets",
            "--run",
            "--target",
            "litert-float",
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    trips = {trip["call"]: trip for trip in json.loads(result.stdout)["targets"]["round_trips"]}
    assert set(trips) == {"full", "half"}
    assert trips["full"]["status"] == "passed" and trips["full"]["target"] == "litert-float"
    assert trips["full"]["max_abs_diff"] < trips["full"]["tolerance"] == 1e-4
    assert trips["half"]["status"] == "failed" and "ERROR_NEEDS_FLEX_OPS" in trips["half"]["detail"]
    assert "--run: half: litert-float: failed: ConverterError" in result.output
