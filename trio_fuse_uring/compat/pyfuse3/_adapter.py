"""Serves a pyfuse3 ``Operations`` through trio-fuse-uring's handler API.

Each handler translates the arguments trio-fuse-uring gives into the ones pyfuse3
gives (and does what pyfuse3 does for the handler), then returns the pyfuse3 handler's
result, which needs no conversion: pyfuse3's data classes here subclass ours.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import trio_fuse_uring as _tfu

from ._types import (
    EntryAttributes,
    FileInfo,
    FUSEError,
    ReaddirToken,
    RequestContext,
    SetattrFields,
)

if TYPE_CHECKING:
    from ._operations import Operations as Pyfuse3Operations

_XATTR_CREATE = getattr(os, "XATTR_CREATE", 1)
_XATTR_REPLACE = getattr(os, "XATTR_REPLACE", 2)
_DOTS = (b".", b"..")


def _ctx(c: _tfu.RequestContext) -> RequestContext:
    return RequestContext(c.uid, c.gid, c.pid, c.umask)


class Pyfuse3Adapter(_tfu.Operations):
    """A trio-fuse-uring filesystem that runs the handlers of a pyfuse3 one."""

    def __init__(self, ops: Pyfuse3Operations) -> None:
        self.ops = ops
        # Handlers whose arguments and results are the same in both APIs are called
        # directly (no wrapper frame on the hot path).
        self.read = ops.read  # type: ignore[method-assign]
        self.forget = ops.forget  # type: ignore[method-assign]
        self.fsync = ops.fsync  # type: ignore[method-assign]
        self.release = ops.release  # type: ignore[method-assign]
        self.releasedir = ops.releasedir  # type: ignore[method-assign]
        self.fsyncdir = ops.fsyncdir  # type: ignore[method-assign]
        # The kernel applies the umask itself only if asked to (libfuse's default,
        # which pyfuse3 keeps); ours is always asked not to, so apply it here. With
        # POSIX ACLs the kernel leaves it to the default ACL instead.
        self._apply_umask = not ops.enable_acl
        # poll() gives pyfuse3 handlers the inode of the open file: remembered at open.
        self._fh_inode: dict[int, int] = {}
        self.mount: _tfu.Mount | None = None
        # pyfuse3's invalidate_inode() and notify_store() return once the kernel took
        # the notification, so a handler that calls them replies after that: set by
        # them, awaited by _sync() before the reply (trio mode only: in asyncio mode
        # handlers run as asyncio tasks, which cannot await trio).
        self.notified = False
        self.trio_mode = True

    async def _sync(self) -> None:
        self.notified = False
        if self.mount is not None and self.trio_mode:
            await self.mount.notifications_sent()

    def _mode(self, mode: int, umask: int) -> int:
        return mode & ~umask if self._apply_umask else mode

    # ---- lifecycle --------------------------------------------------------------------

    async def init(self, info: _tfu.InitInfo) -> None:
        self.ops.init()

    # ---- names and inodes -------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes, ctx: _tfu.RequestContext) -> Any:
        result = await self.ops.lookup(parent_inode, name, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def getattr(self, inode: int, ctx: _tfu.RequestContext) -> Any:
        result = await self.ops.getattr(inode, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def setattr(
        self, inode: int, attr: _tfu.SetattrFields, fh: int | None, ctx: _tfu.RequestContext
    ) -> Any:
        new = EntryAttributes()
        fields = SetattrFields()
        if attr.st_mode is not None:
            fields.update_mode = True
            new.st_mode = attr.st_mode
        if attr.st_uid is not None:
            fields.update_uid = True
            new.st_uid = attr.st_uid
        if attr.st_gid is not None:
            fields.update_gid = True
            new.st_gid = attr.st_gid
        if attr.st_size is not None:
            fields.update_size = True
            new.st_size = attr.st_size
        now = time.time_ns() if attr.atime_now or attr.mtime_now else 0
        if attr.atime_now or attr.st_atime_ns is not None:
            fields.update_atime = True
            new.st_atime_ns = now if attr.atime_now else attr.st_atime_ns or 0
        if attr.mtime_now or attr.st_mtime_ns is not None:
            fields.update_mtime = True
            new.st_mtime_ns = now if attr.mtime_now else attr.st_mtime_ns or 0
        if attr.st_ctime_ns is not None:
            fields.update_ctime = True
            new.st_ctime_ns = attr.st_ctime_ns
        if not (
            fields.update_mode or fields.update_uid or fields.update_gid
            or fields.update_size or fields.update_atime or fields.update_mtime
            or fields.update_ctime
        ):  # fmt: skip
            # Only kill_suidgid (never asked for here): nothing for pyfuse3 to change.
            result = await self.ops.getattr(inode, _ctx(ctx))
            if self.notified:
                await self._sync()
            return result
        result = await self.ops.setattr(inode, new, fields, fh, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def readlink(self, inode: int, ctx: _tfu.RequestContext) -> bytes:
        result = await self.ops.readlink(inode, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: _tfu.RequestContext
    ) -> Any:
        result = await self.ops.symlink(parent_inode, name, target, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: _tfu.RequestContext
    ) -> Any:
        mode = self._mode(mode, ctx.umask)
        result = await self.ops.mknod(parent_inode, name, mode, rdev, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: _tfu.RequestContext
    ) -> Any:
        # pyfuse3 hands mkdir a mode with the directory type bit set.
        mode = (self._mode(mode, ctx.umask) & ~stat.S_IFMT(mode)) | stat.S_IFDIR
        result = await self.ops.mkdir(parent_inode, name, mode, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def unlink(self, parent_inode: int, name: bytes, ctx: _tfu.RequestContext) -> None:
        await self.ops.unlink(parent_inode, name, _ctx(ctx))
        if self.notified:
            await self._sync()

    async def rmdir(self, parent_inode: int, name: bytes, ctx: _tfu.RequestContext) -> None:
        await self.ops.rmdir(parent_inode, name, _ctx(ctx))
        if self.notified:
            await self._sync()

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: _tfu.RequestContext,
    ) -> None:
        await self.ops.rename(
            parent_inode_old, name_old, parent_inode_new, name_new, flags, _ctx(ctx)
        )
        if self.notified:
            await self._sync()

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: _tfu.RequestContext
    ) -> Any:
        result = await self.ops.link(inode, new_parent_inode, new_name, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    # ---- files ------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: _tfu.RequestContext) -> Any:
        fi = await self.ops.open(inode, flags, _ctx(ctx))
        if self.notified:
            await self._sync()
        if isinstance(fi, _tfu.FileInfo):
            self._fh_inode[fi.fh] = inode
        return fi

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: _tfu.RequestContext
    ) -> Any:
        mode = self._mode(mode, ctx.umask)
        result = await self.ops.create(parent_inode, name, mode, flags, _ctx(ctx))
        if isinstance(result, tuple) and len(result) == 2:
            fi, attr = result
            if isinstance(fi, FileInfo | _tfu.FileInfo) and isinstance(attr, _tfu.EntryAttributes):
                self._fh_inode[fi.fh] = attr.st_ino
        return result

    # The same in both APIs; __init__ binds the pyfuse3 handlers over these.

    async def read(self, fh: int, off: int, size: int) -> Any:
        return await self.ops.read(fh, off, size)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        await self.ops.forget(inode_list)

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.ops.fsync(fh, datasync)

    async def release(self, fh: int) -> None:
        await self.ops.release(fh)

    async def releasedir(self, fh: int) -> None:
        await self.ops.releasedir(fh)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.ops.fsyncdir(fh, datasync)

    async def write(self, fh: int, off: int, buf: memoryview) -> int:
        # pyfuse3 hands write a bytes object the handler may keep.
        result = await self.ops.write(fh, off, bytes(buf))
        if self.notified:
            await self._sync()
        return result

    async def flush(self, fh: int, lock_owner: int) -> None:
        await self.ops.flush(fh)
        if self.notified:
            await self._sync()

    async def poll(self, fh: int, events: int, kh: int | None) -> int:
        from ._api import PollHandle

        handle = PollHandle._create(self, kh) if kh is not None else None
        inode = self._fh_inode.get(fh, 0)
        ctx = RequestContext(os.getuid(), os.getgid(), 0, 0)
        revents = await self.ops.poll(inode, fh, handle, ctx)
        return 0 if revents is None else int(revents)

    # ---- directories ------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: _tfu.RequestContext) -> int:
        result = await self.ops.opendir(inode, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def readdir(
        self, fh: int, start_id: int, ctx: _tfu.RequestContext
    ) -> AsyncIterator[_tfu.DirEntry]:
        # pyfuse3 asks readdir to report entries with readdir_reply() until it returns
        # False, and to count a lookup for each one it accepted. Whether an entry fits
        # the kernel's buffer (and counts a lookup) is only known once it is added to
        # the reply, so the entries are collected first (readdir_reply accepts up to
        # a bound), and every lookup the handler counted for an entry that the reply
        # then did not take, or took without a lookup, is given back through forget().
        token = ReaddirToken()
        await self.ops.readdir(fh, start_id, token)
        if self.notified:
            await self._sync()
        uncounted: list[tuple[int, int]] = []
        entries = token.entries
        i = 0
        try:
            for i, (name, attr, next_id) in enumerate(entries):  # noqa: B007
                counted = yield _tfu.DirEntry(name, attr, next_id)
                if not counted and name not in _DOTS:
                    uncounted.append((attr.st_ino, 1))
            i = len(entries)
        finally:
            # Entries from i on were not taken (the buffer was full).
            uncounted.extend((a.st_ino, 1) for n, a, _ in entries[i:] if n not in _DOTS)
            if uncounted:
                await self.ops.forget(uncounted)

    # ---- filesystem -------------------------------------------------------------------

    async def statfs(self, ctx: _tfu.RequestContext) -> Any:
        result = await self.ops.statfs(_ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def access(self, inode: int, mode: int, ctx: _tfu.RequestContext) -> None:
        if not await self.ops.access(inode, mode, _ctx(ctx)):
            raise FUSEError(errno.EACCES)

    # ---- extended attributes ----------------------------------------------------------

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, flags: int, ctx: _tfu.RequestContext
    ) -> None:
        if inode == _tfu.ROOT_INODE and name == b"fuse_stacktrace":
            self.ops.stacktrace()
            return
        c = _ctx(ctx)
        # pyfuse3 checks XATTR_CREATE / XATTR_REPLACE itself, with getxattr.
        if flags & _XATTR_CREATE:
            try:
                await self.ops.getxattr(inode, name, c)
            except FUSEError as exc:
                if exc.errno != errno.ENODATA:
                    raise
            else:
                raise FUSEError(errno.EEXIST)
        elif flags & _XATTR_REPLACE:
            await self.ops.getxattr(inode, name, c)
        await self.ops.setxattr(inode, name, value, c)
        if self.notified:
            await self._sync()

    async def getxattr(self, inode: int, name: bytes, ctx: _tfu.RequestContext) -> bytes:
        result = await self.ops.getxattr(inode, name, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def listxattr(self, inode: int, ctx: _tfu.RequestContext) -> Sequence[bytes]:
        result = await self.ops.listxattr(inode, _ctx(ctx))
        if self.notified:
            await self._sync()
        return result

    async def removexattr(self, inode: int, name: bytes, ctx: _tfu.RequestContext) -> None:
        await self.ops.removexattr(inode, name, _ctx(ctx))
        if self.notified:
            await self._sync()
