"""Test vectors: every tensor of one verified forward pass, with a manifest saying what each is.

For people porting the layer (converters, exporters, re-implementations):
the inputs, the mask, every weight under its Keras variable path, every
intermediate, the output and the scores, all from the real layer, and a
manifest with the layer's config, build shapes, call, equations, versions and
each array's meaning. :mod:`mha_cli.output.vectors` writes them to disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mha_cli.core.call import call
from mha_cli.core.errors import ConfigError
from mha_cli.core.kinds import KINDS
from mha_cli.core.version import __version__
from mha_cli.operations.explain import TOLERANCE, ExplainResult

if TYPE_CHECKING:
    import numpy as np

    from mha_cli.operations.check import CheckReport
    from mha_cli.operations.scan import CallResult, ScanResult

#: The manifest's format; bump it when a key changes meaning or goes away.
FORMAT = "mha-explain test vectors"
FORMAT_VERSION = 1
#: NumPy has no bfloat16: those arrays are stored widened to float32 (exactly).
_STORED_DTYPE = {"bfloat16": "float32"}

_INPUT_MEANING = {
    "query": "the query as fed to the call: (batch, query axes..., query features)",
    "value": "the value as fed to the call: (batch, key axes..., value features)",
    "key": "the key as fed to the call: (batch, key axes..., key features)",
}
_WEIGHT_MEANING = {
    "query/kernel": "query projection kernel: query features -> (num_heads, key_dim)",
    "query/bias": "query projection bias, added after the kernel",
    "key/kernel": "key projection kernel: key features -> (num_heads, key_dim)",
    "key/bias": "key projection bias",
    "value/kernel": "value projection kernel: value features -> (num_heads, value_dim)",
    "value/bias": "value projection bias",
    "gate/kernel": "gate projection kernel: query features -> (num_heads, value_dim), then sigmoid",
    "gate/bias": "gate projection bias, added before the sigmoid",
    "attention_output/kernel": "output projection kernel: (num_heads, value_dim) -> output features",
    "attention_output/bias": "output projection bias",
}
#: GroupQueryAttention's kernels, where their heads differ from MultiHeadAttention's.
_GQA_WEIGHT_MEANING = {
    **_WEIGHT_MEANING,
    "query/kernel": "query projection kernel: query features -> (num_query_heads, head_dim)",
    "key/kernel": "key projection kernel: key features -> (num_key_value_heads, head_dim)",
    "value/kernel": "value projection kernel: value features -> (num_key_value_heads, head_dim)",
    "gate/kernel": "gate projection kernel: query features -> (num_query_heads, head_dim), then sigmoid",
    "attention_output/kernel": "output projection kernel: (num_query_heads, head_dim) -> output features",
}
_WEIGHT_MEANINGS = {"mha": _WEIGHT_MEANING, "gqa": _GQA_WEIGHT_MEANING}


@dataclass(frozen=True)
class VectorSet:
    """One configuration's test vectors: arrays in the order written, and the manifest."""

    #: Where it goes under the output directory ("" for the directory itself).
    where: str
    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any]


def explained_vectors(
    result: ExplainResult,
    *,
    where: str = "",
    source: dict[str, Any],
    mask_meaning: str | None = None,
    inbound_nodes: list[Any] | None = None,
) -> VectorSet:
    """The vectors of a configuration explained with ``intermediates``.

    ``source`` says where the configuration came from (command, case file,
    model, layer path). The call's serialized ``inbound_nodes`` are the
    model's own for a scanned call, else those ``graph`` recorded;
    ``mask_meaning`` says where a scanned call's mask came from.
    """
    run = result.run
    if run is None or not result.executed:
        reason = result.not_executed_reason or "there was no forward pass"
        raise ConfigError(  # only vectors --out gets here: check and scan skip what did not run
            "--out",
            where or ".",
            f"test vectors need a real forward pass, and none ran ({reason}); raise --max-memory "
            "or use smaller shapes",
        )
    if not run.intermediates:
        raise AssertionError("test vectors need a run made with intermediates=True")
    derivation = result.derivation
    dtype = derivation.layer.dtype
    stored = _STORED_DTYPE.get(dtype, dtype)
    config = derivation.config
    arrays: dict[str, np.ndarray] = {}
    described: list[dict[str, Any]] = []

    def add(name: str, value: np.ndarray, role: str, meaning: str) -> None:
        kept = value.astype(bool) if role == "mask" else value.astype(stored)
        arrays[name] = kept
        described.append(
            {
                "name": name,
                "shape": list(kept.shape),
                "dtype": str(kept.dtype),
                "role": role,
                "meaning": meaning,
            }
        )

    if inbound_nodes is None:
        inbound_nodes = (result.call_convention or {}).get("multi_head_attention", {}).get("inbound_nodes")
    key_given = config.key_shape is not None  # a scanned call's configuration states it the same way
    for name in ("query", "value", "key"):
        meaning = _INPUT_MEANING[name]
        if name == "key" and not key_given:
            meaning = "not given in the call, so Keras projects value as the key: this is value"
        add(name, run.arrays[name], "input", meaning)
    if "attention_mask" in run.arrays:
        given = "the attention_mask passed to the call (True: attend), drawn with 3 in 4 True; Keras "
        add(
            "attention_mask",
            run.arrays["attention_mask"],
            "mask",
            mask_meaning or given + "broadcasts it over the heads",
        )
    weight_meaning = _WEIGHT_MEANINGS[derivation.kind]
    for short, path in run.variable_paths.items():
        add(path, run.arrays[short], "weight", f"{weight_meaning[short]} (Keras variable {short})")
    for name, value in run.intermediates.items():
        meaning = run.INTERMEDIATES[name]
        if derivation.kind == "gqa":  # GroupQueryAttention scales by its head_dim
            meaning = meaning.replace("1/sqrt(key_dim)", "1/sqrt(head_dim)")
        add(name, value, "mask" if name == "softmax_mask" else "intermediate", meaning)
    add("output", run.arrays["output"], "output", "the layer's output (training=False)")
    add(
        "attention_scores",
        run.arrays["attention_scores"],
        "output",
        "the scores returned by return_attention_scores=True: after the softmax, before dropout",
    )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": f"mha-explain {__version__}",
        "source": source,
        "keras_version": run.keras_version,
        "keras": config.keras,
        "backend": run.backend,
        "dtype": dtype,
        "stored_dtype": stored,
        "tolerance": TOLERANCE[dtype],
        "seed": config.seed,
        "layer": {
            "class_name": KINDS[derivation.kind].saved_class,
            "config": run.layer_config,
            # As fed: key is value when the call gave none, as Keras builds it.
            "build_shapes": {name: list(run.arrays[name].shape) for name in ("query", "value", "key")},
            "resolved_attention_axes": None if run.resolved_axes is None else list(run.resolved_axes),
        },
        "call": {
            "text": call(derivation, training=False),
            "key_given": key_given,
            "return_attention_scores": True,
            "training": False,
            "use_causal_mask": config.causal,
            "inbound_nodes": inbound_nodes,
        },
        "equations": dict(run.equations),
        "checks": [{"name": c.name, "status": str(c.status), "detail": c.detail} for c in result.checks],
        "arrays": described,
    }
    return VectorSet(where, arrays, manifest)


