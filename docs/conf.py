"""Sphinx configuration: the Markdown pages (MyST) in this directory, the API reference
from the package's docstrings, the furo theme.

Built by ``tests/test_docs_site.py`` with warnings as errors; by hand::

    .venv/bin/python -m sphinx -W -b html docs docs/_build/html

A new page is a ``docs/<topic>.md`` with one top-level heading. The index lists it
without being edited: ``porting*`` pages under "Porting from other libraries", every
other page not in :data:`GUIDE` under "Reference and design".
"""

from __future__ import annotations

from pathlib import Path

import trio_fuse_uring

project = "trio-fuse-uring"
author = "the trio-fuse-uring authors"
copyright = "2026, the trio-fuse-uring authors"
release = version = trio_fuse_uring.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' "Raises:" / "Returns:" sections
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: the properties are documented too
napoleon_custom_sections = [
    ("Mount options", "params_style"),
    ("Connection tuning", "params_style"),
    ("Serving", "params_style"),
]

html_theme = "furo"
html_title = f"trio-fuse-uring {release}"

HERE = Path(__file__).resolve().parent
#: The guide's pages, in reading order (listed by name in index.md).
GUIDE = [
    "installing", "tutorial", "embedding", "transports", "notifications", "troubleshooting",
    "benchmarks",
]  # fmt: skip


def page_lists() -> dict[str, list[str]]:
    """The index's generated toctree entries: porting guides, then everything else."""
    pages = sorted(p.stem for p in HERE.glob("*.md") if p.stem != root_doc)
    porting = [p for p in pages if p.startswith("porting")]
    rest = [p for p in pages if p not in GUIDE and p not in porting and p != "api"]
    return {"%PORTING_PAGES%": porting, "%OTHER_PAGES%": ["api", *rest]}


PORTING_NOTE = (
    " Coming from another FUSE library (pyfuse3, fusepy, mfusepy)? The porting guides say "
    "what changes and what stays the same."
)


def _fill_index(app: object, docname: str, source: list[str]) -> None:
    if docname == root_doc:
        lists = page_lists()
        for marker, pages in lists.items():
            source[0] = source[0].replace(marker, "\n".join(pages))
        note = PORTING_NOTE if lists["%PORTING_PAGES%"] else ""
        source[0] = source[0].replace("%PORTING_NOTE%", note)


def setup(app: object) -> None:
    app.connect("source-read", _fill_index)  # type: ignore[attr-defined]
