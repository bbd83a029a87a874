"""Mirror a directory tree: every request is passed on to the files under SOURCE.

    python examples/passthrough.py SOURCE MOUNTPOINT          # serves until Ctrl-C / umount
    python examples/passthrough.py SOURCE MOUNTPOINT --entry-timeout 0 --attr-timeout 0
    python examples/passthrough.py SOURCE MOUNTPOINT --threads -o allow_other

Inode-based, like libfuse's passthrough_hp and pyfuse3's passthroughfs: each inode the
kernel knows is an ``O_PATH`` file descriptor into the source tree (one per source
object, keyed by ``(st_dev, st_ino)``, closed by ``forget`` when the kernel's lookup count
drops to zero). Every operation is a ``*at()`` syscall relative to such a descriptor with
a single, validated name, or acts on the descriptor itself through ``/proc/self/fd/N``
(a "magic link" that lands on the open object without resolving any name). So:

* The daemon never resolves a path inside SOURCE: no symlink in the tree, no ``..``, no
  directory swapped for a symlink by someone racing it, is ever followed by the daemon.
  Final components are created and opened with ``O_NOFOLLOW``; symlinks are returned
  as-is by ``readlink`` and the *client's* kernel resolves them in its own namespace
  (exactly as if the client used SOURCE directly).
* Names from the kernel are single components; a name with ``/``, NUL, ``.`` or ``..``
  is refused (EINVAL), except the kernel's own ``.``/``..`` lookups, which never leave
  the inodes already served (``..`` of the root is the root).
* Out of scope (as for any fd-based passthrough): somebody with write access to SOURCE
  *and* to the outside can move a directory the kernel already looked up out of SOURCE
  and the mount keeps serving it (like a bind mount would); a hard link placed inside
  SOURCE by such a user exposes its file. A hard link made *through the mount* to a file
  outside is impossible (the kernel answers EXDEV before asking the daemon).

Acting for other users: as root, every request that creates, opens, changes or removes
something runs with the *caller's* file-system ids and supplementary groups (per-thread
``setfsuid``/``setfsgid``/``setgroups`` around the syscall, which also drops root's
file capabilities), so the source filesystem itself checks it exactly as if the caller
had used SOURCE directly, and new objects get the caller's owner, group and set-ID bits
from the kernel, with no chown afterwards. The daemon never acts with its own rights on
an object the caller could not act on with its own; the only exception is removing
set-user-ID/set-group-ID bits (what the kernel asks after an unprivileged write), which
never gives anything. Run by another user, the daemon cannot switch ids: everything is
then done, and owned, as that user (like sshfs).

Inode numbers are the source's own (``stat`` shows the same ``st_ino``), except the root
(always 1) and files of other filesystems mounted inside SOURCE, which get numbers from
2**62 up.

Threads: metadata syscalls on a local filesystem take microseconds, and reads/writes of
at most ``max_write`` bytes that hit the page cache do too, so by default they run
inline in the trio thread -- no task, no thread hop (what pyfuse3's passthroughfs does:
plain ``os`` calls inside its async handlers). On a local disk a thread hop costs more
than the I/O it carries (sequential writes measured several times slower with it). With
``--threads`` reads (``read_into``, straight into the reply buffer), writes, flushes and
SEEK_DATA/SEEK_HOLE go through ``trio.to_thread.run_sync`` instead, for slow backing
stores (NFS, FUSE, spinning disks, cold caches) where one slow I/O must not stall every
other request; metadata stays inline. ``fsync``, ``fallocate`` and ``copy_file_range``
always run in a thread: their duration is unbounded whatever the store (they wait for
the disk or touch arbitrarily large ranges).

Backing files (docs/backing-files.md): every file opened through the mount is served
from its source file by the framework, in C -- reads and writes never reach Python --
and, when the daemon runs with CAP_SYS_ADMIN, by the kernel itself (FUSE passthrough,
asked for by default). ``--no-backing`` turns both off (every read and write goes
through ``read_into``/``write``), to measure the difference or for sources where a
read may block. Without kernel passthrough, files opened with O_DIRECT are backed by a
buffered descriptor of the source file (see ``_file_info``).

Never mount inside SOURCE (the command line refuses it): the daemon would meet its own
mount while serving SOURCE and wait for itself.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from functools import partial

import trio

import trio_fuse_uring as tfu

log = logging.getLogger("passthrough")

ROOT = tfu.ROOT_INODE
FOREIGN_BASE = 1 << 62  # inode numbers for files of other filesystems inside SOURCE
_O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_NOFOLLOW
_DOTS = (b".", b"..")
_AT_FDCWD = -100
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2
_S_IFLNK, _S_IFREG, _S_IFDIR = stat.S_IFLNK, stat.S_IFREG, stat.S_IFDIR

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
_libc.futimens.argtypes = [ctypes.c_int, ctypes.POINTER(_Timespec)]


def _check(ret: int) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _error(exc: OSError) -> tfu.FUSEError:
    return tfu.FUSEError(exc.errno or errno.EIO)


def _proc(fd: int) -> str:
    """The magic link that reopens or names ``fd``'s object without any name lookup."""
    return f"/proc/self/fd/{fd}"


