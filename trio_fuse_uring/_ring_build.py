"""cffi (API mode) builder for the io-uring queue core, ``trio_fuse_uring._ring_cffi``.

The C declarations live in ``_ring.h``; the part between ``TFU_CDEF_BEGIN`` and
``TFU_CDEF_END`` is handed to ``cdef()`` unchanged, so there is no C in Python strings.

Build in place from the repository root::

    .venv/bin/python trio_fuse_uring/_ring_build.py

``setup.py`` uses the module-level ``ffibuilder`` through ``cffi_modules``.
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
HEADER = HERE / "_ring.h"
SOURCE = HERE / "_ring.c"

_CDEF_RE = re.compile(r"/\* TFU_CDEF_BEGIN \*/(.*?)/\* TFU_CDEF_END \*/", re.S)
_VERSION_RE = re.compile(r'#define\s+TFU_RING_ABI_VERSION\s+"([^"]+)"')


def header_text() -> str:
    return HEADER.read_text()


def cdef_source(text: str | None = None) -> str:
    """The cdef part of ``_ring.h`` (between the markers)."""
    m = _CDEF_RE.search(text if text is not None else header_text())
    if m is None:
        raise RuntimeError(f"{HEADER}: TFU_CDEF_BEGIN/TFU_CDEF_END markers not found")
    return m.group(1)


def abi_version(text: str | None = None) -> str:
    """``TFU_RING_ABI_VERSION`` as written in ``_ring.h`` (compare with
    ``lib.tfu_ring_abi_version()`` of the compiled module to detect a stale build)."""
    m = _VERSION_RE.search(text if text is not None else header_text())
    if m is None:
        raise RuntimeError(f"{HEADER}: TFU_RING_ABI_VERSION not found")
    return m.group(1)


# The callback form of the trio hand-off (tfu_ring_tuning.wake_trio), which benchmarks
# compare with the eventfd; see _ring.py.
_PYTHON_CALLBACKS = 'extern "Python" void _tfu_wake_trio(void *);'

ffibuilder = FFI()
ffibuilder.cdef(cdef_source() + _PYTHON_CALLBACKS)
ffibuilder.set_source(
    "trio_fuse_uring._ring_cffi",
    '#include "_ring.h"\n',
    # relative to the repository root, where setup.py (and __main__ below) run
    sources=["trio_fuse_uring/_ring.c"],
    include_dirs=["trio_fuse_uring"],
    depends=["trio_fuse_uring/_ring.h"],
    libraries=["uring", "pthread"],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)


if __name__ == "__main__":
    import os
    import sys

    # Build in place: trio_fuse_uring/_ring_cffi.*.so next to this file.
    root = HERE.parent
    os.chdir(root)
    sys.path.insert(0, str(root))
    ffibuilder.compile(tmpdir=str(root), verbose=True)
