"""Run the documentation's examples as a user's script would run.

Each page runs in a fresh temporary directory, and ``__main__`` resolves to
the page's namespace, so classes defined on a page pickle as they would in a
script.
"""

from __future__ import annotations

import sys
import types

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def run_like_a_script(request, monkeypatch, tmp_path):
    item = request.node
    if not isinstance(item, DoctestItem):
        return
    globs = item.dtest.globs

    def lookup(name):
        try:
            return globs[name]
        except KeyError:
            raise AttributeError(name) from None

    main = types.ModuleType("__main__")
    main.__getattr__ = lookup
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.chdir(tmp_path)
