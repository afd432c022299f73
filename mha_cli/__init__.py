"""mha-explain: explain Keras's attention layers from a real forward pass.

``import mha_cli`` is cheap: the public API (docs/api.md) is imported on first use, and Keras
only when a forward pass runs. ``mha_cli.explain``, ``mha_cli.scan`` and ``mha_cli.compare``
return a :class:`mha_cli.api.Result`; everything else in the package is internal.
"""

from typing import Any

from mha_cli.core.version import __version__

__all__ = [
    "DenseConfig",
    "GQAConfig",
    "MHAConfig",
    "Result",
    "__version__",
    "clarify",
    "compare",
    "explain",
    "scan",
]


def __getattr__(name: str) -> Any:
    """The public API, imported when first used (PEP 562), so that ``import mha_cli`` stays instant."""
    if name in __all__:
        from mha_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'mha_cli' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mha_cli`` in IPython or Jupyter: the ``%mha_explain`` line magic (mha_cli.cli.magic)."""
    from mha_cli.cli.magic import load_ipython_extension as load

    load(ipython)
