"""The public Python API (docs/api.md): ``import mha_cli``, then explain, scan or compare.

Everything here is what the command line does, from Python: the same operations, the same frozen
results, the same checks, and a :class:`Result` that renders itself as the command's tables (in a
terminal through rich, as HTML in Jupyter) and as its JSON document (``to_json()``, ``get()``).
Every other module of mha_cli is internal and may change; tests/test_api.py holds these names.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY

__all__ = ["DenseConfig", "GQAConfig", "MHAConfig", "Result", "clarify", "compare", "explain", "scan"]


@dataclass(frozen=True)
class Result:
    """One answer: ``value`` is the operation's frozen result, rendered as the command renders it."""

    #: Which answer: "explain", "scan" or "compare".
    command: str
    #: The operation's own frozen result (ExplainResult, DenseResult, ScanResult, ...).
    value: Any
    _document: Callable[[], dict[str, Any]] = field(repr=False, compare=False)
    _render: Callable[[Any], None] = field(repr=False, compare=False)
    _failed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The command's JSON document (schema in docs/scripts.md), as Python values."""
        return self._document()

    def to_json(self) -> str:
        """The command's ``--json`` output, exactly."""
        from mha_cli.output.documents import dumps

        return dumps(self.to_dict())

    def get(self, path: str) -> Any:
        """One value of the document, by the CLI's ``--get`` path: ``get("shapes.attention_scores")``.

        Shapes come back as lists with None for the batch axis; a path that is not in the document
        raises a ValueError naming the keys it has.
        """
        from mha_cli.output.documents import get_path

        return get_path(self.to_dict(), path)

    @property
    def failed(self) -> tuple[str, ...]:
        """The checks that failed (empty when every check passed, was a note, or did not run)."""
        return self._failed

    def text(self, width: int = 100) -> str:
        """The tables as plain text, laid out for ``width`` columns."""
        from mha_cli.output.tables import make_console

        buffer = io.StringIO()
        self._render(make_console(buffer, width=width, color="never"))
        return buffer.getvalue()

    def __rich_console__(self, console: Any, options: Any) -> Any:
        """rich: the command's tables, at the console's width and in its colours."""
        from mha_cli.output.tables import rendered

        yield rendered(
            self._render, options.max_width, not console.no_color and console.color_system is not None
        )

    def _repr_html_(self) -> str:
        """Jupyter: the tables as HTML, self-contained (inline styles, no script, no network)."""
        from mha_cli.output.tables import rendered_html

        return rendered_html(self._render)

    def __str__(self) -> str:
        return self.text()

    def heatmap(self) -> Heatmap:
        """explain's interactive attention heatmap of the real scores (batch item 0): per head, per free
        slice, a click on a query position showing its weights over the key positions. ValueError when
        no forward pass ran (``execute=False``, the memory guard) or the scores are too many to draw."""
        if self.command != "explain":
            raise ConfigError("heatmap", None, f"a {self.command} result has no heatmap; explain one layer")
        from mha_cli.operations.heatmap import heatmap
        from mha_cli.output.heatmap import page

        return Heatmap(page(heatmap(self.value)))


@dataclass(frozen=True)
class Heatmap:
    """The heatmap page: self-contained HTML (inline style and script; nothing is fetched)."""

    #: The whole page.
    html: str

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (open it in any browser); returns the path."""
        target = Path(path)
        target.write_text(self.html, encoding="utf-8")
        return target

    def _repr_html_(self) -> str:
        """Jupyter: the page in an iframe of its own (its script runs there, apart from the notebook's)."""
        import html

        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width: 100%; height: 520px; '
            'border: 1px solid #ddd"></iframe>'
        )


def _backend() -> str:
    """The backend Keras runs on in this process; TensorFlow (the tool's default) before Keras is imported."""
    keras = sys.modules.get("keras")
    return "tensorflow" if keras is None else str(keras.backend.backend())


def _explained(value: Any) -> Result:
    """An explain answer (MultiHeadAttention's, GroupQueryAttention's, or Attention's kinds)."""
    from mha_cli.operations.dense import DenseResult

    failed = tuple(check.name for check in value.failed)
    if isinstance(value, DenseResult):
        from mha_cli.output.dense import render
        from mha_cli.output.documents.dense import dense_document

        return Result("explain", value, lambda: dense_document(value), lambda c: render(value, c), failed)
    from mha_cli.output.documents.explain import to_document
    from mha_cli.output.explain import render as render_explain

    return Result("explain", value, lambda: to_document(value), lambda c: render_explain(value, c), failed)


