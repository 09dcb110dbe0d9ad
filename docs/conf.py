"""Sphinx configuration of nnhil's documentation (MyST Markdown pages, autodoc).

Build it strict, as the default suite does (tests/docs/test_docs_build.py):

    .venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # nnhil_docs, the generated references

project = "nnhil"
author = "the nnhil developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "nnhil_docs"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3            # [text](page.md#a-heading) links resolve, and are checked
myst_enable_extensions = ["colon_fence"]
html_theme = "alabaster"
html_static_path = []
autodoc_member_order = "bysource"
autodoc_typehints = "none"          # signatures as written; the docstrings say what a value is

# types from other packages that a docstring names; nitpicky mode would call them unresolved
nitpick_ignore_regex = [("py:class", r"(numpy|np|pathlib|Path|serial|pytest)\..*")]
smartquotes = False                 # option names keep their two hyphens
autodoc_preserve_defaults = True    # a default shows as written (CLI_OPTIONS), not as its repr
