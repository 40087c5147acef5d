"""The documentation covers the public API, and builds without warnings."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import runstore

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PUBLIC_MODULES = ["batch", "run", "bundle", "legacy", "worker", "cluster", "containers",
                  "encoding", "identity", "interfaces", "errors", "performance",
                  "performance.fft", "performance.threads", "performance.blas"]
ZOPE_REEXPORTS = {"Interface", "Attribute", "implementer", "verifyClass", "verifyObject"}


def documented_names() -> set[str]:
    text = (DOCS / "reference.rst").read_text()
    return set(re.findall(r"^\.\. (?:auto\w+|interface):: (runstore\.[\w.]+)", text, re.M))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_reference(module_name):
    module = importlib.import_module(f"runstore.{module_name}")
    documented = documented_names()
    missing = [
        name for name in module.__all__
        if f"runstore.{module_name}.{name}" not in documented
        and not (module_name == "interfaces" and name == "Interface")
    ]
    assert not missing, f"add these to docs/reference.rst: {missing}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name):
    module = importlib.import_module(f"runstore.{module_name}")
    assert inspect.getdoc(module)
    for name in module.__all__:
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and name not in ZOPE_REEXPORTS:
            assert inspect.getdoc(obj), f"runstore.{module_name}.{name} has no docstring"


def test_package_reexports_only_documented_public_names():
    documented = documented_names()
    for name in runstore.__all__:
        assert not name.startswith("_") or name == "__version__"
        if name == "__version__":
            continue
        homes = {f"runstore.{name}"} | {
            f"runstore.{m}.{name}" for m in PUBLIC_MODULES
            if name in importlib.import_module(f"runstore.{m}").__all__}
        assert homes & documented, f"runstore.{name} is not in docs/reference.rst"


def test_every_docs_page_is_in_the_table_of_contents():
    index = (DOCS / "index.rst").read_text()
    pages = {str(p.relative_to(DOCS).with_suffix("")) for p in DOCS.rglob("*.rst")} - {"index"}
    assert {p for p in pages if p not in index} == set()


@pytest.mark.slow
def test_sphinx_builds_the_docs_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "html" / "reference.html").exists()


def test_every_command_is_documented():
    from runstore.cli import main

    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.rst"))
    for name in main.commands:
        assert f"runstore {name}" in pages, f"document the command runstore {name}"