def explain(
    layer: Any = None,
    query: Any = None,
    value: Any = None,
    key: Any = None,
    *,
    backend: str | None = None,
    execute: bool = True,
    max_memory: int = DEFAULT_MAX_MEMORY,
    **call_kwargs: Any,
) -> Result:
    """Explain one attention layer and verify it on the real layer.

    Two forms:

    - ``explain(layer, query, value=None, key=None, **call_kwargs)``: your own, live
      ``keras.layers.MultiHeadAttention`` or ``GroupQueryAttention`` (or a subclass), built or not,
      called as you call it on your tensors or arrays (``attention_mask=...``,
      ``use_causal_mask=True``); the call is explained and re-run on the layer's own weights and
      inputs, the NumPy re-execution held against it, and the re-run against your call's output
      (the ``model_call`` check). ``keras.layers.Attention`` and ``AdditiveAttention`` take ``query``
      as their list ``[query, value, key]`` (or query, value, key) and ``mask=[query_mask,
      value_mask]``.
    - ``explain(config)``: a configuration, as the command line states it: an ``MHAConfig``,
      ``GQAConfig`` or ``DenseConfig``, or a dict of a case file's keys (``{"shape": [32, 64, 4],
      "axes": 1}``); the tool builds the layer with seeded weights, as ``mha-explain`` does.
      ``execute=False`` answers from the shape algebra alone.

    Raises ValueError (a ConfigError: which argument, what was wrong, what would be right) for
    what the layer cannot take; your own call's errors propagate unchanged.
    """
    config = (
        _config(layer)
        if layer is None or isinstance(layer, Mapping | MHAConfig | GQAConfig | DenseConfig)
        else None
    )
    if config is not None:
        if query is not None or value is not None or key is not None or call_kwargs:
            raise ConfigError(
                "query", None, "a configuration states its own shapes; pass tensors with a layer"
            )
        chosen = backend or _backend()
        if isinstance(config, DenseConfig):
            from mha_cli.operations.dense import explain_dense

            return _explained(explain_dense(config, chosen, execute=execute, max_memory=max_memory))
        from mha_cli.operations.explain import explain as explain_config

        return _explained(explain_config(config, chosen, execute=execute, max_memory=max_memory))
    if query is None:
        raise ConfigError("query", None, "give the tensor (or array) you call the layer on")
    if not execute:
        raise ConfigError(
            "execute", False, "a live layer is explained from its call, which runs it; give a config"
        )
    if backend is not None and backend != _backend():
        raise ConfigError(
            "backend", backend, f"a live layer runs on the Keras of this process ({_backend()})"
        )
    from mha_cli.operations.live import explain_layer

    return _explained(explain_layer(layer, query, value, key, **call_kwargs))


def _config(given: Any) -> MHAConfig | GQAConfig | DenseConfig:
    if given is None:
        raise ConfigError("layer", None, "give a layer and the tensors you call it on, or a configuration")
    if isinstance(given, Mapping):
        from mha_cli.core.cases import config_from

        return config_from(dict(given))
    return given  # type: ignore[no-any-return]


def scan(
    model: Any,
    inputs: Mapping[str, int | Sequence[int]] | None = None,
    *,
    batch: int = 2,
    seed: int = 0,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Result:
    """Every attention call of a live ``keras.Model``, explained and verified, as ``mha-explain scan``.

    ``inputs`` gives sizes the model leaves unknown, by input name (``{"token_ids": 128}``, or a
    shape without the batch axis), as ``--input`` does. The model runs once on random inputs of
    ``batch`` items drawn from ``seed``, on the Keras of this process, with its own weights.
    """
    from mha_cli.core.models import InputSpec, ModelSpec
    from mha_cli.operations.scan import scan as scan_model
    from mha_cli.output.documents.scan import scan_document
    from mha_cli.output.scan import render_scan

    specs = tuple(
        InputSpec(name, (size,) if isinstance(size, int) else tuple(size))
        for name, size in (inputs or {}).items()
    )
    spec = ModelSpec(
        inputs=specs, batch=batch, seed=seed, live=str(getattr(model, "name", type(model).__name__))
    )
    found = scan_model(spec, _backend(), max_memory=max_memory, live=model)
    failed = tuple(
        check.name for call in found.calls if call.result is not None for check in call.result.failed
    )
    return Result("scan", found, lambda: scan_document(found), lambda c: render_scan(found, c), failed)


def compare(*configs: Any, backend: str | None = None, execute: bool = True) -> Result:
    """Configurations side by side, as ``mha-explain compare``.

    Two or more ``MHAConfig`` (attention_axes choices on the same input: does each compute the same
    thing?), or one ``DenseConfig`` (MultiHeadAttention, Attention and AdditiveAttention on its input).
    """
    chosen = backend or _backend()
    if len(configs) == 1 and isinstance(configs[0], DenseConfig):
        from mha_cli.operations.families import compare_families
        from mha_cli.output.documents.families import families_document
        from mha_cli.output.families import render_families

        found = compare_families(configs[0], chosen, execute=execute)
        failed = tuple(check.name for check in found.failed)
        return Result(
            "compare", found, lambda: families_document(found), lambda c: render_families(found, c), failed
        )
    if len(configs) < 2 or not all(isinstance(config, MHAConfig) for config in configs):
        raise ConfigError(
            "configs",
            None,
            "give two or more MHAConfig (the same input, other attention_axes), or one DenseConfig",
        )
    from mha_cli.operations.compare import compare as compare_configs
    from mha_cli.output.compare import render_compare
    from mha_cli.output.documents.compare import compare_document

    comparison = compare_configs(configs, chosen, execute=execute)
    failed = tuple(check.name for result in comparison.results for check in result.failed)
    return Result(
        "compare",
        comparison,
        lambda: compare_document(comparison),
        lambda c: render_compare(comparison, c),
        failed,
    )


@contextlib.contextmanager
def clarify() -> Iterator[None]:
    """Around your own code: a call of MultiHeadAttention or GroupQueryAttention (or a subclass, or a
    model's call of one) that raises keeps raising the same exception, with a note (PEP 678) saying
    in your shapes which argument was wrong, why, and the shape that would work; or that the shapes
    are ones the layer takes, so the error is about something else. Nothing is caught; errors
    outside those calls pass untouched::

        with mha_cli.clarify():
            model.fit(...)
    """
    from mha_cli.runtime.clarify import clarified

    with clarified():
        yield
