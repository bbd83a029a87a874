"""Reading a whole directory into a :class:`DirListing` without Python per entry."""

from __future__ import annotations

import array
import errno
import os
import stat
from collections.abc import Callable

from ._backing import c_side
from ._types import DirListing, EntryAttributes

_DT_SHIFT = 12  # S_IFMT bits = d_type << 12 (DTTOIF)


def scan_directory(fd: int, attr: Callable[[int], EntryAttributes] | None = None) -> DirListing:
    """Every entry of the open directory ``fd`` except ``.`` and ``..``, read from its
    start with ``getdents64`` in C, as a :class:`DirListing` (names, inode numbers and
    file types as the directory gives them; ``attr`` as in ``DirListing``).

    What a passthrough filesystem's ``readdir`` returns for a source directory: a large
    directory then costs no Python per entry, neither to read nor to list.

    Raises:
        OSError: reading the directory failed.
    """
    c = c_side()
    if c is None:
        names: list[bytes] = []
        inos: list[int] = []
        modes: list[int] = []
        with os.scandir(fd) as it:
            for e in it:
                names.append(os.fsencode(e.name))
                inos.append(e.inode())
                try:
                    modes.append(stat.S_IFMT(e.stat(follow_symlinks=False).st_mode))
                except OSError:
                    modes.append(0)
        return DirListing(names, inos, modes, attr=attr)
    ffi, lib = c
    cap = 1024
    while True:
        names_buf = bytearray(cap * 64)
        inos_a = array.array("Q", bytes(8 * cap))
        modes_a = array.array("I", bytes(4 * cap))
        used = ffi.new("uint64_t *")
        n = lib.tfu_dir_scan(
            fd, ffi.from_buffer(names_buf), len(names_buf), ffi.from_buffer("uint64_t[]", inos_a),
            ffi.from_buffer("uint32_t[]", modes_a), cap, used,
        )  # fmt: skip
        if n == -errno.ENOSPC:
            cap *= 4
            continue
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        break
    del inos_a[n:], modes_a[n:]
    names = bytes(names_buf[: used[0] - 1]).split(b"\0") if n else []
    return DirListing(names, inos_a, modes_a, attr=attr)
