"""Weights between Keras and PyTorch, on arrays, and the check that runs both.

The maps are the formulas of :mod:`mha_cli.core.weight_map`, computed with
NumPy; :func:`check_map` runs the real Keras layer and the real PyTorch
module on the same inputs and masks and measures how far apart they are.
torch is imported here only, inside the functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from mha_cli.core.derived import Derived
from mha_cli.core.errors import EnvironmentProblem
from mha_cli.core.weight_map import WeightMap
from mha_cli.runtime.keras_adapter import run_layer, uninterrupted
from mha_cli.runtime.quiet import native_output_silenced


def load_torch() -> ModuleType:
    try:
        torch = importlib.import_module("torch")
    except ImportError as error:
        raise EnvironmentProblem(
            f"--check runs PyTorch, which is not installed ({error}); install its CPU build with: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu (pip install "
            "'mha-explain[torch]' alone pulls the CUDA build, several GB)"
        ) from error
    return torch


def keras_to_torch(w: Mapping[str, np.ndarray], m: WeightMap) -> dict[str, np.ndarray]:
    """PyTorch's state dict from Keras's weights by short name ("query/kernel")."""
    h, kd, vd, g = m.num_heads, m.key_dim, m.value_dim, m.kv_heads
    e = h * kd
    q = w["query/kernel"].reshape(m.query_features, e).T
    k = w["key/kernel"].reshape(m.key_features, g * kd).T
    v = w["value/kernel"].reshape(m.value_features, g * vd).T
    o = w["attention_output/kernel"].reshape(h * vd, m.output_features).T
    state: dict[str, np.ndarray]
    if m.four_linear:
        state = {"q_proj.weight": q, "k_proj.weight": k, "v_proj.weight": v, "o_proj.weight": o}
        if m.use_bias:
            for name, projection in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
                state[f"{projection}.bias"] = w[f"{name}/bias"].reshape(-1)
            state["o_proj.bias"] = w["attention_output/bias"]
        return state
    if m.packed:
        state = {"in_proj_weight": np.concatenate([q, k, v])}
    else:
        state = {"q_proj_weight": q, "k_proj_weight": k, "v_proj_weight": v}
    if m.use_bias:
        state["in_proj_bias"] = np.concatenate(
            [w[f"{name}/bias"].reshape(e) for name in ("query", "key", "value")]
        )
    state["out_proj.weight"] = o
    if m.use_bias:
        state["out_proj.bias"] = w["attention_output/bias"]
    return state


def torch_to_keras(s: Mapping[str, np.ndarray], m: WeightMap) -> dict[str, np.ndarray]:
    """Keras's weights by short name from PyTorch's state dict."""
    h, kd, vd = m.num_heads, m.key_dim, m.value_dim
    e = h * kd
    if m.four_linear:
        kernels = {
            name: s[f"{p}.weight"]
            for name, p in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
        }
        biases = {
            name: s.get(f"{p}.bias")
            for name, p in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
        }
        output, output_bias = s["o_proj.weight"], s.get("o_proj.bias")
    else:
        if m.packed:
            packed = s["in_proj_weight"]
            kernels = {"query": packed[0:e], "key": packed[e : 2 * e], "value": packed[2 * e : 3 * e]}
        else:
            kernels = {name: s[f"{name[0]}_proj_weight"] for name in ("query", "key", "value")}
        in_bias = s.get("in_proj_bias")
        biases = {
            name: None if in_bias is None else in_bias[start : start + e]
            for name, start in (("query", 0), ("key", e), ("value", 2 * e))
        }
        output, output_bias = s["out_proj.weight"], s.get("out_proj.bias")
    features = {"query": m.query_features, "key": m.key_features, "value": m.value_features}
    dims = {"query": kd, "key": kd, "value": vd}
    heads = {"query": h, "key": m.kv_heads, "value": m.kv_heads}
    w: dict[str, np.ndarray] = {
        f"{name}/kernel": kernels[name].T.reshape(features[name], heads[name], dims[name])
        for name in features
    }
    if m.use_bias:
        for name in features:
            bias = biases[name]
            assert bias is not None
            w[f"{name}/bias"] = bias.reshape(heads[name], dims[name])
    w["attention_output/kernel"] = output.T.reshape(h, vd, m.output_features)
    if m.use_bias:
        assert output_bias is not None
        w["attention_output/bias"] = output_bias
    return w


def torch_module(m: WeightMap) -> Any:
    """The PyTorch module ``m`` maps to, in float64, in eval mode (its weights as torch initialized them)."""
    torch = load_torch()
    if m.num_key_value_heads is not None:
        from mha_cli.runtime.torch_layout_gqa import KerasLayoutGQA

        gqa: Any = KerasLayoutGQA(
            m.query_features,
            m.key_features,
            m.value_features,
            num_query_heads=m.num_heads,
            num_key_value_heads=m.num_key_value_heads,
            head_dim=m.key_dim,
            bias=m.use_bias,
            fused=m.target == "torch",
        )
        return gqa.double().train(False)
    if m.target == "linear":
        from mha_cli.runtime.torch_layout import KerasLayoutAttention

        module: Any = KerasLayoutAttention(
            m.query_features,
            m.key_features,
            m.value_features,
            m.output_features,
            num_heads=m.num_heads,
            key_dim=m.key_dim,
            value_dim=m.value_dim,
            bias=m.use_bias,
        )
    else:
        widths = {} if m.packed else {"kdim": m.key_features, "vdim": m.value_features}
        module = torch.nn.MultiheadAttention(
            m.query_features, m.num_heads, bias=m.use_bias, dropout=m.dropout, batch_first=True, **widths
        )
    return module.double().train(False)  # inference mode, as Keras with training=False


def allowed(m: WeightMap, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Which keys each query may attend to, (batch, T, S), True: attend (the mask and the causal mask)."""
    batch, length = arrays["query"].shape[:2]
    source = arrays["key"].shape[1]
    attend = np.ones((batch, length, source), bool)
    if "attention_mask" in arrays:
        attend &= np.broadcast_to(arrays["attention_mask"].astype(bool), attend.shape)
    if m.causal:
        attend &= np.tril(np.ones((length, source), bool))
    return attend


