"""cffi (API mode) builder for the io-uring queue core, ``trio_fuse_uring._ring_cffi``.

The C declarations live in ``_ring.h``; the part between ``TFU_CDEF_BEGIN`` and
``TFU_CDEF_END`` is handed to ``cdef()`` unchanged, so there is no C in Python strings.

liburing is linked statically when its archive exists (Debian's liburing-dev ships
``liburing.a``), so the built extension needs only the C library at run time and a wheel
carries everything it needs. Where no usable liburing is found, :func:`liburing_link`
says why and ``setup.py`` builds the package without the extension (it then serves over
/dev/fuse only, and says so when it mounts).

Build in place from the repository root::

    .venv/bin/python trio_fuse_uring/_ring_build.py

``setup.py`` calls :func:`make_ffibuilder` through ``cffi_modules``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
HEADER = HERE / "_ring.h"
SOURCE = HERE / "_ring.c"

_CDEF_RE = re.compile(r"/\* TFU_CDEF_BEGIN \*/(.*?)/\* TFU_CDEF_END \*/", re.S)
_VERSION_RE = re.compile(r'#define\s+TFU_RING_ABI_VERSION\s+"([^"]+)"')

#: Link options, best first: the static archive, then the shared library.
STATIC_LIBURING = ":liburing.a"
SHARED_LIBURING = "uring"

# The smallest program that needs what _ring.c needs from liburing: its header with the
# complete SQE type, and a function from the library. Linked as a shared object, like the
# extension, so a non-PIC archive is caught here rather than in the real build.
_PROBE_C = """
#include <liburing.h>
int tfu_probe(void) {
    struct io_uring ring;
    return (int)sizeof(struct io_uring_sqe) + io_uring_queue_init(1, &ring, 0);
}
"""


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


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def _probe(library: str) -> str | None:
    """None if a shared object using liburing links with ``-l<library>``, else the
    compiler's first error line."""
    with tempfile.TemporaryDirectory(prefix="tfu-probe-") as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(_PROBE_C)
        cmd = [*_compiler(), "-fPIC", "-shared", "-o", str(Path(tmp, "probe.so")), str(src),
               f"-l{library}"]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            return f"no C compiler ({cmd[0]}: {exc.strerror})"
    if proc.returncode == 0:
        return None
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    return (errors or proc.stderr.splitlines() or ["failed"])[0].replace(str(src), "probe.c")


def liburing_link() -> tuple[str | None, str]:
    """How to link liburing here: ``(library, why)``.

    ``library`` is the ``-l`` argument (the static archive if it links, else the shared
    library) or None when neither works; ``why`` says what was found or what is missing.
    """
    static_err = _probe(STATIC_LIBURING)
    if static_err is None:
        return STATIC_LIBURING, "liburing linked statically"
    if _probe(SHARED_LIBURING) is None:
        return SHARED_LIBURING, f"liburing linked as a shared library ({static_err})"
    return None, f"liburing headers or library not usable: {static_err}"


# The callback form of the trio hand-off (tfu_ring_tuning.wake_trio), which benchmarks
# compare with the eventfd; see _ring.py.
_PYTHON_CALLBACKS = 'extern "Python" void _tfu_wake_trio(void *);'


def make_ffibuilder(library: str | None = None) -> FFI:
    """The cffi builder of ``trio_fuse_uring._ring_cffi``, linking ``-l<library>``
    (default: what :func:`liburing_link` finds)."""
    if library is None:
        library, why = liburing_link()
        if library is None:
            raise RuntimeError(f"cannot build the io-uring extension: {why}")
    builder = FFI()
    builder.cdef(cdef_source() + _PYTHON_CALLBACKS)
    builder.set_source(
        "trio_fuse_uring._ring_cffi",
        '#include "_ring.h"\n',
        # relative to the repository root, where setup.py (and __main__ below) run
        sources=[
            "trio_fuse_uring/_ring.c",
            "trio_fuse_uring/_backing.c",
            "trio_fuse_uring/_dirents.c",
        ],
        include_dirs=["trio_fuse_uring"],
        depends=["trio_fuse_uring/_ring.h"],
        libraries=[library, "pthread"],
        extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    )
    return builder


if __name__ == "__main__":
    import sys

    # Build in place: trio_fuse_uring/_ring_cffi.*.so next to this file.
    root = HERE.parent
    os.chdir(root)
    sys.path.insert(0, str(root))
    make_ffibuilder().compile(tmpdir=str(root), verbose=True)
