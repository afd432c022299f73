"""map --to/--from torch|linear: weight maps checked against the real Keras layer and real PyTorch.

Two independent proofs: the command's own --check (the runtime's NumPy maps), and the script --code
prints, run here as a user runs it on a Keras layer (or PyTorch module) built in the test, with the
test's own inputs and masks, compared with the other framework's own output.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mha_cli.cli.app import app

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="torch is not installed: pip install 'mha-explain[torch]'",
)
runner = CliRunner()
needs_tf_keras = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf-keras is not installed: pip install 'mha-explain[keras2]'",
)

#: (options, the Keras constructor's arguments, query, value, key shapes without batch).
LAYERS: dict[
    str, tuple[list[str], dict[str, Any], tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]
] = {
    "self, packed": (
        ["--shape", "10,8", "--num-heads", "2"],
        {"num_heads": 2, "key_dim": 4},
        (10, 8),
        (10, 8),
        None,
    ),
    "cross, kdim/vdim": (
        [
            "--shape",
            "6,8",
            "--value-shape",
            "9,5",
            "--key-shape",
            "9,3",
            "--num-heads",
            "4",
            "--key-dim",
            "2",
        ],
        {"num_heads": 4, "key_dim": 2},
        (6, 8),
        (9, 5),
        (9, 3),
    ),
    "no bias": (
        ["--shape", "7,6", "--num-heads", "3", "--no-bias"],
        {"num_heads": 3, "key_dim": 2, "use_bias": False},
        (7, 6),
        (7, 6),
        None,
    ),
}
#: Widths only the four-Linear layout expresses.
LINEAR_ONLY = (
    ["--shape", "5,8", "--value-shape", "7,6", "--num-heads", "3", "--key-dim", "2", "--value-dim", "5",
     "--output-shape", "9"],
    {"num_heads": 3, "key_dim": 2, "value_dim": 5, "output_shape": 9},
    (5, 8),
    (7, 6),
    None,
)  # fmt: skip


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["map", *args], env={"COLUMNS": "80", "NO_COLOR": "1"})


def cases() -> list[Any]:
    found = []
    for name, layer in LAYERS.items():
        for target in ("torch", "linear"):
            for direction in ("to", "from"):
                found.append(pytest.param(layer, target, direction, id=f"{name}-{direction}-{target}"))
    for direction in ("to", "from"):
        found.append(pytest.param(LINEAR_ONLY, "linear", direction, id=f"widths-{direction}-linear"))
    return found


def _inputs(
    rng: np.random.Generator, query: tuple[int, ...], value: tuple[int, ...], key: Any
) -> dict[str, Any]:
    arrays = {
        "query": rng.standard_normal((2, *query)).astype("float32"),
        "value": rng.standard_normal((2, *value)).astype("float32"),
    }
    arrays["key"] = arrays["value"] if key is None else rng.standard_normal((2, *key)).astype("float32")
    # Every query row keeps at least its first key, so no row is NaN in PyTorch.
    mask = rng.random((2, query[0], arrays["key"].shape[1])) < 0.7
    mask[..., 0] = True
    arrays["mask"] = mask
    return arrays


@pytest.mark.parametrize(("layer", "target", "direction"), cases())
def test_the_printed_script_moves_real_weights_and_both_frameworks_agree(
    layer: Any, target: str, direction: str
) -> None:
    import keras
    import torch

    options, arguments, query_shape, value_shape, key_shape = layer
    mask_shape = f"None,{query_shape[0]},{(key_shape or value_shape)[0]}"
    args = [f"--{direction}", target, *options, "--mask-shape", mask_shape]
    script = invoke(*args, "--code")
    assert script.exit_code == 0, script.output
    rng = np.random.default_rng(7)
    given = _inputs(rng, query_shape, value_shape, key_shape)
    if direction == "to":
        keras_layer = keras.layers.MultiHeadAttention(**arguments)
        keras_layer.build(
            (2, *query_shape), (2, *value_shape), None if key_shape is None else (2, *key_shape)
        )
        for variable in keras_layer.weights:  # random biases too (Keras starts them at zero)
            variable.assign(rng.normal(0, 0.5, tuple(variable.shape)))
        namespace: dict[str, Any] = {"layer": keras_layer, **given}
        exec(compile(script.stdout, "map --code", "exec"), namespace)
        ours, ours_scores = namespace["output"].numpy(), namespace["scores"].numpy()
    else:
        torch.manual_seed(3)
        if target == "torch":
            widths = {} if key_shape is None else {"kdim": key_shape[-1], "vdim": value_shape[-1]}
            bias = arguments.get("use_bias", True)
            torch_layer: Any = torch.nn.MultiheadAttention(
                query_shape[-1], arguments["num_heads"], bias=bias, batch_first=True, **widths
            )
        else:
            from mha_cli.runtime.torch_layout import KerasLayoutAttention

            torch_layer = KerasLayoutAttention(
                query_shape[-1],
                (key_shape or value_shape)[-1],
                value_shape[-1],
                arguments.get("output_shape", query_shape[-1]),
                num_heads=arguments["num_heads"],
                key_dim=arguments["key_dim"],
                value_dim=arguments.get("value_dim", arguments["key_dim"]),
                bias=arguments.get("use_bias", True),
            )
        with torch.no_grad():
            for name, parameter in torch_layer.named_parameters():
                if name.endswith("bias"):
                    parameter.normal_(0.0, 0.5)
        torch_layer.train(False)
        namespace = {"torch_layer": torch_layer}
        exec(compile(script.stdout, "map --code", "exec"), namespace)
        keras_layer = namespace["layer"]
        q, v, k = (torch.from_numpy(given[name]) for name in ("query", "value", "key"))
        with torch.no_grad():
            if target == "torch":
                blocked = torch.from_numpy(np.repeat(~given["mask"], arguments["num_heads"], axis=0))
                output, scores = torch_layer(q, k, v, attn_mask=blocked, average_attn_weights=False)
            else:
                output, scores = torch_layer(q, v, k, attention_mask=torch.from_numpy(given["mask"]))
        ours, ours_scores = output.numpy(), scores.numpy()
    expected, expected_scores = keras_layer(
        given["query"],
        given["value"],
        key=None if key_shape is None else given["key"],
        attention_mask=given["mask"],
        return_attention_scores=True,
    )
    assert np.abs(ours - keras.ops.convert_to_numpy(expected)).max() < 1e-5
    assert np.abs(ours_scores - keras.ops.convert_to_numpy(expected_scores)).max() < 1e-5


@pytest.mark.parametrize(("layer", "target", "direction"), cases())
def test_check_runs_both_and_reports_every_head(layer: Any, target: str, direction: str) -> None:
    options, arguments, *_ = layer
    result = invoke(f"--{direction}", target, *options, "--causal", "--check", "--json")
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["check"]
    assert len(check["head_max_abs_diff"]) == arguments["num_heads"]
    assert max(check["output_max_abs_diff"], *check["head_max_abs_diff"]) < 1e-5


def test_a_wrong_map_is_caught_per_head_and_in_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.runtime import torch_port

    original = torch_port.keras_to_torch

    def heads_swapped(w: Any, m: Any) -> Any:  # the query kernel's two heads in the wrong order
        changed = dict(w)
        changed["query/kernel"] = w["query/kernel"][:, ::-1]
        return original(changed, m)

    monkeypatch.setattr(torch_port, "keras_to_torch", heads_swapped)
    result = invoke("--to", "torch", "--shape", "10,8", "--num-heads", "2", "--check")
    assert result.exit_code == 1, result.output
    assert "ABOVE TOLERANCE" in result.stdout
    assert result.stderr.startswith("mha-explain: error: map --check: the outputs differ by")


def test_fully_masked_rows_are_counted_and_left_out() -> None:
    # One key, masked 1 in 4: some query rows have nothing to attend to (NaN in PyTorch).
    result = invoke(
        "--to", "torch", "--shape", "8,8", "--value-shape", "1,8", "--mask-shape", "None,8,1", "--check"
    )
    assert result.exit_code == 0, result.output
    assert "query row(s) with no key to attend to left out (NaN in PyTorch)" in " ".join(
        result.stdout.split()
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--to", "torch", "--shape", "4,5,8"], "the inputs have rank 4"),
        (["--to", "linear", "--shape", "10,8", "--axes", "1", "--num-heads", "2"], None),
        (["--to", "torch", "--shape", "10,8", "--gate"], "use_gate multiplies the attention output"),
        (["--to", "linear", "--shape", "10,8", "--output-shape", "2,4"], "output_shape (2, 4) has 2 axes"),
        (["--to", "torch", "--shape", "10,8", "--value-dim", "3"], "use --to linear, which maps any widths"),
        (["--from", "torch", "--shape", "10,6", "--num-heads", "2", "--key-dim", "4"], "use --from linear"),
        (["--to", "tensorflow", "--shape", "10,8"], "unknown target; choose torch or linear"),
        (["--to", "torch", "--from", "torch", "--shape", "10,8"], "give one of --to"),
        (["--shape", "10,8"], "give one of --to"),
    ],
)
def test_what_cannot_be_mapped_is_one_line_and_exit_2(args: list[str], says: str | None) -> None:
    result = invoke(*args)
    if says is None:  # attention_axes=(1,) is the sequence axis: mappable
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_the_tables_fit_80_columns() -> None:
    result = invoke("--to", "torch", "--shape", "6,8", "--value-shape", "9,5", "--num-heads", "4", "--check")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


@needs_tf_keras
def test_keras2_weights_map_by_their_variable_names() -> None:
    result = invoke(
        "--to", "torch", "--shape", "10,8", "--num-heads", "2", "--keras", "2", "--check", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["keras_version"].startswith("2.")
    script = invoke("--to", "torch", "--shape", "10,8", "--num-heads", "2", "--keras", "2", "--code").stdout
    assert 'v.name.split(":")[0]' in script


# --- GroupQueryAttention (--layer gqa) ------------------------------------------------------------

#: (options, GroupQueryAttention's constructor arguments, query and value shapes without batch).
GQA_LAYERS: dict[str, tuple[list[str], dict[str, Any], tuple[int, int], tuple[int, int]]] = {
    "gqa, self": (
        ["--shape", "10,32", "--num-query-heads", "8", "--num-key-value-heads", "2"],
        {"head_dim": 4, "num_query_heads": 8, "num_key_value_heads": 2},
        (10, 32),
        (10, 32),
    ),
    "mqa, cross, other width, no bias": (
        [
            *("--shape", "6,16", "--value-shape", "9,12", "--num-query-heads", "4"),
            *("--num-key-value-heads", "1", "--head-dim", "3", "--no-bias"),
        ],
        {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 1, "use_bias": False},
        (6, 16),
        (9, 12),
    ),
}


class LlamaStyleAttention:
    """Written here, from Llama's attention, independently of mha_cli: q/k/v/o Linear layers, each
    key/value head indexed by its query heads (head // repeats), softmax written out."""

    def __init__(self, torch: Any, query: int, value: int, heads: int, groups: int, size: int, bias: bool):
        self.torch, self.heads, self.groups, self.size = torch, heads, groups, size
        self.module = torch.nn.ModuleDict(
            {
                "q_proj": torch.nn.Linear(query, heads * size, bias=bias),
                "k_proj": torch.nn.Linear(value, groups * size, bias=bias),
                "v_proj": torch.nn.Linear(value, groups * size, bias=bias),
                "o_proj": torch.nn.Linear(heads * size, query, bias=bias),
            }
        )

    def __call__(self, query: Any, value: Any, attend: Any) -> tuple[Any, Any]:
        p, (b, t, _), s = self.module, query.shape, value.shape[1]
        q = p["q_proj"](query).view(b, t, self.heads, self.size)
        k = p["k_proj"](value).view(b, s, self.groups, self.size)
        v = p["v_proj"](value).view(b, s, self.groups, self.size)
        group = self.torch.arange(self.heads) // (self.heads // self.groups)
        logits = self.torch.einsum("bthd,bshd->bhts", q, k[:, :, group]) / self.size**0.5
        weights = logits.masked_fill(~attend[:, None], float("-inf")).softmax(-1)
        attended = self.torch.einsum("bhts,bshd->bthd", weights, v[:, :, group]).reshape(b, t, -1)
        return p["o_proj"](attended), weights


def gqa_cases() -> list[Any]:
    return [
        pytest.param(layer, target, direction, id=f"{name}-{direction}-{target}")
        for name, layer in GQA_LAYERS.items()
        for target in ("torch", "linear")
        for direction in ("to", "from")
    ]


@pytest.mark.parametrize(("layer", "target", "direction"), gqa_cases())
def test_the_gqa_script_moves_real_weights_and_both_frameworks_agree(
    layer: Any, target: str, direction: str
) -> None:
    import keras
    import torch

    options, arguments, query_shape, value_shape = layer
    mask_shape = f"None,{query_shape[0]},{value_shape[0]}"
    script = invoke(
        f"--{direction}", target, "--layer", "gqa", *options, "--mask-shape", mask_shape, "--code"
    )
    assert script.exit_code == 0, script.output
    rng = np.random.default_rng(11)
    given = _inputs(rng, query_shape, value_shape, None)
    if direction == "to":
        keras_layer = keras.layers.GroupQueryAttention(**arguments)
        keras_layer.build((2, *query_shape), (2, *value_shape))
        for variable in keras_layer.weights:  # random biases too (Keras starts them at zero)
            variable.assign(rng.normal(0, 0.5, tuple(variable.shape)))
        namespace: dict[str, Any] = {"layer": keras_layer, **given}
        exec(compile(script.stdout, "map --code", "exec"), namespace)
        assert namespace["torch_layer"].fused is (target == "torch")  # SDPA with enable_gqa, or the repeat
        ours, ours_scores = namespace["output"].numpy(), namespace["scores"].numpy()
    else:
        torch.manual_seed(5)
        bias = arguments.get("use_bias", True)
        heads, groups, size = (arguments[n] for n in ("num_query_heads", "num_key_value_heads", "head_dim"))
        llama = LlamaStyleAttention(torch, query_shape[-1], value_shape[-1], heads, groups, size, bias)
        with torch.no_grad():
            for name, parameter in llama.module.named_parameters():
                if name.endswith("bias"):
                    parameter.normal_(0.0, 0.5)
        namespace = {"torch_layer": llama.module}
        exec(compile(script.stdout, "map --code", "exec"), namespace)
        keras_layer = namespace["layer"]
        assert type(keras_layer).__name__ == "GroupedQueryAttention"
        q, v = (torch.from_numpy(given[name]) for name in ("query", "value"))
        with torch.no_grad():
            output, scores = llama(q, v, torch.from_numpy(given["mask"]))
        ours, ours_scores = output.numpy(), scores.numpy()
    expected, expected_scores = keras_layer(
        given["query"], given["value"], attention_mask=given["mask"], return_attention_scores=True
    )
    # float32 outputs near 30 in size: relative to them.
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_scores, keras.ops.convert_to_numpy(expected_scores), atol=1e-5)