def run_torch(module: Any, m: WeightMap, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The module's output and per-head scores on Keras's inputs and masks, as Keras called the layer."""
    torch = load_torch()
    query, value, key = (
        torch.from_numpy(np.asarray(arrays[n], np.float64)) for n in ("query", "value", "key")
    )
    attend = allowed(m, arrays)
    masked = bool((~attend).any())
    with torch.no_grad():
        if m.four_linear:  # Keras's call order and mask
            mask = torch.from_numpy(attend) if masked else None
            output, weights = module(query, value, key, attention_mask=mask)
        else:
            blocked = torch.from_numpy(np.repeat(~attend, m.num_heads, axis=0)) if masked else None
            output, weights = module(
                query, key, value, attn_mask=blocked, need_weights=True, average_attn_weights=False
            )
    return output.numpy(), weights.numpy()


@dataclass(frozen=True)
class MapCheck:
    """Keras and PyTorch on the same inputs, with weights moved by the map."""

    keras_version: str
    torch_version: str
    backend: str
    output_max_abs_diff: float
    #: Max |difference| of the scores, one per head.
    head_max_abs_diff: tuple[float, ...]
    #: Query rows the masks leave no key to attend to: NaN in PyTorch, left out of the differences.
    fully_masked_rows: int
    #: Which weights the map moved (PyTorch's names for "to", Keras's for "from").
    moved: tuple[str, ...]


@uninterrupted
def check_map(derivation: Derived, m: WeightMap, backend: str) -> MapCheck:
    """Run both sides. "to": Keras's drawn weights into PyTorch; "from": PyTorch's weights into Keras."""
    torch = load_torch()
    module = torch_module(m)
    if m.direction == "to":
        run = run_layer(derivation, backend)
        state = keras_to_torch(run.arrays, m)
        with native_output_silenced():
            module.load_state_dict(
                {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.items()}
            )
        moved = tuple(state)
    else:
        torch.manual_seed(derivation.config.seed)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if name.endswith("bias"):  # torch starts biases at zero: random ones check their place too
                    parameter.normal_(0.0, 0.5)
        state = {name: value.detach().numpy() for name, value in module.state_dict().items()}
        weights = torch_to_keras(state, m)
        run = run_layer(derivation, backend, weights=weights)
        moved = tuple(weights)
    output, scores = run_torch(module, m, run.arrays)
    rows = allowed(m, run.arrays).any(axis=-1)  # (batch, T): a row with a key to attend to
    keras_scores = run.arrays["attention_scores"]
    heads = tuple(
        float(np.max(np.abs(scores[:, h] - keras_scores[:, h])[rows], initial=0.0))
        for h in range(m.num_heads)
    )
    difference = float(np.max(np.abs(output - run.arrays["output"])[rows], initial=0.0))
    return MapCheck(
        run.keras_version,
        str(torch.__version__),
        backend,
        difference,
        heads,
        int((~rows).sum()),
        moved,
    )
