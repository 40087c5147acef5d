"""A real headless Chromium, driven by Selenium, for the tests that look at pages.

``chromium()`` installs Debian's ``chromium`` and ``chromium-driver`` through
``tests/install_chromium.sh`` when they are missing, and skips the calling test,
printing why, only where that cannot work (not root, no apt-get, no network).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def ensure_chromium() -> str:
    """The path of the chromium binary, installing it if needed (or skip)."""
    done = subprocess.run(["sh", str(HERE / "install_chromium.sh")],
                          capture_output=True, text=True, timeout=900)
    binary = shutil.which("chromium")
    if done.returncode != 0 or binary is None or shutil.which("chromedriver") is None:
        reason = f"no headless browser here: {done.stderr.strip() or 'chromium not found'}"
        print(reason)
        pytest.skip(reason)
    return binary


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Selenium WebDriver on a headless Chromium; quit whatever happens."""
    binary = ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
