"""``runstore ui``: a real server process, read by a real headless Chromium (and by HTTP).

Each server is ``python -m runstore ui STORE --no-browser --port 0`` in its own
process; the address it prints is where the pages are read. The browser tests
save screenshots of what they saw in ``RUNSTORE_SCREENSHOTS`` (by default a
folder in the temporary directory); the how-to's (docs/howto/browse.rst) are
made by ``RUNSTORE_SCREENSHOTS=docs/_static python -m pytest tests/test_ui.py``.
"""

from __future__ import annotations

import hashlib
import html
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import runstore

from .browser import chromium
from .runs import Arrays, Driven, ExampleRun, Flaky, Sleepy

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("RUNSTORE_SCREENSHOTS")
                   or Path(tempfile.gettempdir()) / "runstore-ui-screenshots")
#: Seconds any wait of these tests may last.
PATIENCE = 60


@contextmanager
def served(store: Path, *args: str, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Iterator[str]:
    """The address of ``runstore ui STORE`` running in its own process; stopped afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runstore", "ui", str(store), "--no-browser", "--port", "0",
         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, cwd=cwd)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    try:
        try:
            first = lines.get(timeout=PATIENCE)
        except queue.Empty:
            pytest.fail(f"runstore ui printed no address in {PATIENCE} s")
        found = re.search(r"read-only at (http://\S+)", first)
        assert found, first
        yield found.group(1).rstrip("/")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        error = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    # (Only when the test passed: a failure is not hidden behind this one.)
    assert "Traceback" not in error, error


def fetch(url: str, host: str | None = None) -> tuple[int, str]:
    """The status and text of a page (HTML entities unescaped)."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return response.status, html.unescape(response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return exc.code, html.unescape(exc.read().decode(errors="replace"))


def digests(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder``, by path, but SQLite's -wal and -shm.

    Reading a store in WAL mode read-only (as every reading command does)
    leaves an empty -wal and a -shm (SQLite's shared-memory index) beside it;
    :func:`unchanged` checks that the -wal stays empty: nothing was written.
    """
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def unchanged(folder: Path, before: dict[str, str]) -> None:
    """Assert that the files under ``folder`` are as they were, and no write is logged."""
    assert digests(folder) == before
    assert [p.stat().st_size for p in folder.rglob("*-wal")] in ([], [0])


def make_store(folder: Path) -> Path:
    """A store with four batches: a sweep, arrays, runs that fail, a sweep of three parameters."""
    path = folder / "_res" / "example.db"
    example = runstore.Batch("example", store=path)
    example.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4], "operator": [min, max]})
    example(verbose=0)
    arrays = runstore.Batch("arrays", store=example.store)
    arrays.add_factorial_runs(Arrays, {"n": [3, 40], "seed": [0]})
    arrays(verbose=0)
    flaky = runstore.Batch("flaky", store=example.store)
    flaky.add_factorial_runs(Flaky, {"x": [0, 1, 2, 3]})
    with pytest.raises(runstore.errors.RunstoreError):
        flaky(verbose=0)
    driven = runstore.Batch("driven", store=example.store)
    driven.add_factorial_runs(Driven, {"A": [1, 2, 3, 4], "drive": [0.5, 1.0, 2.0],
                                       "damping": [0.1, 0.5]})
    driven(verbose=0)
    example.store.close()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def server(store) -> Iterator[str]:
    # Run where the store's batches keep it, as a user would: the pages name it _res/example.db.
    with served(store.relative_to(store.parent.parent), cwd=store.parent.parent) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium(1200, 800) as driver:
        yield driver


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PATIENCE).until(condition, f"waited {PATIENCE} s for {what}")


def table(driver, table_id: str) -> tuple[list[str], list[list[str]]]:
    """A page's table: its header and its rows' cells, as text."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tr")
    header = [c.text for c in rows[0].find_elements(By.TAG_NAME, "th")]
    return header, [[c.text for c in row.find_elements(By.TAG_NAME, "td")] for row in rows[1:]]


def images_loaded(driver) -> list[tuple[str, int]]:
    """Each image of the page with its width as the browser decoded it (0: broken)."""
    return driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete ? i.naturalWidth : 0])")


