"""Sphinx configuration for the runstore documentation."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "runstore"
author = "The runstore developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # numpydoc-style docstrings
    "interface_doc",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
exclude_patterns = ["_build"]
html_theme = "alabaster"