# Byte values: `b"/" in name` builds and drops a TypeError on every call (CPython tries
# the needle as an int first), 10x the cost of the search.
_SLASH = ord("/")
_NUL = 0


def _check_name(name: bytes) -> None:
    """A name the kernel sends for creating or removing must be one plain component."""
    if not name or _SLASH in name or _NUL in name or name in _DOTS:
        raise tfu.FUSEError(errno.EINVAL)


def _attr(nid: int, st: os.stat_result) -> tfu.EntryAttributes:
    return tfu.EntryAttributes(
        nid, 0, None, None, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev,
        st.st_size, st.st_blksize, st.st_blocks, st.st_atime_ns, st.st_mtime_ns,
        st.st_ctime_ns,
    )  # fmt: skip


def _process_umask() -> int:
    """The umask the kernel applies to what this process creates (read without
    changing it, which would race with other threads)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o777  # unknown: fix every mode up after creation


def _kill_suidgid(fd: int) -> None:
    """What a truncation by an unprivileged caller does natively. The kernel leaves it
    to the filesystem for O_TRUNC opens (which truncate here, as the daemon, whose
    CAP_FSETID keeps the bits); callers other than root count as unprivileged."""
    mode = os.fstat(fd).st_mode
    kill = stat.S_ISUID | (stat.S_ISGID if mode & stat.S_IXGRP else 0)
    if mode & kill:
        os.fchmod(fd, stat.S_IMODE(mode) & ~kill)


# setgroups(2) by number: glibc's setgroups() changes every thread of the process (it
# signals each one), the raw system call only the calling thread.
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159, "riscv64": 159}
_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsgid.argtypes = [ctypes.c_uint]
_QUERY = 0xFFFFFFFF  # an invalid id: setfsuid/setfsgid then only return the current one


def _caller_groups(ctx: tfu.RequestContext) -> list[int]:
    """The supplementary groups of the process that made the request (none if unknown).

    Read from ``/proc/PID/status`` and used only if its file-system ids are still the
    request's: a pid reused by another process meanwhile must not lend its groups.
    """
    if ctx.pid <= 0:
        return []
    try:
        with open(f"/proc/{ctx.pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return []
    fields = {}
    for line in status.split(b"\n"):
        key, _, value = line.partition(b":")
        if key in (b"Uid", b"Gid", b"Groups"):
            fields[key] = value.split()
    try:
        # Uid/Gid lines: real, effective, saved, file-system.
        if int(fields[b"Uid"][3]) != ctx.uid or int(fields[b"Gid"][3]) != ctx.gid:
            return []
        return [int(g) for g in fields[b"Groups"]]
    except (KeyError, IndexError, ValueError):
        return []


class _Credentials:
    """Switch the calling thread to a request's file-system ids, and back.

    ``with creds.caller(ctx):`` around the system calls of one request (with no await
    inside: another request would run with these ids). Only possible as root; otherwise
    the daemon's own ids are all there is and the block runs unchanged.
    """

    def __init__(self) -> None:
        self.uid, self.gid = os.geteuid(), os.getegid()
        self.groups = os.getgroups()
        self.enabled = self.uid == 0
        self._nr = _SYS_SETGROUPS.get(os.uname().machine, -1)
        if self.enabled and self._nr < 0:
            raise RuntimeError(
                f"acting for other users needs setgroups(2)'s number on "
                f"{os.uname().machine}: add it to _SYS_SETGROUPS, or run as another user"
            )

    def _setgroups(self, groups: list[int]) -> None:
        arr = (ctypes.c_uint * len(groups))(*groups)
        _check(_libc.syscall(self._nr, len(groups), arr))

    @contextlib.contextmanager
    def caller(self, ctx: tfu.RequestContext) -> Iterator[None]:
        if not self.enabled or (ctx.uid, ctx.gid) == (self.uid, self.gid):
            yield
            return
        self._setgroups(_caller_groups(ctx))
        try:
            _libc.setfsgid(ctx.gid)
            _libc.setfsuid(ctx.uid)  # from 0 to another id: root's file capabilities go
            if _libc.setfsuid(_QUERY) != ctx.uid or _libc.setfsgid(_QUERY) != ctx.gid:
                raise tfu.FUSEError(errno.EPERM)
            yield
        finally:
            # The daemon's own ids again for whatever runs next on this thread (root's
            # file capabilities come back with fsuid 0).
            _libc.setfsuid(self.uid)
            _libc.setfsgid(self.gid)
            self._setgroups(self.groups)


def _only_drops_setid(current: int, new: int) -> bool:
    """Whether changing mode ``current`` to ``new`` at most removes set-ID bits."""
    current = stat.S_IMODE(current)
    setid = stat.S_ISUID | stat.S_ISGID
    return new & ~current == 0 and (current ^ new) & ~setid == 0


class _Inode:
    """An object of the source tree the kernel holds ``nlookup`` references to."""

    __slots__ = ("fd", "fmt", "nlookup")

    def __init__(self, fd: int, fmt: int, nlookup: int) -> None:
        self.fd = fd  # O_PATH | O_NOFOLLOW descriptor
        self.fmt = fmt  # stat.S_IFMT of the object (never changes)
        self.nlookup = nlookup


# Reads of at least this size are answered with a FileRange (benchmarks/README.md).
_FILE_RANGE_MIN = 64 * 1024


class Passthrough(tfu.Operations):
    """Serve the directory tree under ``source``.

    The root descriptor is opened here, before mounting, so the mountpoint may be
    ``source`` itself (the mount then overlays the tree it serves).
    """

    #: Serve opened files from their source files (docs/backing-files.md).
    use_backing = True

    def __init__(self, source: str | os.PathLike[str], *, backing: bool | None = None) -> None:
        if backing is not None:
            self.use_backing = backing
        self._backing_files: tfu.BackingFiles | None = None
        self.source = os.fspath(source)
        self._root_fd = os.open(self.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.stat(self._root_fd)
        self._root_dev, self._root_ino = st.st_dev, st.st_ino
        self._inodes: dict[int, _Inode] = {ROOT: _Inode(self._root_fd, _S_IFDIR, 1 << 62)}
        self._foreign: dict[tuple[int, int], int] = {}
        self._next_foreign = FOREIGN_BASE
        # directory handle (an fd) -> snapshot of (name, d_ino, type bits)
        self._dirs: dict[int, tfu.DirListing | None] = {}
        self._creds = _Credentials()
        self._umask = _process_umask()
        self.writeback = False
        # The kernel writes back cached pages (of mmaps, or all writes with
        # writeback_cache) through any writable handle of the file, O_DIRECT ones
        # included, at offsets and lengths that O_DIRECT on the source may refuse
        # (ext4: EINVAL unless 512-byte aligned). Such writes go through a buffered
        # descriptor of the same file, opened on first need.
        self._direct: set[int] = set()  # file handles opened with O_DIRECT
        self._buffered: dict[int, int] = {}  # O_DIRECT handle -> buffered descriptor

    # ---- inode table -----------------------------------------------------------------------

    def _nid(self, st: os.stat_result) -> int:
        """The inode number the kernel uses for the source object ``st`` describes."""
        ino = st.st_ino
        if st.st_dev == self._root_dev:
            if ino == self._root_ino:
                return ROOT
            if 1 < ino < FOREIGN_BASE:
                return ino
        key = (st.st_dev, ino)
        nid = self._foreign.get(key)
        if nid is None:
            nid = self._foreign[key] = self._next_foreign
            self._next_foreign += 1
        return nid

    def _inode(self, nid: int) -> _Inode:
        try:
            return self._inodes[nid]
        except KeyError:
            raise tfu.FUSEError(errno.ESTALE) from None

    def _remember(self, fd: int, st: os.stat_result) -> tfu.EntryAttributes:
        """Count one lookup of the object open as O_PATH ``fd``; consumes ``fd``."""
        nid = self._nid(st)
        known = self._inodes.get(nid)
        if known is not None:
            os.close(fd)
            known.nlookup += 1
        else:
            self._inodes[nid] = _Inode(fd, stat.S_IFMT(st.st_mode), 1)
        return _attr(nid, st)

    def _open_entry(self, parent_fd: int, name: bytes) -> tfu.EntryAttributes:
        """Open ``name`` (never following a symlink) and count one lookup of it."""
        fd = os.open(name, _O_PATH, dir_fd=parent_fd)
        try:
            st = os.stat(fd)
        except BaseException:
            os.close(fd)
            raise
        return self._remember(fd, st)

    def _created(
        self, parent_fd: int, name: bytes, ctx: tfu.RequestContext, mode: int | None
    ) -> tfu.EntryAttributes:
        """Look up the object just created as ``name`` (as the caller) and give it exactly
        ``mode``, which the daemon's umask may have cut (main() clears it, a library user
        may not have). Runs as the caller: if someone swapped the name meanwhile, only an
        object the caller may change anyway can be touched."""
        fd = os.open(name, _O_PATH, dir_fd=parent_fd)
        try:
            st = os.stat(fd)
            if mode is not None and mode & self._umask and not stat.S_ISLNK(st.st_mode):
                # A directory keeps the set-group-ID bit it inherited from its parent.
                os.chmod(_proc(fd), mode | (st.st_mode & stat.S_ISGID))
                st = os.stat(fd)
        except BaseException:
            os.close(fd)
            raise
        return self._remember(fd, st)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def init(self, info: tfu.InitInfo) -> None:
        self.writeback = "WRITEBACK_CACHE" in info.capabilities
        self._backing_files = info.backing

    def _file_info(self, fd: int, flags: int) -> tfu.FileInfo:
        """The open reply for source file ``fd``, backed by that file. Without kernel
        passthrough an O_DIRECT handle is backed by a buffered descriptor of the same
        file (the one ``write`` falls back to): the kernel also writes cached pages back
        through it, at lengths O_DIRECT on the source may refuse."""
        if not self.use_backing:
            return tfu.FileInfo(fh=fd)
        backing = fd
        if flags & os.O_DIRECT and not (self._backing_files and self._backing_files.passthrough):
            keep = fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_SYNC | os.O_DSYNC)
            try:
                backing = self._buffered[fd] = os.open(_proc(fd), keep | os.O_CLOEXEC)
            except OSError:
                return tfu.FileInfo(fh=fd)  # the handlers serve it
        return tfu.FileInfo(fh=fd, backing_fd=backing)

    async def destroy(self) -> None:
        for fh in list(self._dirs):
            os.close(fh)
        self._dirs.clear()
        for nid, ino in list(self._inodes.items()):
            if nid != ROOT:
                os.close(ino.fd)
        self._inodes = {ROOT: self._inodes[ROOT]}

    def close(self) -> None:
        """Close the root descriptor (after unmounting)."""
        os.close(self._root_fd)

    # ---- names and inodes -------------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        pfd = self._inode(parent_inode).fd
        if _SLASH in name or name in _DOTS or not name or _NUL in name:
            return self._lookup_dots(parent_inode, pfd, name)
        try:
            with self._creds.caller(ctx):  # the caller's search permission on the parent
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            nid = self._nid(st)
            known = self._inodes.get(nid)
            if known is not None:
                known.nlookup += 1
                return _attr(nid, st)
            return self._open_entry(pfd, name)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                # A negative entry, cached for the entry timeout.
                return tfu.EntryAttributes(st_ino=0, st_mode=_S_IFREG)
            raise _error(exc) from None

    def _lookup_dots(self, parent_inode: int, pfd: int, name: bytes) -> tfu.EntryAttributes:
        """The kernel looks up ``.`` and ``..`` (NFS export): stay among known inodes."""
        if name not in _DOTS:
            raise tfu.FUSEError(errno.EINVAL)
        if name == b"." or parent_inode == ROOT:
            nid = parent_inode if name == b"." else ROOT
            try:
                st = os.stat(self._inode(nid).fd)
            except OSError as exc:
                raise _error(exc) from None
        else:
            try:
                st = os.stat(b"..", dir_fd=pfd, follow_symlinks=False)
            except OSError as exc:
                raise _error(exc) from None
            nid = self._nid(st)
            if nid not in self._inodes:
                # Not an inode we serve: outside SOURCE, or never seen. Do not go there.
                raise tfu.FUSEError(errno.ENOENT)
        self._inodes[nid].nlookup += 1
        return _attr(nid, st)

    async def forget(self, inode_list):  # type: ignore[no-untyped-def]
        inodes = self._inodes
        for nid, n in inode_list:
            ino = inodes.get(nid)
            if ino is None or nid == ROOT:
                continue
            ino.nlookup -= n
            if ino.nlookup <= 0:
                del inodes[nid]
                os.close(ino.fd)

    async def getattr(self, inode, ctx):  # type: ignore[no-untyped-def]
        try:
            return _attr(inode, os.stat(self._inodes[inode].fd))
        except KeyError:
            raise tfu.FUSEError(errno.ESTALE) from None
        except OSError as exc:
            raise _error(exc) from None

    async def setattr(self, inode, attr, fh, ctx):  # type: ignore[no-untyped-def]
        ino = self._inode(inode)
        # Through the open file if the change came through one, else through the
        # inode's magic link (which lands on the object itself, even on a symlink).
        target: str | int = fh if fh is not None else _proc(ino.fd)
        try:
            mode = None if attr.st_mode is None else stat.S_IMODE(attr.st_mode)
            if mode is not None and _only_drops_setid(os.stat(target).st_mode, mode):
                # What the kernel asks after an unprivileged write (or a chmod that
                # changes nothing): never gives anything, so the daemon may do it.
                os.chmod(target, mode)
                mode = None
            with self._creds.caller(ctx):
                self._setattr(ino, target, fh, mode, attr)
            if attr.kill_suidgid and attr.st_mode is None:
                mode = os.stat(target).st_mode
                kill = stat.S_ISUID | (stat.S_ISGID if mode & stat.S_IXGRP else 0)
                if mode & kill and ino.fmt == _S_IFREG:
                    os.chmod(target, stat.S_IMODE(mode) & ~kill)
            return _attr(inode, os.stat(fh if fh is not None else ino.fd))
        except OSError as exc:
            raise _error(exc) from None

    def _setattr(
        self, ino: _Inode, target: str | int, fh: int | None, mode: int | None,
        attr: tfu.SetattrFields,
    ) -> None:  # fmt: skip
        if mode is not None:
            os.chmod(target, mode)
        if attr.st_uid is not None or attr.st_gid is not None:
            uid = -1 if attr.st_uid is None else attr.st_uid
            gid = -1 if attr.st_gid is None else attr.st_gid
            os.chown(target, uid, gid)
        if attr.st_size is not None:
            if fh is not None:
                os.ftruncate(fh, attr.st_size)
            else:
                if ino.fmt != _S_IFREG:
                    raise tfu.FUSEError(errno.EISDIR if ino.fmt == _S_IFDIR else errno.EINVAL)
                os.truncate(target, attr.st_size)
        if (
            attr.atime_now
            or attr.mtime_now
            or attr.st_atime_ns is not None
            or attr.st_mtime_ns is not None
        ):
            self._utimens(target, attr)

    @staticmethod
    def _utimens(target: str | int, attr: tfu.SetattrFields) -> None:
        times = (_Timespec * 2)()
        for ts, now, ns in ((times[0], attr.atime_now, attr.st_atime_ns),
                            (times[1], attr.mtime_now, attr.st_mtime_ns)):  # fmt: skip
            if now:
                ts.tv_nsec = _UTIME_NOW
            elif ns is None:
                ts.tv_nsec = _UTIME_OMIT
            else:
                ts.tv_sec, ts.tv_nsec = divmod(ns, 1_000_000_000)
        if isinstance(target, int):
            _check(_libc.futimens(target, times))
        else:
            _check(_libc.utimensat(_AT_FDCWD, os.fsencode(target), times, 0))

    async def readlink(self, inode, ctx):  # type: ignore[no-untyped-def]
        try:
            return os.readlink(b"", dir_fd=self._inode(inode).fd)  # readlinkat(fd, "")
        except OSError as exc:
            raise _error(exc) from None

    async def symlink(self, parent_inode, name, target, ctx):  # type: ignore[no-untyped-def]
        _check_name(name)
        pfd = self._inode(parent_inode).fd
        try:
            with self._creds.caller(ctx):
                os.symlink(target, name, dir_fd=pfd)
                return self._created(pfd, name, ctx, None)
        except OSError as exc:
            raise _error(exc) from None

    async def mknod(self, parent_inode, name, mode, rdev, ctx):  # type: ignore[no-untyped-def]
        _check_name(name)
        pfd = self._inode(parent_inode).fd
        perm = stat.S_IMODE(mode) & ~ctx.umask
        try:
            with self._creds.caller(ctx):
                os.mknod(name, stat.S_IFMT(mode) | perm, rdev, dir_fd=pfd)
                return self._created(pfd, name, ctx, perm)
        except OSError as exc:
            raise _error(exc) from None

    async def mkdir(self, parent_inode, name, mode, ctx):  # type: ignore[no-untyped-def]
        _check_name(name)
        pfd = self._inode(parent_inode).fd
        perm = stat.S_IMODE(mode) & ~ctx.umask
        try:
            with self._creds.caller(ctx):
                os.mkdir(name, perm, dir_fd=pfd)
                return self._created(pfd, name, ctx, perm)
        except OSError as exc:
            raise _error(exc) from None

    async def unlink(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        _check_name(name)
        try:
            with self._creds.caller(ctx):
                os.unlink(name, dir_fd=self._inode(parent_inode).fd)
        except OSError as exc:
            raise _error(exc) from None

    async def rmdir(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        _check_name(name)
        try:
            with self._creds.caller(ctx):
                os.rmdir(name, dir_fd=self._inode(parent_inode).fd)
        except OSError as exc:
            raise _error(exc) from None

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):  # type: ignore[no-untyped-def]
        _check_name(name_old)
        _check_name(name_new)
        old_fd = self._inode(parent_inode_old).fd
        new_fd = self._inode(parent_inode_new).fd
        try:
            with self._creds.caller(ctx):
                if flags:
                    _check(_libc.renameat2(old_fd, name_old, new_fd, name_new, flags))
                else:
                    os.rename(name_old, name_new, src_dir_fd=old_fd, dst_dir_fd=new_fd)
        except OSError as exc:
            raise _error(exc) from None

    async def link(self, inode, new_parent_inode, new_name, ctx):  # type: ignore[no-untyped-def]
        _check_name(new_name)
        ino = self._inode(inode)
        pfd = self._inode(new_parent_inode).fd
        try:
            # linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW): follows
            # only the magic link, to the object itself (a symlink stays a symlink).
            # As the caller: protected_hardlinks applies to what the source holds now.
            with self._creds.caller(ctx):
                os.link(_proc(ino.fd), new_name, dst_dir_fd=pfd, follow_symlinks=True)
            st = os.stat(ino.fd)
        except OSError as exc:
            raise _error(exc) from None
        ino.nlookup += 1
        return _attr(inode, st)

    # ---- files ----------------------------------------------------------------------------------

    def _flags(self, flags: int) -> int:
        flags = (flags & ~_OPEN_STRIP) | os.O_CLOEXEC
        if self.writeback:
            # The kernel's write-back cache reads pages of write-only files and keeps
            # the file size itself (O_APPEND would put its writes in the wrong place).
            if flags & os.O_ACCMODE == os.O_WRONLY:
                flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
            flags &= ~os.O_APPEND
        return flags

    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        ino = self._inode(inode)
        if ino.fmt != _S_IFREG:  # FIFOs, devices and sockets never get here
            raise tfu.FUSEError(errno.EISDIR if ino.fmt == _S_IFDIR else errno.ENXIO)
        try:
            # As the caller: the source checks the permission on what it holds now, not
            # on the attributes the kernel cached.
            with self._creds.caller(ctx):
                fd = os.open(_proc(ino.fd), self._flags(flags))
        except OSError as exc:
            raise _error(exc) from None
        if flags & os.O_TRUNC and ctx.uid != 0:
            try:
                _kill_suidgid(fd)
            except OSError as exc:
                os.close(fd)
                raise _error(exc) from None
        if flags & os.O_DIRECT:
            self._direct.add(fd)
        return self._file_info(fd, flags)

    async def create(self, parent_inode, name, mode, flags, ctx):  # type: ignore[no-untyped-def]
        _check_name(name)
        pfd = self._inode(parent_inode).fd
        perm = stat.S_IMODE(mode) & ~ctx.umask
        flags = self._flags(flags) | (flags & os.O_EXCL) | os.O_NOFOLLOW
        try:
            with self._creds.caller(ctx):
                fd, created = self._create_or_open(pfd, name, flags, perm)
        except OSError as exc:
            raise _error(exc) from None
        try:
            if not created and flags & os.O_TRUNC and ctx.uid != 0:
                _kill_suidgid(fd)
            st = os.stat(fd)
            # The inode's O_PATH descriptor comes from the open file, not from the name
            # (which someone may have replaced meanwhile).
            path_fd = os.open(_proc(fd), os.O_PATH | os.O_CLOEXEC)
            if flags & os.O_DIRECT:
                self._direct.add(fd)
            return self._file_info(fd, flags), self._remember(path_fd, st)
        except OSError as exc:
            os.close(fd)
            raise _error(exc) from None

    def _create_or_open(self, pfd: int, name: bytes, flags: int, perm: int) -> tuple[int, bool]:
        """Create ``name`` exclusively, or open the file that is already there exactly
        as ``open`` would (the kernel asks to create a name it last saw missing, which
        may since have appeared in SOURCE). Runs as the caller. Returns (fd, created)."""
        for _attempt in range(8):
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, perm, dir_fd=pfd)
            except FileExistsError:
                if flags & os.O_EXCL:
                    raise
            else:
                if perm & self._umask:  # the daemon's umask cut some bits: restore them
                    try:
                        os.fchmod(fd, perm)
                    except BaseException:
                        os.close(fd)
                        raise
                return fd, True
            try:
                path_fd = os.open(name, _O_PATH, dir_fd=pfd)
            except FileNotFoundError:
                continue  # removed again meanwhile: create it after all
            try:
                fmt = stat.S_IFMT(os.stat(path_fd).st_mode)
                if fmt != _S_IFREG:
                    # What open(O_CREAT) says for a directory and (as the daemon never
                    # follows one) a symlink; a device or FIFO is no file to create.
                    raise tfu.FUSEError(
                        {_S_IFDIR: errno.EISDIR, _S_IFLNK: errno.ELOOP}.get(fmt, errno.EEXIST)
                    )
                return os.open(_proc(path_fd), flags & ~os.O_NOFOLLOW), False
            finally:
                os.close(path_fd)
        raise tfu.FUSEError(errno.EEXIST)  # created and removed by someone else, again

    async def read_into(self, fh, off, buf):  # type: ignore[no-untyped-def]
        if len(buf) >= _FILE_RANGE_MIN:
            # The framework reads the source file itself, in C, into the reply buffer;
            # over io-uring the queue thread of the caller's CPU takes every other
            # one, so the copies of a large read are spread over two CPUs.
            return tfu.FileRange(fh, off)
        # Small reads: straight into the reply buffer (over io-uring: the
        # kernel-shared payload), cheaper than any hand-over.
        try:
            return os.preadv(fh, (buf,), off)
        except OSError as exc:
            raise _error(exc) from None

    async def write(self, fh, off, buf):  # type: ignore[no-untyped-def]
        try:
            try:
                return os.pwrite(fh, buf, off)
            except OSError as exc:
                if exc.errno != errno.EINVAL or fh not in self._direct:
                    raise
            return os.pwrite(self._buffered_fd(fh), buf, off)
        except OSError as exc:
            raise _error(exc) from None

    def _buffered_fd(self, fh: int) -> int:
        """A descriptor of O_DIRECT handle ``fh``'s file without O_DIRECT, for writes
        that O_DIRECT refused (see ``__init__``)."""
        fd = self._buffered.get(fh)
        if fd is None:
            sync = fcntl.fcntl(fh, fcntl.F_GETFL) & (os.O_SYNC | os.O_DSYNC)
            fd = self._buffered[fh] = os.open(_proc(fh), os.O_WRONLY | os.O_CLOEXEC | sync)
        return fd

    async def flush(self, fh, lock_owner):  # type: ignore[no-untyped-def]
        # What close() of one of several descriptors does to the source file (NFS
        # close-to-open consistency, error reporting): close a duplicate.
        try:
            os.close(os.dup(fh))
        except OSError as exc:
            raise _error(exc) from None

    async def release(self, fh):  # type: ignore[no-untyped-def]
        self._direct.discard(fh)
        buffered = self._buffered.pop(fh, None)
        if buffered is not None:
            os.close(buffered)
        os.close(fh)

    async def fsync(self, fh, datasync):  # type: ignore[no-untyped-def]
        try:
            await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, fh)
        except OSError as exc:
            raise _error(exc) from None

    async def fallocate(self, fh, mode, offset, length):  # type: ignore[no-untyped-def]
        def allocate() -> None:
            _check(_libc.fallocate(fh, mode, offset, length))

        try:
            await trio.to_thread.run_sync(allocate)
        except OSError as exc:
            raise _error(exc) from None

    async def lseek(self, fh, offset, whence):  # type: ignore[no-untyped-def]
        if whence not in (os.SEEK_DATA, os.SEEK_HOLE):
            raise tfu.FUSEError(errno.EINVAL)
        try:
            return os.lseek(fh, offset, whence)
        except OSError as exc:
            raise _error(exc) from None

    async def copy_file_range(self, fh_in, off_in, fh_out, off_out, length, flags):  # type: ignore[no-untyped-def]
        if flags:
            raise tfu.FUSEError(errno.EINVAL)
        try:
            return await trio.to_thread.run_sync(
                os.copy_file_range, fh_in, fh_out, length, off_in, off_out
            )
        except OSError as exc:
            raise _error(exc) from None

    # ---- directories ----------------------------------------------------------------------------

    async def opendir(self, inode, ctx):  # type: ignore[no-untyped-def]
        ino = self._inode(inode)
        try:
            with self._creds.caller(ctx):
                fh = os.open(_proc(ino.fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _error(exc) from None
        self._dirs[fh] = None
        return fh

    async def readdir(self, fh, start_id, ctx):  # type: ignore[no-untyped-def]
        listing = self._dirs.get(fh)
        if listing is None or start_id == 0:
            # One snapshot per handle (again after a rewind): a cookie is an index into
            # it, so it stays valid however the directory changes meanwhile. Read with
            # getdents64 in C (names, inode numbers and types, no stat per name); the
            # framework encodes the whole listing at once and cuts each reply from it.
            # Attributes only for readdirplus calls (the framework calls attr(i) then).
            try:
                listing = tfu.scan_directory(fh)
            except OSError as exc:
                raise _error(exc) from None
            listing.attr = partial(self._readdir_attrs, fh, listing.names)
            self._dirs[fh] = listing
        return listing

    def _readdir_attrs(self, fh: int, names: Sequence[bytes], i: int) -> tfu.EntryAttributes:
        """Entry ``i``'s attributes; it is listed with them, which counts one lookup."""
        name = names[i]
        try:
            st = os.stat(name, dir_fd=fh, follow_symlinks=False)
        except OSError as exc:
            raise _error(exc) from None  # removed since the snapshot
        nid = self._nid(st)
        known = self._inodes.get(nid)
        if known is not None:
            known.nlookup += 1
            return _attr(nid, st)
        # Not known yet: open it now, so that the entry the kernel keeps is backed by
        # exactly the object whose attributes it got.
        try:
            return self._open_entry(fh, name)
        except OSError as exc:
            raise _error(exc) from None

    async def releasedir(self, fh):  # type: ignore[no-untyped-def]
        del self._dirs[fh]
        os.close(fh)

    async def fsyncdir(self, fh, datasync):  # type: ignore[no-untyped-def]
        try:
            await trio.to_thread.run_sync(os.fsync, fh)
        except OSError as exc:
            raise _error(exc) from None

    # ---- filesystem --------------------------------------------------------------------------

    async def statfs(self, ctx):  # type: ignore[no-untyped-def]
        try:
            s = os.statvfs(self._root_fd)
        except OSError as exc:
            raise _error(exc) from None
        return tfu.StatvfsData(
            f_bsize=s.f_bsize, f_frsize=s.f_frsize, f_blocks=s.f_blocks, f_bfree=s.f_bfree,
            f_bavail=s.f_bavail, f_files=s.f_files, f_ffree=s.f_ffree, f_favail=s.f_favail,
            f_namemax=s.f_namemax,
        )  # fmt: skip

    async def access(self, inode, mode, ctx):  # type: ignore[no-untyped-def]
        # Only asked without default_permissions.
        try:
            fd = self._inode(inode).fd
            st = os.stat(fd)
        except OSError as exc:
            raise _error(exc) from None
        mode &= os.R_OK | os.W_OK | os.X_OK
        if not mode:
            return
        if self._creds.enabled and not stat.S_ISLNK(st.st_mode):
            # The source's own answer for the caller's ids (ACLs and groups included).
            with self._creds.caller(ctx):
                allowed = os.access(_proc(fd), mode, effective_ids=True)
            if not allowed:
                raise tfu.FUSEError(errno.EACCES)
            return
        # Not root: the daemon's own ids are all there are. Check the mode bits for the
        # caller (owner, group or other; no ACLs and no supplementary groups).
        if ctx.uid == 0:
            if mode & os.X_OK and not st.st_mode & 0o111 and not stat.S_ISDIR(st.st_mode):
                raise tfu.FUSEError(errno.EACCES)
            return
        if ctx.uid == st.st_uid:
            bits = st.st_mode >> 6
        elif ctx.gid == st.st_gid:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        if mode & ~bits & 7:
            raise tfu.FUSEError(errno.EACCES)

    # ---- extended attributes -------------------------------------------------------------------

    def _xattr_path(self, inode: int) -> str:
        ino = self._inode(inode)
        if ino.fmt == _S_IFLNK:
            raise tfu.FUSEError(errno.ENOTSUP)
        return _proc(ino.fd)

    async def setxattr(self, inode, name, value, flags, ctx):  # type: ignore[no-untyped-def]
        try:
            with self._creds.caller(ctx):
                os.setxattr(self._xattr_path(inode), name, value, flags)
        except OSError as exc:
            raise _error(exc) from None

    async def getxattr(self, inode, name, ctx):  # type: ignore[no-untyped-def]
        try:
            with self._creds.caller(ctx):
                return os.getxattr(self._xattr_path(inode), name)
        except OSError as exc:
            raise _error(exc) from None

    async def listxattr(self, inode, ctx):  # type: ignore[no-untyped-def]
        try:
            with self._creds.caller(ctx):
                return [os.fsencode(n) for n in os.listxattr(self._xattr_path(inode))]
        except OSError as exc:
            raise _error(exc) from None

    async def removexattr(self, inode, name, ctx):  # type: ignore[no-untyped-def]
        try:
            with self._creds.caller(ctx):
                os.removexattr(self._xattr_path(inode), name)
        except OSError as exc:
            raise _error(exc) from None