def screenshot(driver, name: str, height: int | None = None) -> None:
    """Save what the browser shows for the docs (``height``: in a window that tall)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    if height is not None:
        driver.set_window_size(size["width"], height)
    try:
        driver.save_screenshot(str(SCREENSHOTS / name))
    finally:
        driver.set_window_size(size["width"], size["height"])


def filter_table(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "where")
    box.clear()
    box.send_keys(text)
    old = driver.find_element(By.ID, "runs")
    box.submit()
    wait_for(driver, lambda d: not _attached(old), "the filtered table")


def _attached(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.tag_name
    except StaleElementReferenceException:
        return False
    return True


# -- in a browser --------------------------------------------------------------------


@pytest.mark.slow
def test_the_batches_page_shows_each_batch_by_state(server, browser):
    browser.get(server + "/")
    header, rows = table(browser, "batches")
    assert header[:6] == ["batch", "pending", "running", "done", "failed", "runs"]
    found = {row[0]: row[1:6] for row in rows}
    assert found == {"example": ["0", "0", "8", "0", "8"], "arrays": ["0", "0", "2", "0", "2"],
                     "flaky": ["0", "0", "2", "2", "4"], "driven": ["0", "0", "24", "0", "24"]}
    screenshot(browser, "ui-batches.png", height=500)


@pytest.mark.slow
def test_a_batch_is_filtered_in_the_language_of_runstore_runs_and_sorted(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.LINK_TEXT, "example").click()
    header, rows = table(browser, "runs")
    assert header == ["id", "state", "runtime", "A", "B", "operator", "val"]
    assert len(rows) == 8
    filter_table(browser, "A>=3 operator=max")
    header, rows = table(browser, "runs")
    assert [(r[3], r[5], r[6]) for r in rows] == [("3", "max", "9"), ("4", "max", "12")]
    assert browser.find_element(By.ID, "total").text == "2 runs match."
    screenshot(browser, "ui-batch.png")
    # Sorting: by val, then the other way; the filter stays.
    browser.find_element(By.CSS_SELECTOR, 'a[data-column="val"]').click()
    assert [r[6] for r in table(browser, "runs")[1]] == ["9", "12"]
    browser.find_element(By.CSS_SELECTOR, 'a[data-column="val"]').click()
    assert [r[6] for r in table(browser, "runs")[1]] == ["12", "9"]
    filter_table(browser, "")
    browser.find_element(By.CSS_SELECTOR, 'a[data-column="val"]').click()
    values = [int(r[6]) for r in table(browser, "runs")[1]]
    assert values == sorted(values) and len(values) == 8
    # A filter that cannot be read, or names nothing, is told as runstore runs tells it.
    filter_table(browser, "A>=")
    assert "cannot read the filter 'A>='" in browser.find_element(By.ID, "error").text
    assert table(browser, "runs")[1] == []
    filter_table(browser, "nope=3")
    assert "no run has a parameter 'nope'" in browser.find_element(By.ID, "error").text
    filter_table(browser, "'B=[1, 2, 3]' operator=min 'A__in=[1, 4]'")
    assert [r[3] for r in table(browser, "runs")[1]] == ["1", "4"]


@pytest.mark.slow
def test_a_run_shows_its_parameters_results_and_arrays_drawn(store, server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/batches/arrays?where=n%3D40")
    assert len(table(browser, "runs")[1]) == 1
    browser.find_element(By.CSS_SELECTOR, "#runs td.id a").click()
    assert browser.find_element(By.ID, "state").text == "done"
    assert pairs(browser, "parameters") == {"n": "40", "seed": "0"}
    results = pairs(browser, "results")
    assert results["stats.n"] == "40" and results["stats.label"] == "'n=40'"
    assert results["none"] == "None" and results["c"] == "(1-1j)"
    reader = runstore.Batch("arrays", store=runstore.Store(store, readonly=True))
    mean = reader.get_runs_with(n=40)[0].result["stats"]["mean"]
    reader.store.close()
    assert float(results["stats.mean"]) == pytest.approx(mean, rel=1e-5)
    wait_for(browser, lambda d: all(w > 0 for _, w in images_loaded(d)), "the arrays' figures")
    # A figure of each array: a line for 1-D (x, flags, z), an image for the 2-D m.
    assert {alt for alt, _ in images_loaded(browser)} == {
        "x: float64 (40,)", "m: int16 (40, 40)", "flags: bool (40,)", "z: complex64 (2,)"}
    assert {"runtime", "host", "started_at"} <= set(pairs(browser, "provenance"))
    screenshot(browser, "ui-run.png", height=1400)


def pairs(driver, table_id: str) -> dict[str, str]:
    """A two-column table of a page (a name, a value) as a dict."""
    from selenium.webdriver.common.by import By

    return {th.text: td.text for th, td in zip(
        driver.find_elements(By.CSS_SELECTOR, f"#{table_id} th"),
        driver.find_elements(By.CSS_SELECTOR, f"#{table_id} td"))}


@pytest.mark.slow
def test_a_failed_run_shows_its_error_and_traceback(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/batches/flaky")
    filter_table(browser, "x=3")
    browser.find_element(By.CSS_SELECTOR, "#runs td.id a").click()
    assert browser.find_element(By.ID, "state").text == "failed"
    assert browser.find_element(By.ID, "error").text == (
        "ValueError: odd x=3 is not allowed\nsecond line")
    traceback = browser.find_element(By.ID, "traceback").text
    assert traceback.startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"odd x={x} is not allowed\\nsecond line")' in traceback


@pytest.mark.slow
def test_the_plot_page_draws_a_batch(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/batches/example/plot")
    assert browser.find_elements(By.ID, "figure") == []  # the form first
    Select(browser.find_element(By.ID, "x")).select_by_visible_text("A")
    Select(browser.find_element(By.ID, "y")).select_by_visible_text("val")
    Select(browser.find_element(By.ID, "hue")).select_by_visible_text("operator")
    browser.find_element(By.ID, "where").send_keys("A>=2")
    browser.find_element(By.ID, "plot").submit()
    figure = wait_for(browser, lambda d: d.find_elements(By.ID, "figure"), "the figure")[0]
    assert browser.execute_script("return arguments[0].naturalWidth", figure) > 300
    assert "A=2" not in browser.current_url and "where=A%3E%3D2" in browser.current_url
    assert figure.get_attribute("alt") == "val against A, a line per operator, where A>=2"
    assert browser.find_elements(By.ID, "panels") == []  # one panel
    browser.get(server + "/batches/example/plot?x=A&y=nope")
    assert "has no column 'nope'" in browser.find_element(By.ID, "error").text
    browser.get(server + "/batches/example/plot?x=A&y=val&where=A%3E")
    assert "cannot read the filter" in browser.find_element(By.ID, "error").text


@pytest.mark.slow
def test_the_plot_page_draws_panels_by_col_and_row(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def draw(**fields: str):
        """Choose the form's fields (the others as they are), submit; the figure or None."""
        for name, value in fields.items():
            Select(browser.find_element(By.ID, name)).select_by_value(value)
        old = browser.find_element(By.ID, "plot")
        old.submit()
        wait_for(browser, lambda d: not _attached(old), "the new page")
        found = browser.find_elements(By.ID, "figure")
        return found[0] if found else None

    def size(figure) -> tuple[int, int]:
        return tuple(browser.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", figure))

    browser.get(server + "/batches/driven/plot")
    # drive and damping both vary: a line through A alone would join different runs.
    assert draw(x="A", y="amp") is None
    error = browser.find_element(By.ID, "error").text
    assert ("its runs also differ in damping (2 values: 0.1, 0.5); drive (3 values: 0.5, 1.0, "
            "2.0), so a line would join points of different calculations") in error
    assert browser.find_element(By.ID, "hint").text == (
        "On this page: choose damping or drive as hue, col or row, or keep one value with "
        "where (for example damping=0.1).")
    assert draw(hue="drive") is None  # damping still varies
    assert "damping (2 values: 0.1, 0.5)" in browser.find_element(By.ID, "error").text
    # A panel per damping, side by side, a line per drive in each.
    figure = draw(col="damping")
    assert browser.find_elements(By.ID, "error") == []
    assert figure.get_attribute("alt") == (
        "amp against A, a line per drive, panels by damping (columns)")
    assert browser.find_element(By.ID, "panels").text == (
        "2 panels: damping = 0.1; damping = 0.5")
    assert "col=damping" in browser.current_url
    wait_for(browser, lambda d: size(figure)[0] > 0, "the figure")
    by_col = size(figure)
    screenshot(browser, "ui-plot.png", height=780)
    # Rows by damping, columns by drive: a grid of 2 x 3 panels, wider and taller.
    figure = draw(hue="", col="drive", row="damping")
    assert figure.get_attribute("alt") == (
        "amp against A, panels by drive (columns) and damping (rows)")
    assert browser.find_element(By.ID, "panels").text == (
        "6 panels: damping = 0.1 | drive = 0.5; damping = 0.1 | drive = 1.0; "
        "damping = 0.1 | drive = 2.0; damping = 0.5 | drive = 0.5; damping = 0.5 | drive = 1.0; "
        "damping = 0.5 | drive = 2.0")
    wait_for(browser, lambda d: size(figure)[0] > 0, "the grid")
    grid = size(figure)
    assert grid[0] > by_col[0] and grid[1] > by_col[1] * 1.5, (grid, by_col)
    # The filter narrows the grid: one damping, one row of panels.
    browser.find_element(By.ID, "where").send_keys("damping=0.5")
    figure = draw()
    assert browser.find_element(By.ID, "panels").text.startswith(
        "3 panels: damping = 0.5 | drive = 0.5;")


@pytest.mark.slow
def test_the_counts_update_while_another_process_completes_runs(tmp_path, browser):
    from selenium.webdriver.common.by import By

    path = tmp_path / "sweep.db"
    batch = runstore.Batch("sweep", store=path)
    batch.add_factorial_runs(Sleepy, {"i": list(range(6)), "seconds": [0.2]})
    batch.store.close()
    with served(path) as url:
        browser.get(url + "/")

        def count(state: str) -> str:
            return browser.find_element(
                By.CSS_SELECTOR, f'tr[data-batch="sweep"] td[data-state="{state}"]').text

        assert (count("pending"), count("done")) == ("6", "0")
        loaded = browser.execute_script("return performance.timeOrigin")
        worker = subprocess.run([sys.executable, "-m", "runstore", "worker", str(path)],
                                cwd=ROOT, capture_output=True, text=True, timeout=PATIENCE)
        assert worker.returncode == 0, worker.stderr
        wait_for(browser, lambda d: count("done") == "6", "the done count to reach 6")
        assert count("pending") == "0" and count("total") == "6"
        # The same page, updated in place (not reloaded).
        assert browser.execute_script("return performance.timeOrigin") == loaded


# -- by HTTP -------------------------------------------------------------------------


def test_browsing_writes_nothing_to_the_store(tmp_path):
    path = make_store(tmp_path)
    before = digests(tmp_path)
    with served(path) as url:
        pages = ["/", "/counts.json", "/batches/example?where=A%3E%3D3&sort=val&order=desc",
                 "/batches/example/plot?x=A&y=val&hue=operator", "/batches/arrays",
                 "/batches/driven/plot?x=A&y=amp&hue=drive&col=damping&row=",
                 "/batches/flaky?where=x%3D"]
        for page in pages:
            assert fetch(url + page)[0] in (200, 400), page
        for rid in re.findall(r"/runs/([0-9a-f]{40})", fetch(url + "/batches/arrays")[1]):
            status, text = fetch(f"{url}/runs/{rid}")
            assert status == 200
            for src in re.findall(r'src="(/runs/[^"]+)"', text):
                assert fetch(url + src.replace("&amp;", "&"))[0] == 200
    unchanged(tmp_path, before)


def test_the_filter_boxes_suggest_filters_that_match_the_batch(server):
    import html
    import urllib.parse

    suggested = {}
    for name in ("example", "arrays", "flaky", "driven"):
        for page in (f"/batches/{name}", f"/batches/{name}/plot"):
            text = fetch(server + page)[1]
            (example,) = re.findall(r'id="where"[^>]*placeholder="([^"]*)"', text)
            suggested[page] = html.unescape(example)
        assert suggested[f"/batches/{name}"] == suggested[f"/batches/{name}/plot"]
        status, text = fetch(server + f"/batches/{name}?where="
                             + urllib.parse.quote(suggested[f"/batches/{name}"]))
        assert status == 200 and re.search(r"/runs/[0-9a-f]{40}", text), (name, suggested)
    assert suggested["/batches/example"] == "A>=1 'B=[1, 2, 3]'"
    assert suggested["/batches/driven"] == "A>=1 damping=0.1"


def test_pages_that_name_nothing_say_so(server):
    status, text = fetch(server + "/batches/nope")
    assert status == 404 and "has no batch 'nope'" in text and "'example'" in text
    status, text = fetch(server + "/runs/0000000000")
    assert status == 404 and "0000000000" in text
    status, text = fetch(server + "/runs/xyz")
    assert status == 404 and "hex digits" in text
    assert fetch(server + "/counts.json")[0] == 200
    # Only the address served on is answered: not a page of another site (DNS rebinding).
    assert fetch(server + "/counts.json", host="attacker.example")[0] == 400


def test_a_bundle_is_browsed_with_its_arrays(tmp_path, store):
    batch = runstore.Batch("arrays", store=runstore.Store(store, readonly=True))
    db, h5 = batch.export(tmp_path / "shared")
    batch.store.close()
    before = digests(tmp_path)
    with served(db) as url:
        status, text = fetch(url + "/")
        assert status == 200 and '<tr data-batch="arrays">' in text
        rid = re.findall(r"/runs/([0-9a-f]{40})", fetch(url + "/batches/arrays?where=n%3D3")[1])
        assert len(rid) == 1
        status, text = fetch(f"{url}/runs/{rid[0]}")
        assert status == 200 and "m: int16 (3, 3)" in text
        image = urllib.request.urlopen(f"{url}/runs/{rid[0]}/array.png?key=m", timeout=PATIENCE)
        assert image.headers["Content-Type"] == "image/png"
        assert image.read().startswith(b"\x89PNG")
    unchanged(tmp_path, before)


def test_a_hostile_store_never_imports_the_code_it_names(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "hostile_code.py").write_text(textwrap.dedent("""
        import os

        import numpy as np
        import runstore

        if os.environ.get("UI_IMPORTED_MARK"):
            with open(os.environ["UI_IMPORTED_MARK"], "a") as f:
                f.write("imported\\n")


        def secret():
            return 1


        class Payload:
            pass


        class Hostile(runstore.Run):
            def run(self, x=0, f=secret):
                if x == 2:
                    raise RuntimeError("hostile failure")
                return {"y": x * 10, "field": [[x, 1], [2, 3]], "payload": Payload(),
                        "cube": np.zeros((2, 2, 2))}
        """))
    path = tmp_path / "hostile.db"
    made = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import runstore, hostile_code
        b = runstore.Batch("hostile", store={str(path)!r}, allow_pickle=True)
        b.add_factorial_runs(hostile_code.Hostile, {{"x": [0, 1, 2]}})
        try:
            b(verbose=0)
        except runstore.errors.RunstoreError:
            pass
        """)], env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(code), os.environ.get("PYTHONPATH", "")])}, capture_output=True, text=True,
        timeout=PATIENCE)
    assert made.returncode == 0, made.stderr
    mark = tmp_path / "imported"
    env = {"UI_IMPORTED_MARK": str(mark),
           "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
    # In this environment, importing the module would leave the mark.
    subprocess.run([sys.executable, "-c", "import hostile_code"], env={**os.environ, **env},
                   check=True, timeout=PATIENCE)
    assert mark.read_text() == "imported\n"
    mark.unlink()
    with served(path, env=env) as url:
        status, text = fetch(url + "/batches/hostile?sort=f")
        assert status == 200 and "hostile_code.secret" in text
        ids = re.findall(r"/runs/([0-9a-f]{40})", text)
        assert len(ids) == 3
        pages = [fetch(f"{url}/runs/{rid}") for rid in ids]
        assert [status for status, _ in pages] == [200, 200, 200]
        assert all("hostile_code.Hostile" in page for _, page in pages)
        assert "hostile failure" in pages[2][1]
        # The pickle is named, never read; the 3-D array is described, not drawn.
        assert "payload</th><td><code>(pickle: not shown)" in pages[0][1]
        assert "cube</code>: float64 (2, 2, 2) (not drawn" in pages[0][1]
        assert fetch(url + "/batches/hostile?where=f%3Dhostile_code.secret")[0] == 200
        assert fetch(url + "/batches/hostile/plot?x=x&y=y&hue=f")[0] == 200
    assert not mark.exists()


# -- the command line ----------------------------------------------------------------


def test_a_taken_port_is_one_line_error(store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "runstore", "ui", str(store),
                               "--no-browser", "--port", str(port)],
                              capture_output=True, text=True, timeout=PATIENCE)
    assert done.returncode == 8  # ExitCode.OS_ERROR
    assert done.stderr.startswith(f"runstore: error: cannot serve on 127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1 and "--port" in done.stderr


def test_without_the_ui_extra_it_says_what_to_install(store):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.modules["starlette"] = None  # as if it were not installed
        sys.argv = ["runstore", "ui", {str(store)!r}, "--no-browser"]
        from runstore.cli import run
        run()
        """)], capture_output=True, text=True, timeout=PATIENCE)
    assert done.returncode == 7  # ExitCode.UNAVAILABLE
    assert done.stderr == ("runstore: error: runstore ui needs the package 'starlette', which "
                           "is not installed. Install it with: pip install starlette  (or: pip "
                           "install 'runstore[ui]')\n")


def test_the_plot_of_a_batch_keeps_only_the_runs_where_asks(store):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    batch = runstore.Batch("example", store=runstore.Store(store, readonly=True))
    ax = batch.plot("A", "val", hue="operator", ax=Figure().subplots(),
                    where={"A__ge": 2, "operator": max})
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[2, 3, 4]]
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[6, 9, 12]]
    batch.store.close()


def test_ctrl_c_stops_it_and_says_so(store):
    process = subprocess.Popen([sys.executable, "-m", "runstore", "ui", str(store),
                                "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], PATIENCE)
        address = process.stdout.readline() if ready else "(nothing printed)"
        assert fetch(re.search(r"http://\S+", address).group(0) + "counts.json")[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=PATIENCE)
    assert (process.returncode, out, err) == (0, "stopped\n", "")