@dataclass(frozen=True)
class Skipped:
    """A configuration of a check or scan that has no test vectors, and why."""

    id: str
    reason: str


def scan_vectors(scanned: ScanResult, places: Places) -> tuple[list[VectorSet], list[Skipped]]:
    """Every explained call of a scanned model (run with ``intermediates``), one set each."""
    sets, skipped = [], []
    for found in scanned.calls:
        call = found.call
        reason = _no_vectors(found.result, found.error)
        if reason is not None or found.result is None:
            skipped.append(Skipped(call.key, reason or "not explained"))
            continue
        source: dict[str, Any] = {"command": "scan", "model": scanned.spec.shown, "id": call.key}
        source.update(layer=call.path, call_index=call.call_index, class_name=call.class_name)
        sets.append(_call_vectors(found.result, source, found, places))
    return sets, skipped


def check_vectors(report: CheckReport, places: Places) -> tuple[list[VectorSet], list[Skipped]]:
    """Every case and pinned model call of a check that ran, one set each."""
    sets, skipped = [], []
    for file in report.files:
        for case in file.results:
            reason = _no_vectors(case.result, case.error)
            if reason is not None or case.result is None:
                skipped.append(Skipped(case.id, reason or "not explained"))
                continue
            source = {"command": "check", "file": str(case.path), "case": case.name, "id": case.id}
            if case.scanned is not None:
                prefix = f"{_file_name(case.path)}/model"
                sets.append(_call_vectors(case.result, source, case.scanned, places, prefix=prefix))
            else:
                where = places.place(f"{_file_name(case.path)}/{case.name}")
                sets.append(explained_vectors(case.result, where=where, source=source))
    return sets, skipped


def _file_name(path: Path) -> str:
    """A case file's name without its suffixes: ``examples/forum.mha.toml`` is ``forum``."""
    return path.name.split(".")[0] or path.name


def _no_vectors(result: ExplainResult | None, error: str | None) -> str | None:
    """Why a case or call has no test vectors, or None when it has them."""
    if result is None:
        return error or "not explained"
    if not result.executed or result.run is None or not result.run.intermediates:
        return result.not_executed_reason or "no forward pass ran"
    return None


def _call_vectors(
    result: ExplainResult, source: dict[str, Any], found: CallResult, places: Places, prefix: str = ""
) -> VectorSet:
    call = found.call
    sources = ", ".join(call.mask_sources)
    meaning = (
        f"the mask Keras combined for this call from {sources} (True: attend), as the model made it"
        if sources
        else None
    )
    where = places.place(f"{prefix}/{call.key}" if prefix else call.key)
    return explained_vectors(
        result, where=where, source=source, mask_meaning=meaning, inbound_nodes=call.inbound_nodes
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Places:
    """Where each set goes: ``a/b#2`` becomes ``a/b/call-2``, every part safe, none used twice.

    Layer paths nest as directories; ``#n`` (a shared layer's later call) becomes
    ``call-n``. A part that would be empty, ``.`` or ``..`` becomes ``_``; a
    place already taken (compared without case) gets ``-2``, ``-3``, ...
    """

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def place(self, name: str) -> str:
        base, _, index = name.partition("#")
        parts = [_UNSAFE.sub("_", part).strip() or "_" for part in base.split("/")]
        parts = ["_" if part in {".", ".."} else part for part in parts]
        if index:
            parts.append(f"call-{_UNSAFE.sub('_', index)}")
        candidate = "/".join(parts)
        number = 2
        while candidate.lower() in self._taken:
            candidate = f"{'/'.join(parts)}-{number}"
            number += 1
        self._taken.add(candidate.lower())
        return candidate
