"""The attention heatmap as one self-contained HTML page: inline CSS and script, no network, no CDN.

The query positions are drawn as a grid (one attended axis: a row; two: rows x columns, an image's
height x width; more: one such grid per leading index, a video's frames). Clicking (or hovering)
a query position shows its weights over the key positions, on a grid of the key axes, shaded by
weight (the darkest is the row's largest), each cell's value in its title. Selects choose the head
and the index of every free axis. The page's state is in its DOM (``data-`` attributes and the
``#selected`` line), which is what the browser test reads.
"""

from __future__ import annotations

import html
import json
from importlib import resources

from mha_cli.operations.heatmap import Heatmap


def _asset(name: str) -> str:
    """heatmap.css or heatmap.js, shipped beside this module and written into the page."""
    return (resources.files("mha_cli.output") / name).read_text(encoding="utf-8")


def page(found: Heatmap, tables: str = "") -> str:
    """The whole page; ``tables``: the command's tables as an HTML fragment, shown below."""
    meta = json.dumps({"axes": [axis.__dict__ for axis in found.axes], "shape": list(found.shape)})
    roles = ", ".join(f"{axis.name} ({axis.role}, {axis.size})" for axis in found.axes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(found.title)}</title>
<style>{_asset("heatmap.css")}</style></head>
<body>
<h1>{html.escape(found.title)}</h1>
<p class="note">Click a query position (left) to see its weights over the key positions (right); the darkest
cell is its largest weight, each cell's value in its tooltip. Axes of the scores: {html.escape(roles)}.</p>
<div class="controls" id="controls"></div>
<div class="panels">
<div><div class="block-label">query positions</div><div class="grids query" id="queries"></div></div>
<div><div class="block-label">its weights over the key positions</div>
<div class="grids key" id="keys"></div></div>
</div>
<div id="selected"></div>
<script type="application/json" id="meta">{meta}</script>
<script type="text/plain" id="weights">{found.values}</script>
<script>{_asset("heatmap.js")}</script>
{tables}
</body></html>
"""


def tables_page(tables: str) -> str:
    """The tables alone, as a page (no forward pass, or scores too many to draw)."""
    head = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"></head><body>'
    return f"{head}\n{tables}\n</body></html>\n"