class ThreadedPassthrough(Passthrough):
    """Passthrough whose data I/O runs in worker threads (for slow backing stores).

    The buffers of ``read_into`` and ``write`` stay valid while the thread uses them:
    the handler waits for the thread (``run_sync`` is not abandoned on cancellation).
    """

    # A read of a slow store in C would block a queue thread or the /dev/fuse reader:
    # serve data in the handlers (threads), unless asked otherwise.
    use_backing = False

    async def read_into(self, fh, off, buf):  # type: ignore[no-untyped-def]
        try:
            return await trio.to_thread.run_sync(os.preadv, fh, (buf,), off)
        except OSError as exc:
            raise _error(exc) from None

    async def write(self, fh, off, buf):  # type: ignore[no-untyped-def]
        try:
            try:
                return await trio.to_thread.run_sync(os.pwrite, fh, buf, off)
            except OSError as exc:
                if exc.errno != errno.EINVAL or fh not in self._direct:
                    raise
            return await trio.to_thread.run_sync(os.pwrite, self._buffered_fd(fh), buf, off)
        except OSError as exc:
            raise _error(exc) from None

    async def flush(self, fh, lock_owner):  # type: ignore[no-untyped-def]
        try:
            await trio.to_thread.run_sync(lambda: os.close(os.dup(fh)))
        except OSError as exc:
            raise _error(exc) from None

    async def lseek(self, fh, offset, whence):  # type: ignore[no-untyped-def]
        if whence not in (os.SEEK_DATA, os.SEEK_HOLE):
            raise tfu.FUSEError(errno.EINVAL)
        try:
            return await trio.to_thread.run_sync(os.lseek, fh, offset, whence)
        except OSError as exc:
            raise _error(exc) from None


