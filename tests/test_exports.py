"""The public surface, in the style of trio's ``_tests/test_exports.py``.

Everything public is re-exported from ``trio_fuse_uring`` (and the handler API from
``trio_fuse_uring.ops``), documented, and claims the public module as its home.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import trio_fuse_uring
import trio_fuse_uring.ops

PUBLIC_MODULES = [trio_fuse_uring, trio_fuse_uring.ops]


def public_objects(module: types.ModuleType) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in module.__all__]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_names_exist_and_are_unique(module: types.ModuleType) -> None:
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert not name.startswith("_"), name
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name}"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_classes_and_functions_have_docstrings(module: types.ModuleType) -> None:
    undocumented = [
        name
        for name, obj in public_objects(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj)
    ]
    assert undocumented == []


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_module_metadata_names_the_public_module(module: types.ModuleType) -> None:
    # Tracebacks and reprs say trio_fuse_uring.FUSEError, not ..._types.FUSEError.
    for name, obj in public_objects(module):
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        assert obj.__module__ == "trio_fuse_uring", f"{name}.__module__ is {obj.__module__}"
        assert obj.__qualname__ == obj.__name__, f"{name} is not defined at module level"


def test_handler_api_is_reexported_at_the_top() -> None:
    for name in trio_fuse_uring.ops.__all__:
        assert name in trio_fuse_uring.__all__, name
        assert getattr(trio_fuse_uring, name) is getattr(trio_fuse_uring.ops, name)


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_private_modules_not_exported(module: types.ModuleType) -> None:
    for name, obj in public_objects(module):
        assert not isinstance(obj, types.ModuleType), name


def test_exceptions_are_exceptions_with_docs() -> None:
    for name in ["FUSEError", "MountError", "OptionError", "ProtocolError", "UringUnavailable"]:
        obj = getattr(trio_fuse_uring, name)
        assert inspect.isclass(obj) and issubclass(obj, Exception), name
        assert len(inspect.getdoc(obj) or "") > 40, f"{name} should explain itself"


def test_root_inode() -> None:
    assert trio_fuse_uring.ROOT_INODE == 1


def test_ring_extension_not_imported_eagerly() -> None:
    code = (
        "import sys, trio_fuse_uring\n"
        "bad = sorted(m for m in sys.modules if m.startswith('trio_fuse_uring._ring')"
        " or m == '_cffi_backend')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"imported eagerly: {out.stdout.strip()}"


def test_py_typed_shipped() -> None:
    pkg = Path(trio_fuse_uring.__file__).parent
    assert (pkg / "py.typed").is_file()
