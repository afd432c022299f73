"""The attention heatmap page, opened in a real browser (Debian's Chromium, driven by Playwright):
a click on a query position must show the weights the real layer computed for it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import mha_cli
from mha_cli.cli.app import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: As Debian's Chromium runs here: as root, on a machine with no network but the package registries.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Any:
    if CHROMIUM is None or not _has_playwright():
        if os.environ.get("CI"):  # CI installs both (.ci/run): a skip there would hide the test
            pytest.fail("CI has no Chromium or Playwright: .ci/run installs them")
        pytest.skip("needs Debian's chromium (apt-get install chromium) and playwright (the test extra)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


def _open(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    assert [url for url in requests if not url.startswith("file:")] == []  # self-contained: nothing fetched
    return page, errors


@pytest.mark.keras
def test_clicking_a_pixel_shows_the_weights_the_real_layer_computed(browser: Any, tmp_path: Path) -> None:
    """An image (4 x 5) attending over height and width, 2 heads: the page of mha_cli.explain(layer,
    image), clicked at pixel (2, 3) with head 1, shows that pixel's 20 weights as the layer returned them."""
    import keras

    rng = np.random.default_rng(3)
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=(1, 2))
    image = rng.standard_normal((1, 4, 5, 8)).astype("float32")
    _, scores = layer(image, image, return_attention_scores=True)
    real = np.asarray(scores)[0, 1, 2, 3]  # (batch, heads, height_q, width_q, height_k, width_k)
    path = mha_cli.explain(layer, image).heatmap().save(tmp_path / "heat.html")
    page, errors = _open(browser, path)
    page.click('#queries .cell[data-position="2,3"]')
    page.select_option("#select-head", "1")
    shown = page.eval_on_selector_all(
        "#keys .cell", "cells => cells.map(c => [c.dataset.position, Number(c.dataset.weight)])"
    )
    assert len(shown) == 20
    for position, weight in shown:
        row, column = map(int, position.split(","))
        assert weight == pytest.approx(float(real[row, column]), abs=1e-5)
    selected = page.locator("#selected")
    assert selected.get_attribute("data-query") == "2,3" and selected.get_attribute("data-head") == "1"
    largest = np.unravel_index(int(np.argmax(real)), real.shape)
    assert selected.get_attribute("data-largest") == f"{largest[0]},{largest[1]}"
    assert "query (2,3), head 1: weights over 20 key positions, sum 1.000" in selected.text_content()
    picture = tmp_path / "heat.png"
    page.screenshot(path=str(picture))
    assert picture.stat().st_size > 5_000 and errors == []


@pytest.mark.keras
def test_a_sentence_and_a_free_axis_from_the_command_line(browser: Any, tmp_path: Path) -> None:
    """--html after a forward pass writes the page above the tables; a free axis gets a select."""
    path = tmp_path / "free.html"
    result = CliRunner().invoke(
        app, ["--shape", "6,5,4", "--axes", "1", "--num-heads", "1", "--html", str(path)]
    )
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    assert "src=" not in text and "href=" not in text  # nothing to fetch
    page, errors = _open(browser, path)
    page.select_option("#select-width", "4")
    page.click('#queries .cell[data-position="5"]')
    line = page.locator("#selected").text_content()
    assert line.startswith("query (5), head 0, width 4: weights over 6 key positions, sum 1.000")
    assert page.locator("pre.tables").count() == 1 and errors == []


def test_no_forward_pass_no_heatmap(tmp_path: Path) -> None:
    path = tmp_path / "tables.html"
    result = CliRunner().invoke(app, ["--shape", "6,4", "--no-run", "--html", str(path)])
    assert result.exit_code == 0 and "<pre" in path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="none were computed"):
        mha_cli.explain({"shape": [6, 4]}, execute=False).heatmap()
