"""The documentation site: it builds with Sphinx with warnings as errors, new pages join
the index without editing it, and the tutorial's program does what the page says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, require
from markdown_blocks import Step, code_blocks, file_name, run_steps

DOCS = REPO / "docs"


def _build(src: Path, out: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(src), str(out)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"


def _pages(docs: Path) -> list[str]:
    return sorted(p.stem for p in docs.glob("*.md"))


def test_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
    _build(DOCS, tmp_path)
    for page in _pages(DOCS):
        assert (tmp_path / f"{page}.html").exists(), page
    api = (tmp_path / "api.html").read_text()
    for name in ("trio_fuse_uring.mount", "trio_fuse_uring.Operations.lookup",
                 "trio_fuse_uring.Options", "trio_fuse_uring.Mount.invalidate_inode"):  # fmt: skip
        assert f'id="{name}"' in api, name
    assert (tmp_path / "_images" / "results.png").exists()  # the benchmarks chart
    index = (tmp_path / "index.html").read_text()
    porting = [p for p in _pages(DOCS) if p.startswith("porting")]
    assert ("The porting guides say" in index) == bool(porting)


def test_new_pages_join_the_index_without_editing_it(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build"))
    shutil.copytree(REPO / "benchmarks", tmp_path / "benchmarks")  # the chart's path
    (src / "porting-from-somewhere.md").write_text("# Porting from somewhere\n\nText.\n")
    (src / "zz-new-topic.md").write_text("# A new topic\n\nText.\n")
    _build(src, tmp_path / "html")
    index = (tmp_path / "html" / "index.html").read_text()
    porting = index.index("Porting from other libraries")
    assert index.index('href="porting-from-somewhere.html"') > porting
    assert 'href="zz-new-topic.html"' in index
    assert "The porting guides say" in index


def test_every_page_has_one_title() -> None:
    for path in DOCS.glob("*.md"):
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        titles = [line for line in text.splitlines() if line.startswith("# ")]
        assert len(titles) == 1, f"{path.name}: {titles}"


def test_tutorial_program_and_commands() -> None:
    """notesfs.py as printed, started as the page says, used with the page's commands."""
    require("devfuse")
    page = (DOCS / "tutorial.md").read_text()
    (program,) = [b for b in code_blocks(page, "python") if file_name(b) == "notesfs.py"]
    start, use = [b for b in code_blocks(page, "sh") if "notes" in b]
    assert start.strip() == ".venv/bin/python notesfs.py /tmp/notes"  # sys.executable here
    (outcome,) = run_steps(
        [Step([sys.executable, "notesfs.py", "/tmp/notes"], daemon=True, then=use.splitlines())],
        files={"notesfs.py": program},
    )
    assert outcome.mounted == "/tmp/notes", outcome
    assert outcome.then_returncode == 0, outcome.then_output
    assert outcome.then_output.startswith("buy milk\n"), outcome.then_output
    assert re.search(r"-rw-r--r-- 1 root root 9 .* todo", outcome.then_output), outcome.then_output
    assert outcome.returncode == 0, outcome.output  # `umount` ended it


# Words about how the project is run, which mean nothing to its users.
INTERNAL = re.compile(r"\bissue[- ]?#?\d+|\bissues? \d+\b|targets of issue|\bthe lead\b", re.I)


def test_no_project_internal_words() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    found = []
    for name in files:
        if not name.endswith((".py", ".md", ".sh", ".toml", ".c", ".h", ".txt", ".cfg")):
            continue
        path = REPO / name
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if INTERNAL.search(line) and "INTERNAL = re.compile" not in line:
                found.append(f"{name}:{n}: {line.strip()}")
    assert not found, "say what the thing is instead:\n" + "\n".join(found)
