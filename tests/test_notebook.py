"""A real notebook in a real kernel (nbclient, ipykernel): the magic, the API and clarify(), as a
course student would use them in a Jupyter assignment (seed 000); the outputs are read back."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

pytestmark = pytest.mark.keras

CELLS = [
    "import numpy as np, keras, mha_cli",
    "%load_ext mha_cli",
    "%mha_explain --shape 32,64,4 --axes 1 --brief",
    "%mha_explain --shape 32,64,4 --axes 5",
    (
        "layer = keras.layers.MultiHeadAttention(num_heads=8, key_dim=2)\n"
        "query = np.random.default_rng(0).standard_normal((2, 3, 16)).astype('float32')\n"
        "result = mha_cli.explain(layer, query)\n"
        "result"
    ),
    "with mha_cli.clarify():\n    layer(query, query, attention_mask=np.ones((2, 2, 3, 3), bool))",
    "result.heatmap()",
]


def _outputs(cell: Any) -> str:
    """A cell's outputs as one text: streams, text/plain and text/html, and an error's traceback."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.extend(output.data.get(kind, "") for kind in ("text/plain", "text/html"))
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))  # the colours rich and IPython add


def test_the_magic_the_api_and_clarify_in_a_real_kernel(tmp_path: Any) -> None:
    try:
        import nbclient
        import nbformat
    except ImportError:
        pytest.skip("needs the notebook extra: pip install '.[notebook]'")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    client.execute()
    cells = notebook.cells
    magic, refused, explained, clarified, heat = (_outputs(cells[i]) for i in (2, 3, 4, 5, 6))
    # The magic: the command line's answer and its one-line errors, in the cell.
    assert "scores   (None, 64, 2, 32, 32): batch, width, heads, height_q, height_k" in magic
    assert "verified on Keras" in magic
    assert "--axes 5: " in refused and "Traceback" not in refused
    # The API's result renders as its tables in HTML (and as text).
    assert "<pre" in explained and "(None, 8, 3, 3): batch, heads, seq_q, seq_k" in explained
    # clarify(): the error is the layer's own, with the note under it.
    assert "InvalidArgumentError" in clarified or "Incompatible shapes" in clarified
    assert "mha-explain: the attention mask (2, 2, 3, 3)" in clarified
    assert "the layer expects (2, 3, 3) here" in clarified
    # The heatmap, inline: a page of its own in an iframe.
    assert heat.startswith("<iframe srcdoc=") or "<iframe srcdoc=" in heat