# ---- command line ----------------------------------------------------------------------------


def _timeout(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"timeout must be >= 0, not {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the directory to mirror")
    parser.add_argument("mountpoint")
    parser.add_argument("--transport", choices=["auto", "uring", "devfuse"], default="auto")
    parser.add_argument(
        "--entry-timeout",
        type=_timeout,
        default=1.0,
        metavar="S",
        help="how long the kernel caches names (0: ask every time)",
    )
    parser.add_argument(
        "--attr-timeout",
        type=_timeout,
        default=1.0,
        metavar="S",
        help="how long the kernel caches attributes (0: ask every time)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="do reads and writes in worker threads (slow backing stores)",
    )
    parser.add_argument(
        "--no-backing",
        action="store_true",
        help="serve reads and writes in the handlers (no backing files, no kernel passthrough)",
    )
    parser.add_argument("--debug", action="store_true", help="log every request and reply")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options: allow_other, ro, writeback_cache, fsname=, "
                        "max_write=, ...; others are passed to mount(2)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    source = os.path.abspath(args.source)
    try:
        options = tfu.Options.parse(
            args.options, fsname=source, subtype="passthrough", transport=args.transport,
            debug=args.debug, entry_timeout=args.entry_timeout, attr_timeout=args.attr_timeout,
            passthrough=not args.no_backing,
        )  # fmt: skip
    except tfu.OptionError as exc:
        print(f"passthrough: {exc}", file=sys.stderr)
        return 2
    if not os.path.isdir(source):
        print(f"passthrough: {source} is not a directory", file=sys.stderr)
        return 2
    real_src = os.path.realpath(source)
    real_mnt = os.path.realpath(args.mountpoint)
    if real_mnt.startswith(real_src.rstrip("/") + "/"):
        # The daemon would meet its own mount while serving SOURCE: a deadlock.
        print(f"passthrough: the mountpoint must not be inside {source}", file=sys.stderr)
        return 2
    os.umask(0)  # modes come from the requests, which carry the caller's umask
    cls = ThreadedPassthrough if args.threads else Passthrough
    fs = cls(source, backing=False) if args.no_backing else cls(source)
    try:
        stats = tfu.run(fs, args.mountpoint, options)
    except tfu.OptionError as exc:
        print(f"passthrough: {exc}", file=sys.stderr)
        return 2
    except (tfu.UringUnavailable, OSError) as exc:  # MountError is an OSError
        print(f"passthrough: {exc}", file=sys.stderr)
        return 1
    finally:
        fs.close()
    result = {"requests": stats.get("requests", {}), "errors": stats.get("errors", 0)}
    result.update({k: v for k, v in stats.items() if k not in result})
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
