"""Make ``import pyfuse3`` (and its asyncio modules) load this package instead.

Used by the runner (``python -m trio_fuse_uring.compat.pyfuse3 SCRIPT``) and by the
path entry ``_alias_path`` (for programs started without the runner, e.g. the child
processes of a test suite): the program's own files stay unchanged.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from pathlib import Path

PACKAGE = __name__.rpartition(".")[0]
#: Module names a pyfuse3 program may import, and what they resolve to.
ALIASES = {
    "pyfuse3": PACKAGE,
    "pyfuse3.asyncio": f"{PACKAGE}.asyncio",
    "pyfuse3_asyncio": f"{PACKAGE}.asyncio",
}
#: A directory with ``pyfuse3.py`` and ``pyfuse3_asyncio.py`` that install the aliases:
#: put it on ``PYTHONPATH`` to run pyfuse3 programs that are started as plain scripts.
ALIAS_PATH = str(Path(__file__).resolve().parent / "_alias_path")


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system returns sys.modules[name] after this: the real module.
        sys.modules[module.__name__] = importlib.import_module(ALIASES[module.__name__])


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


def install() -> None:
    """Resolve ``pyfuse3``, ``pyfuse3.asyncio`` and ``pyfuse3_asyncio`` to this package."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
    for alias, real in ALIASES.items():
        if alias in sys.modules and sys.modules[alias].__name__ != real:
            sys.modules[alias] = importlib.import_module(real)


def replace_self(alias: str) -> None:
    """Called by the files of ``_alias_path`` while they are being imported as ``alias``."""
    sys.modules[alias] = importlib.import_module(ALIASES[alias])