@pytest.mark.parametrize(("layer", "target", "direction"), gqa_cases())
def test_gqa_check_runs_both_and_reports_every_query_head(layer: Any, target: str, direction: str) -> None:
    options, arguments, *_ = layer
    result = invoke(f"--{direction}", target, "--layer", "gqa", *options, "--causal", "--check", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["layer"] == "gqa" and document["schema_version"] == 1
    check = document["check"]
    assert len(check["head_max_abs_diff"]) == arguments["num_query_heads"]
    assert max(check["output_max_abs_diff"], *check["head_max_abs_diff"]) < 1e-5


def test_a_wrong_gqa_map_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.runtime import torch_port

    original = torch_port.keras_to_torch

    def groups_swapped(w: Any, m: Any) -> Any:  # the key kernel's two key/value heads in the wrong order
        return original({**w, "key/kernel": w["key/kernel"][:, ::-1]}, m)

    monkeypatch.setattr(torch_port, "keras_to_torch", groups_swapped)
    args = ["--layer", "gqa", "--shape", "10,32", "--num-query-heads", "4", "--num-key-value-heads", "2"]
    result = invoke("--to", "torch", *args, "--check")
    assert result.exit_code == 1, result.output
    assert "ABOVE TOLERANCE" in result.stdout
    assert result.stderr.startswith("mha-explain: error: map --check: the outputs differ by")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--gate"], "use_gate multiplies the attention output"),
        (["--sliding-window", "3"], "sliding_window is a mask Keras builds inside the call"),
        (["--axes", "1"], "--axes: --layer gqa: GroupQueryAttention has no such argument"),
        (["--num-key-value-heads", "3"], "must divide --num-query-heads 4"),
        (["--mask-shape", "None,1,10,10"], "a rank-4 mask holds a heads axis"),
    ],
)
def test_what_gqa_cannot_map_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    result = invoke("--to", "torch", "--layer", "gqa", "--shape", "10,32", "--num-query-heads", "4", *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_the_gqa_map_fits_80_columns_and_names_both_layers() -> None:
    args = ["--layer", "gqa", "--shape", "10,64", "--num-query-heads", "8", "--num-key-value-heads", "2"]
    result = invoke("--to", "torch", *args, "--causal", "--check")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    text = " ".join(result.stdout.split())
    assert text.startswith("Keras GroupQueryAttention -> scaled_dot_product_attention(..., enable_gqa=True)")
    assert "query head i reads key/value head i // 4" in text
    assert 'k_proj.weight (16, 64) w["key/kernel"].reshape(64, 16).T' in text
