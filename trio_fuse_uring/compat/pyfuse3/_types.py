"""pyfuse3's data classes, as subclasses of ours so that replies need no conversion.

Defaults follow pyfuse3 where they differ from trio-fuse-uring's: entries cache for 300
seconds, ``st_mode`` is ``S_IFREG`` without permission bits, files keep their page
cache across opens (``keep_cache=True``) and statvfs fields are all 0.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pickle import PicklingError
from typing import Any

import trio_fuse_uring as _tfu

InodeT = int
FileHandleT = int
FileNameT = bytes
FlagT = int
ModeT = int
XAttrNameT = bytes

ENOATTR = errno.ENODATA
RENAME_EXCHANGE: FlagT = 2
RENAME_NOREPLACE: FlagT = 1
ROOT_INODE: InodeT = _tfu.ROOT_INODE
_NANOS_PER_SEC = 1_000_000_000

_ENTRY_STATE = (
    "st_ino", "generation", "entry_timeout", "attr_timeout", "st_mode", "st_nlink", "st_uid",
    "st_gid", "st_rdev", "st_size", "st_blksize", "st_blocks", "st_atime_ns", "st_ctime_ns",
    "st_mtime_ns", "st_birthtime_ns",
)  # fmt: skip
_STATVFS_STATE = (
    "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
    "f_favail", "f_namemax",
)  # fmt: skip


@dataclass(slots=True)
class EntryAttributes(_tfu.EntryAttributes):
    """Attributes of a directory entry (pyfuse3's ``EntryAttributes``).

    Set the attributes after construction, as with pyfuse3. ``entry_timeout`` and
    ``attr_timeout`` default to 300 seconds; ``st_birthtime_ns`` is always 0 on Linux.
    """

    entry_timeout: float | None = 300
    attr_timeout: float | None = 300
    st_mode: int = stat.S_IFREG
    st_birthtime_ns: int = 0

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _ENTRY_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@dataclass(slots=True)
class FileInfo(_tfu.FileInfo):
    """What ``open`` and ``create`` return: the handle and its caching flags.

    As in pyfuse3, ``keep_cache`` defaults to True.
    """

    keep_cache: bool = True


@dataclass(slots=True)
class StatvfsData(_tfu.StatvfsData):
    """Filesystem statistics returned by ``statfs``; every field defaults to 0."""

    f_bsize: int = 0
    f_frsize: int = 0
    f_namemax: int = 0

    def __getstate__(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _STATVFS_STATE}

    def __setstate__(self, state: dict[str, int]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class RequestContext:
    """Who made the request: ``uid``, ``gid``, ``pid`` and ``umask`` of the caller."""

    __slots__ = ("gid", "pid", "uid", "umask")

    def __init__(self, uid: int = 0, gid: int = 0, pid: int = 0, umask: int = 0) -> None:
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.umask = umask

    def __getstate__(self) -> None:
        raise PicklingError("RequestContext instances can't be pickled")

    def __repr__(self) -> str:
        return (
            f"RequestContext(uid={self.uid}, gid={self.gid}, pid={self.pid}, umask={self.umask:#o})"
        )


class SetattrFields:
    """Which attributes a ``setattr`` request changes (``update_*`` booleans)."""

    __slots__ = (
        "update_atime", "update_ctime", "update_gid", "update_mode", "update_mtime",
        "update_size", "update_uid",
    )  # fmt: skip

    def __init__(self) -> None:
        self.update_atime = False
        self.update_mtime = False
        self.update_ctime = False
        self.update_mode = False
        self.update_uid = False
        self.update_gid = False
        self.update_size = False

    def __getstate__(self) -> None:
        raise PicklingError("SetattrFields instances can't be pickled")

    def __repr__(self) -> str:
        on = [name for name in self.__slots__ if getattr(self, name)]
        return f"SetattrFields({', '.join(on)})"


class FUSEError(_tfu.FUSEError):
    """Raise from a handler to fail the request with ``errno``."""

    __slots__ = ()

    @property
    def errno_(self) -> int:
        """The error code (pyfuse3's other name for ``errno``)."""
        return self.errno

    def __str__(self) -> str:
        try:
            return os.strerror(self.errno)
        except ValueError:  # pragma: no cover - strerror accepts every int on Linux
            return f"errno: {self.errno}"


class ReaddirToken:
    """Passed to ``readdir``; hand it to :func:`readdir_reply` with each entry."""

    __slots__ = ("entries", "full")

    def __init__(self) -> None:
        self.entries: list[tuple[bytes, EntryAttributes, int]] = []
        self.full = False

    def __getstate__(self) -> None:
        raise PicklingError("ReaddirToken instances can't be pickled")
