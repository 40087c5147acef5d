"""The progress bar in a notebook: executed by nbconvert, exported to HTML, and looked at
in a real headless Chromium with the network cut off (as a page opened offline, or
archived, is seen).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .browser import chromium

ROOT = Path(__file__).resolve().parent.parent

SETUP = """\
import runstore

class Sweep(runstore.Run):
    def run(self, A=0, B=0):
        return {"val": A * B}

batch = runstore.Batch("sweep")
batch.add_factorial_runs(Sweep, {"A": list(range(6)), "B": list(range(6))})"""


def executed_notebook(folder: Path) -> object:
    """A notebook that calls a batch twice (verbose as by default), executed in a kernel."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(SETUP),
                      nbformat.v4.new_code_cell("batch()"),
                      nbformat.v4.new_code_cell("batch()")]
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(
        notebook, {"metadata": {"path": str(folder)}})
    nbformat.write(notebook, folder / "sweep.ipynb")
    return notebook


@pytest.mark.slow
def test_the_progress_bar_shows_in_a_notebook_exported_to_html_offline(tmp_path, monkeypatch):
    from nbconvert import HTMLExporter

    # The kernel imports this runstore, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    notebook = executed_notebook(tmp_path)
    computing, cached = notebook.cells[1].outputs, notebook.cells[2].outputs
    # One output that was updated in place: HTML, and text for front ends without it.
    (bar,) = [o for o in computing if o.output_type == "display_data"]
    assert set(bar.data) == {"text/html", "text/plain"}
    assert "100%" in bar.data["text/plain"] and "36/36" in bar.data["text/plain"]
    streams = [(o.name, o.text) for o in computing if o.output_type == "stream"]
    assert streams == [("stderr", "0 of 36 runs from the store, 36 computed\n")]
    assert [(o.output_type, o.name, o.text) for o in cached] == [
        ("stream", "stderr", "36 of 36 runs from the store, 0 computed\n")]

    page = tmp_path / "sweep.html"
    page.write_text(HTMLExporter().from_notebook_node(notebook)[0])
    assert "application/vnd.jupyter.widget" not in page.read_text()  # no widget to load
    with chromium() as driver:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": -1})
        driver.get(page.as_uri())
        shown = driver.find_element("tag name", "body").text
        bars = driver.find_elements("css selector", ".runstore-progress progress")
        seen = [(b.is_displayed(), b.get_attribute("value"), b.get_attribute("max"),
                 b.size["width"]) for b in bars]
        driver.save_screenshot(str(tmp_path / "sweep.png"))
    print(f"screenshot: {tmp_path / 'sweep.png'}")
    # A drawn bar, full, with its text at 100%; the lines that end the calls.
    assert len(seen) == 1 and seen[0][:3] == (True, "36", "36") and seen[0][3] > 100, seen
    assert "sweep: 100% 36/36" in shown
    assert "0 of 36 runs from the store, 36 computed" in shown
    assert "36 of 36 runs from the store, 0 computed" in shown
    assert "Loading widget" not in shown and "IProgress not found" not in shown
