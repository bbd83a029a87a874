"""Mirror a directory tree with the path API: a path-based passthrough, confined to SOURCE.

    python examples/loopback_paths.py SOURCE MOUNTPOINT [--transport uring] [-o allow_other]

Written on :mod:`trio_fuse_uring.paths`: every handler gets a path inside the mount
(``/dir/file``) and acts on ``SOURCE/dir/file``, like libfuse's ``passthrough`` example
and mfusepy's ``loopback.py``. A path-based mirror must still never reach outside SOURCE
nor do what the caller could not do itself, so:

* Paths are resolved below SOURCE by the kernel with ``openat2(RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS)``: a directory of the tree swapped for a symlink (to ``/etc``, or
  ``..``) by someone racing the daemon fails with ELOOP instead of being followed. The
  last component is never followed either (``O_NOFOLLOW``, ``*at`` calls with
  ``follow_symlinks=False``); symlinks are returned as they are and the client's kernel
  resolves them in the client's namespace.
* Permissions are checked by the kernel (``default_permissions``) against the source's
  own owners and modes, which the mount shows unchanged.
* Creation is exclusive (``O_CREAT | O_EXCL | O_NOFOLLOW``, ``mkdirat``...): the daemon
  never opens an object that appeared under the new name. The new object then gets the
  caller's owner (a set-group-ID directory's group is kept) and the requested mode,
  both set through a descriptor of the object itself (``fchown``/``fchmod``), never by
  name.

Reads of 64 KiB and more are answered with a :class:`~trio_fuse_uring.FileRange` (the
framework reads them from the source file itself). Extended attributes, locks and
``copy_file_range`` are not mirrored (the kernel keeps locks locally).

Never mount inside SOURCE (the command line refuses it): the daemon would meet its own
mount while serving SOURCE and wait for itself.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import logging
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import trio_fuse_uring as tfu
from trio_fuse_uring import paths

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
]
_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_OPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY
_FILE_RANGE_MIN = 64 * 1024

log = logging.getLogger("loopback_paths")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    how = _OpenHow(flags, 0, _RESOLVE)
    fd: int = _libc.syscall(
        _SYS_OPENAT2, ctypes.c_int(dir_fd), os.fsencode(path), ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )  # fmt: skip
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


class LoopbackPaths(paths.Operations):
    """Serve the tree under ``source`` by path (its root is opened here, before mounting)."""

    use_ino = True  # stat shows the source's inode numbers

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.source = os.fspath(source)
        self._root = os.open(self.source, _DIR_FLAGS)
        self._as_root = os.geteuid() == 0

    def close(self) -> None:
        """Close the root descriptor (after unmounting)."""
        os.close(self._root)

    # ---- resolving below SOURCE ------------------------------------------------------

    @contextmanager
    def _at(self, path: str) -> Iterator[tuple[int, str]]:
        """(a descriptor of the path's directory, its last component), for ``*at`` calls."""
        head, _, name = path.rpartition("/")
        if not head:
            yield self._root, name or "."
            return
        fd = _openat2(self._root, head.lstrip("/"), _DIR_FLAGS)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def _open(self, path: str, flags: int, mode: int = 0) -> int:
        with self._at(path) as (d, name):
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=d)

    def _own(self, fd: int, mode: int, parent: int) -> None:
        """A new object: the caller's owner and exactly ``mode`` (``parent`` is its
        directory), set through the object's own descriptor, never by name."""
        st = os.fstat(fd)
        if self._as_root:
            ctx = paths.request_context()
            pst = os.fstat(parent)
            # A set-group-ID directory gives its group (and, to directories, its bit).
            gid = pst.st_gid if pst.st_mode & stat.S_ISGID else ctx.gid
            os.chown(f"/proc/self/fd/{fd}", ctx.uid, gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(f"/proc/self/fd/{fd}", mode | (st.st_mode & stat.S_ISGID))

    def _own_new(self, d: int, name: str, mode: int) -> None:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        try:
            self._own(fd, mode, d)
        finally:
            os.close(fd)

    # ---- attributes and names -------------------------------------------------------

    async def getattr(self, path: str | None, fh: int | None) -> tfu.EntryAttributes:
        if fh is not None:
            st = os.fstat(fh)
        elif path is not None and path.rfind("/") == 0:  # the common case, without _at
            st = os.stat(path[1:] or ".", dir_fd=self._root, follow_symlinks=False)
        else:
            assert path is not None
            with self._at(path) as (d, name):
                st = os.stat(name, dir_fd=d, follow_symlinks=False)
        return tfu.EntryAttributes(
            st.st_ino, 0, None, None, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
            st.st_rdev, st.st_size, st.st_blksize, st.st_blocks, st.st_atime_ns,
            st.st_mtime_ns, st.st_ctime_ns,
        )  # fmt: skip

    async def readlink(self, path: str) -> str:
        with self._at(path) as (d, name):
            return os.readlink(name, dir_fd=d)

    async def mknod(self, path: str, mode: int, rdev: int) -> None:
        if stat.S_ISREG(mode):
            os.close(await self._create_fd(path, mode, os.O_WRONLY))
            return
        with self._at(path) as (d, name):
            os.mknod(name, mode, rdev, dir_fd=d)
            self._own_new(d, name, stat.S_IMODE(mode))

    async def mkdir(self, path: str, mode: int) -> None:
        with self._at(path) as (d, name):
            os.mkdir(name, 0o700, dir_fd=d)
            self._own_new(d, name, stat.S_IMODE(mode))

    async def symlink(self, path: str, target: str) -> None:
        with self._at(path) as (d, name):
            os.symlink(target, name, dir_fd=d)
            if self._as_root:
                ctx = paths.request_context()
                os.chown(name, ctx.uid, ctx.gid, dir_fd=d, follow_symlinks=False)

    async def unlink(self, path: str) -> None:
        with self._at(path) as (d, name):
            os.unlink(name, dir_fd=d)

    async def rmdir(self, path: str) -> None:
        with self._at(path) as (d, name):
            os.rmdir(name, dir_fd=d)

    async def rename(self, old: str, new: str, flags: int) -> None:
        with self._at(old) as (d1, n1), self._at(new) as (d2, n2):
            if _libc.renameat2(d1, os.fsencode(n1), d2, os.fsencode(n2), flags) < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))

    async def link(self, path: str, new_path: str) -> None:
        with self._at(path) as (d1, n1), self._at(new_path) as (d2, n2):
            os.link(n1, n2, src_dir_fd=d1, dst_dir_fd=d2, follow_symlinks=False)

    async def chmod(self, path: str | None, mode: int, fh: int | None) -> None:
        if fh is not None:
            os.fchmod(fh, stat.S_IMODE(mode))
            return
        assert path is not None
        fd = self._open(path, os.O_PATH)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.EOPNOTSUPP, "symlinks have no mode")
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
        finally:
            os.close(fd)

    async def chown(self, path: str | None, uid: int, gid: int, fh: int | None) -> None:
        if fh is not None:
            os.fchown(fh, uid, gid)
            return
        assert path is not None
        with self._at(path) as (d, name):
            os.chown(name, uid, gid, dir_fd=d, follow_symlinks=False)

    async def truncate(self, path: str | None, size: int, fh: int | None) -> None:
        if fh is not None:
            os.ftruncate(fh, size)
            return
        assert path is not None
        fd = self._open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    async def utimens(
        self, path: str | None, atime_ns: int | None, mtime_ns: int | None, fh: int | None
    ) -> None:
        if fh is not None:
            st = os.fstat(fh)
            times = (st.st_atime_ns if atime_ns is None else atime_ns,
                     st.st_mtime_ns if mtime_ns is None else mtime_ns)  # fmt: skip
            os.utime(fh, ns=times)
            return
        assert path is not None
        with self._at(path) as (d, name):
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
            times = (st.st_atime_ns if atime_ns is None else atime_ns,
                     st.st_mtime_ns if mtime_ns is None else mtime_ns)  # fmt: skip
            os.utime(name, ns=times, dir_fd=d, follow_symlinks=False)

    # ---- files ------------------------------------------------------------------------

    async def open(self, path: str, flags: int) -> int:
        return self._open(path, flags & ~_OPEN_STRIP)

    async def _create_fd(self, path: str, mode: int, flags: int) -> int:
        # O_EXCL always: an object that appeared under the name meanwhile is never opened.
        flags = (flags & ~os.O_NOCTTY) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with self._at(path) as (d, name):
            fd = os.open(name, flags, 0o600, dir_fd=d)
            try:
                self._own(fd, stat.S_IMODE(mode), d)
            except BaseException:
                os.close(fd)
                raise
        return fd

    async def create(self, path: str, mode: int, flags: int) -> int:
        return await self._create_fd(path, mode, flags)

    async def read(
        self, path: str | None, size: int, offset: int, fh: int
    ) -> bytes | tfu.FileRange:
        if size >= _FILE_RANGE_MIN:
            return tfu.FileRange(fh, offset)
        return os.pread(fh, size, offset)

    async def write(self, path: str | None, data: memoryview, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    async def release(self, path: str | None, fh: int) -> None:
        os.close(fh)

    async def fsync(self, path: str | None, datasync: bool, fh: int) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    async def lseek(self, path: str | None, offset: int, whence: int, fh: int) -> int:
        return os.lseek(fh, offset, whence)

    # ---- directories -------------------------------------------------------------------

    async def readdir(self, path: str | None, fh: int) -> list[str]:  # type: ignore[override]
        assert path is not None
        if path == "/":
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._root)
        else:
            fd = _openat2(self._root, path.lstrip("/"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with os.scandir(fd) as it:
                return [".", "..", *(e.name for e in it)]
        finally:
            os.close(fd)

    async def statfs(self, path: str) -> tfu.StatvfsData:
        v = os.statvfs(self._root)
        return tfu.StatvfsData(
            v.f_bsize, v.f_frsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
            v.f_favail, v.f_namemax,
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the directory to mirror")
    parser.add_argument("mountpoint")
    parser.add_argument("--transport", choices=["auto", "uring", "devfuse"], default="auto")
    parser.add_argument("--debug", action="store_true", help="log every request and reply")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options: allow_other, ro, fsname=, entry_timeout=, ...")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO)
    source = os.path.abspath(args.source)
    try:
        options = tfu.Options.parse(
            args.options, fsname=source, subtype="loopback_paths", transport=args.transport,
            debug=args.debug, default_permissions=True,
        )  # fmt: skip
    except tfu.OptionError as exc:
        print(f"loopback_paths: {exc}", file=sys.stderr)
        return 2
    if not options.default_permissions:
        print(
            "loopback_paths: default_permissions is needed (the kernel checks access)",
            file=sys.stderr,
        )
        return 2
    if not os.path.isdir(source):
        print(f"loopback_paths: {source} is not a directory", file=sys.stderr)
        return 2
    real_src, real_mnt = os.path.realpath(source), os.path.realpath(args.mountpoint)
    if real_mnt.startswith(real_src.rstrip("/") + "/"):
        print(f"loopback_paths: the mountpoint must not be inside {source}", file=sys.stderr)
        return 2
    fs = LoopbackPaths(source)
    try:
        stats = paths.run(fs, args.mountpoint, options)
    except (tfu.UringUnavailable, OSError) as exc:
        print(f"loopback_paths: {exc}", file=sys.stderr)
        return 1
    finally:
        fs.close()
    print(json.dumps({"requests": stats.get("requests", {}), "errors": stats.get("errors", 0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
