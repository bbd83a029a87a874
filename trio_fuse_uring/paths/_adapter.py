"""Serve path :class:`~trio_fuse_uring.paths.Operations` as inode operations.

One adapter per mount: it turns each kernel node number into a path through the
:class:`NodeTable`, calls the path handler, and updates the table once the handler
succeeded (lookups, creations, renames, unlinks, releases).
"""

from __future__ import annotations

import contextvars
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..ops import (
    DirEntry,
    EntryAttributes,
    FileInfo,
    FileRange,
    FUSEError,
    InitInfo,
    Lock,
    RequestContext,
    SetattrFields,
    StatvfsData,
)
from ..ops import Operations as InodeOperations
from ._operations import DirItem, Operations
from ._table import Node, NodeTable

log = logging.getLogger("trio_fuse_uring.paths")

_NO_CALLER = RequestContext(0, 0, 0)
_context: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "trio_fuse_uring_paths_context", default=_NO_CALLER
)
_UNKNOWN_INO = 0xFFFFFFFF  # what libfuse reports in listings for names it has no node of
_RENAME_EXCHANGE = 2


def request_context() -> RequestContext:
    """Who is asking: the caller's uid, gid, pid (and umask) in the current path handler.

    In requests on an open file (read, write, flush, release, fsync, locks...) it is
    the process that opened the file (whose rights the kernel checked at ``open``).
    """
    return _context.get()


def _oserror(exc: OSError) -> FUSEError:
    return FUSEError(exc.errno if isinstance(exc.errno, int) and 0 < exc.errno < 512 else errno.EIO)


def _fail(exc: OSError) -> NoReturn:
    raise _oserror(exc) from None


def _with_ids(a: EntryAttributes, st_ino: int, nodeid: int) -> EntryAttributes:
    """A copy of ``a`` with the numbers the kernel gets (never mutates the handler's)."""
    return EntryAttributes(
        st_ino, a.generation, a.entry_timeout, a.attr_timeout, a.st_mode, a.st_nlink,
        a.st_uid, a.st_gid, a.st_rdev, a.st_size, a.st_blksize, a.st_blocks,
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns, a.st_birthtime_ns, nodeid,
    )  # fmt: skip


@dataclass(slots=True)
class _OpenFile:
    node: Node
    fh: int  # the path handler's own handle
    ctx: RequestContext  # who opened it


@dataclass(slots=True)
class _OpenDir:
    node: Node
    fh: int
    entries: list[tuple[str, EntryAttributes | None]] | None = None


class PathAdapter(InodeOperations):
    """The inode operations that serve a path filesystem (see :func:`adapter_for`)."""

    def __init__(self, ops: Operations) -> None:
        if not isinstance(ops, Operations):
            raise TypeError(
                f"ops must be a trio_fuse_uring.paths.Operations, not {type(ops).__name__}"
            )
        self.ops = ops
        self.table = NodeTable()
        self._files: dict[int, _OpenFile] = {}
        self._dirs: dict[int, _OpenDir] = {}
        self._next_fh = 1
        self._last_fh: dict[int, int] = {}  # node id -> a handler fh of an open file of it

    # ---- helpers -------------------------------------------------------------------

    def _node(self, node_id: int) -> Node:
        node = self.table.get(node_id)
        if node is None:
            raise FUSEError(errno.ESTALE)
        return node

    def _path(self, node: Node) -> str:
        """The path of a node that must have one (named operations)."""
        path = self.table.path(node)
        if path is None:
            raise FUSEError(errno.ENOENT)
        return path

    def _child(self, parent_id: int, name: bytes) -> tuple[Node, str, str]:
        parent = self._node(parent_id)
        sname = os.fsdecode(name)
        path = self.table.child_path(parent, sname)
        if path is None:
            raise FUSEError(errno.ENOENT)
        return parent, sname, path

    def _attr(self, a: Any, node: Node) -> EntryAttributes:
        """``a`` with the numbers the kernel gets, set in place (the object is encoded
        before anything else runs, so an object a handler returns twice is safe)."""
        if type(a) is not EntryAttributes and not isinstance(a, EntryAttributes):
            raise TypeError(
                f"paths.Operations.getattr must return EntryAttributes, not {type(a).__name__}"
            )
        if self.ops.use_ino:
            node.ino = a.st_ino = a.st_ino or node.id
            a.nodeid = node.id
        else:
            a.st_ino, a.nodeid = node.id, 0
        return a

    async def _getattr(self, path: str | None, fh: int | None, node: Node) -> EntryAttributes:
        try:
            return self._attr(await self.ops.getattr(path, fh), node)
        except OSError as exc:
            _fail(exc)

    async def _new_entry(self, parent: Node, name: str, path: str) -> EntryAttributes:
        """After a creation: the new name's attributes, counted as one lookup."""
        node = self.table.attach(parent, name)
        try:
            attr = await self._getattr(path, None, node)
        except BaseException:
            self.table.drop_if_unused(node)
            raise
        node.nlookup += 1
        return attr

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _open_file(self, fh: int) -> _OpenFile:
        try:
            return self._files[fh]
        except KeyError:
            raise FUSEError(errno.EBADF) from None

    def _file_path(self, f: _OpenFile) -> str | None:
        _context.set(f.ctx)
        return self.table.path(f.node)

    async def _hide(self, parent: Node, name: str, path: str, node: Node) -> bool:
        """Keep an open file that loses its name under a hidden one until its last release."""
        hidden = self.table.hidden_name(node)
        hidden_path = self.table.child_path(parent, hidden)
        if hidden_path is None:
            return False
        try:
            await self.ops.rename(path, hidden_path, 0)
        except (FUSEError, OSError) as exc:
            log.debug("could not hide open file %s (%s); unlinking it at once", path, exc)
            return False
        self.table.move(parent, name, parent, hidden)
        node.hidden = True
        return True

    # ---- lifecycle -----------------------------------------------------------------

    async def init(self, info: InitInfo) -> None:
        await self.ops.init(info)

    async def destroy(self) -> None:
        await self.ops.destroy()

    # ---- names and attributes ------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        _context.set(ctx)
        parent = self._node(parent_inode)
        if name == b"." or name == b"..":
            node = parent if name == b"." else (parent.parent or self.table.root)
            attr = await self._getattr(self._path(node), None, node)
            node.nlookup += 1
            return attr
        sname = os.fsdecode(name)
        path = self.table.child_path(parent, sname)
        if path is None:
            raise FUSEError(errno.ENOENT)
        return await self._new_entry(parent, sname, path)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        table = self.table
        for node_id, count in inode_list:
            node = table.get(node_id)
            if node is not None:
                table.forget(node, count)
                if node.nlookup == 0 and node.nopen == 0:
                    self._last_fh.pop(node_id, None)

    async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
        _context.set(ctx)
        node = self._node(inode)
        path = self.table.path(node)
        fh = None
        if path is None:
            fh = self._last_fh.get(node.id)
            if fh is None:
                raise FUSEError(errno.ENOENT)
        return await self._getattr(path, fh, node)

    async def setattr(
        self, inode: int, attr: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        _context.set(ctx)
        node = self._node(inode)
        path = self.table.path(node)
        ufh = self._files[fh].fh if fh is not None and fh in self._files else None
        if path is None and ufh is None:
            ufh = self._last_fh.get(node.id)
            if ufh is None:
                raise FUSEError(errno.ENOENT)
        ops = self.ops
        try:
            if attr.st_mode is not None:
                await ops.chmod(path, attr.st_mode, ufh)
            if attr.st_uid is not None or attr.st_gid is not None:
                uid = -1 if attr.st_uid is None else attr.st_uid
                gid = -1 if attr.st_gid is None else attr.st_gid
                await ops.chown(path, uid, gid, ufh)
            if attr.st_size is not None:
                await ops.truncate(path, attr.st_size, ufh)
            atime, mtime = attr.st_atime_ns, attr.st_mtime_ns
            if attr.atime_now or attr.mtime_now:
                now = time.time_ns()
                atime = now if attr.atime_now else atime
                mtime = now if attr.mtime_now else mtime
            if atime is not None or mtime is not None:
                await ops.utimens(path, atime, mtime, ufh)
            return self._attr(await ops.getattr(path, ufh), node)
        except OSError as exc:
            _fail(exc)

    async def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        _context.set(ctx)
        try:
            target = await self.ops.readlink(self._path(self._node(inode)))
        except OSError as exc:
            _fail(exc)
        return os.fsencode(target)

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: RequestContext
    ) -> EntryAttributes:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode, name)
        try:
            await self.ops.mknod(path, mode & ~ctx.umask, rdev)
        except OSError as exc:
            _fail(exc)
        return await self._new_entry(parent, sname, path)

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: RequestContext
    ) -> EntryAttributes:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode, name)
        try:
            await self.ops.mkdir(path, mode & ~ctx.umask)
        except OSError as exc:
            _fail(exc)
        return await self._new_entry(parent, sname, path)

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: RequestContext
    ) -> EntryAttributes:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode, name)
        try:
            await self.ops.symlink(path, os.fsdecode(target))
        except OSError as exc:
            _fail(exc)
        return await self._new_entry(parent, sname, path)

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: RequestContext
    ) -> EntryAttributes:
        _context.set(ctx)
        source = self._path(self._node(inode))
        parent, sname, path = self._child(new_parent_inode, new_name)
        try:
            await self.ops.link(source, path)
        except OSError as exc:
            _fail(exc)
        return await self._new_entry(parent, sname, path)

    async def unlink(self, parent_inode: int, name: bytes, ctx: RequestContext) -> None:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode, name)
        node = self.table.child(parent, sname)
        if (
            node is not None
            and node.nopen
            and not node.hidden
            and not self.ops.hard_remove
            and await self._hide(parent, sname, path, node)
        ):
            return
        try:
            await self.ops.unlink(path)
        except OSError as exc:
            _fail(exc)
        self.table.detach(parent, sname)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: RequestContext) -> None:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode, name)
        try:
            await self.ops.rmdir(path)
        except OSError as exc:
            _fail(exc)
        self.table.detach(parent, sname)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: RequestContext,
    ) -> None:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode_old, name_old)
        new_parent, new_sname, new_path = self._child(parent_inode_new, name_new)
        if not flags & _RENAME_EXCHANGE and not self.ops.hard_remove:
            target = self.table.child(new_parent, new_sname)
            if target is not None and target.nopen and not target.hidden:
                await self._hide(new_parent, new_sname, new_path, target)
        try:
            await self.ops.rename(path, new_path, flags)
        except OSError as exc:
            _fail(exc)
        if flags & _RENAME_EXCHANGE:
            self.table.exchange(parent, sname, new_parent, new_sname)
        else:
            self.table.move(parent, sname, new_parent, new_sname)

    # ---- files ---------------------------------------------------------------------

    def _opened(self, node: Node, result: Any, handler: str, ctx: RequestContext) -> FileInfo:
        if isinstance(result, FileInfo):
            info = FileInfo(
                0, result.direct_io, result.keep_cache, result.nonseekable, result.cache_dir,
                result.parallel_direct_writes, result.noflush,
            )  # fmt: skip
            ufh = result.fh
        elif type(result) is int:
            info, ufh = FileInfo(), result
        else:
            raise TypeError(f"paths.Operations.{handler} must return an int or FileInfo")
        info.fh = fh = self._new_fh()
        self._files[fh] = _OpenFile(node, ufh, ctx)
        node.nopen += 1
        self._last_fh[node.id] = ufh
        return info

    async def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        _context.set(ctx)
        node = self._node(inode)
        try:
            result = await self.ops.open(self._path(node), flags)
        except OSError as exc:
            _fail(exc)
        return self._opened(node, result, "open", ctx)

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        _context.set(ctx)
        parent, sname, path = self._child(parent_inode, name)
        try:
            result = await self.ops.create(path, mode & ~ctx.umask, flags)
        except OSError as exc:
            _fail(exc)
        node = self.table.attach(parent, sname)
        info = self._opened(node, result, "create", ctx)
        try:
            attr = await self._getattr(path, self._files[info.fh].fh, node)
        except BaseException:
            await self.release(info.fh)
            raise
        node.nlookup += 1
        return info, attr

    async def read(self, fh: int, off: int, size: int) -> bytes | FileRange:
        f = self._open_file(fh)
        try:
            return await self.ops.read(self._file_path(f), size, off, f.fh)
        except OSError as exc:
            _fail(exc)

    async def write(self, fh: int, off: int, buf: memoryview) -> int:
        f = self._open_file(fh)
        try:
            return await self.ops.write(self._file_path(f), buf, off, f.fh)
        except OSError as exc:
            _fail(exc)

    async def flush(self, fh: int, lock_owner: int) -> None:
        f = self._open_file(fh)
        try:
            await self.ops.flush(self._file_path(f), f.fh)
        except OSError as exc:
            _fail(exc)

    async def release(self, fh: int) -> None:
        f = self._files.pop(fh, None)
        if f is None:
            return
        node = f.node
        try:
            await self.ops.release(self._file_path(f), f.fh)
        except OSError as exc:
            _fail(exc)
        finally:
            node.nopen -= 1
            if node.nopen == 0:
                self._last_fh.pop(node.id, None)
                if node.hidden:
                    await self._remove_hidden(node)
            self.table.drop_if_unused(node)

    async def _remove_hidden(self, node: Node) -> None:
        path, parent = self.table.path(node), node.parent
        if path is None or parent is None:
            return
        try:
            await self.ops.unlink(path)
        except (FUSEError, OSError) as exc:
            log.warning("could not remove hidden file %s of an unlinked file: %s", path, exc)
        self.table.detach(parent, node.name)

    async def fsync(self, fh: int, datasync: bool) -> None:
        f = self._open_file(fh)
        try:
            await self.ops.fsync(self._file_path(f), datasync, f.fh)
        except OSError as exc:
            _fail(exc)

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        f = self._open_file(fh)
        try:
            await self.ops.fallocate(self._file_path(f), mode, offset, length, f.fh)
        except OSError as exc:
            _fail(exc)

    async def lseek(self, fh: int, offset: int, whence: int) -> int:
        f = self._open_file(fh)
        try:
            return await self.ops.lseek(self._file_path(f), offset, whence, f.fh)
        except OSError as exc:
            _fail(exc)

    async def copy_file_range(
        self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int, flags: int
    ) -> int:
        fi, fo = self._open_file(fh_in), self._open_file(fh_out)
        try:
            return await self.ops.copy_file_range(
                self._file_path(fi), fi.fh, off_in, self._file_path(fo), fo.fh, off_out,
                length, flags,
            )  # fmt: skip
        except OSError as exc:
            _fail(exc)

    async def getlk(self, fh: int, owner: int, lock: Lock) -> Lock:
        f = self._open_file(fh)
        try:
            return await self.ops.lock(self._file_path(f), f.fh, owner, fcntl.F_GETLK, lock)
        except OSError as exc:
            _fail(exc)

    async def setlk(self, fh: int, owner: int, lock: Lock, wait: bool) -> None:
        f = self._open_file(fh)
        cmd = fcntl.F_SETLKW if wait else fcntl.F_SETLK
        try:
            await self.ops.lock(self._file_path(f), f.fh, owner, cmd, lock)
        except OSError as exc:
            _fail(exc)

    async def flock(self, fh: int, owner: int, operation: int, wait: bool) -> None:
        f = self._open_file(fh)
        op = operation if wait or operation == fcntl.LOCK_UN else operation | fcntl.LOCK_NB
        try:
            await self.ops.flock(self._file_path(f), f.fh, owner, op)
        except OSError as exc:
            _fail(exc)

    async def ioctl(
        self, fh: int, cmd: int, arg: int, data: bytes, out_size: int, flags: int
    ) -> tuple[int, bytes]:
        f = self._open_file(fh)
        try:
            return await self.ops.ioctl(self._file_path(f), cmd, arg, data, out_size, flags, f.fh)
        except OSError as exc:
            _fail(exc)

    # ---- directories ---------------------------------------------------------------

    async def opendir(self, inode: int, ctx: RequestContext) -> int:
        _context.set(ctx)
        node = self._node(inode)
        try:
            ufh = await self.ops.opendir(self._path(node))
        except OSError as exc:
            _fail(exc)
        if type(ufh) is not int:
            raise TypeError("paths.Operations.opendir must return an int")
        fh = self._new_fh()
        self._dirs[fh] = _OpenDir(node, ufh)
        node.nopen += 1
        return fh

    async def _list(self, d: _OpenDir) -> list[tuple[str, EntryAttributes | None]]:
        """The whole listing, read once per pass (the kernel's later calls page through it)."""
        items: Any = self.ops.readdir(self.table.path(d.node), d.fh)
        entries: list[tuple[str, EntryAttributes | None]] = []
        add = entries.append
        try:
            if hasattr(items, "__aiter__"):
                async for item in items:
                    add(_dir_item(item))
            else:
                if hasattr(items, "__await__"):
                    items = await items
                for item in items:
                    add(_dir_item(item))
        except OSError as exc:
            _fail(exc)
        return entries

    async def readdir(self, fh: int, start_id: int, ctx: RequestContext) -> AsyncIterator[DirEntry]:
        _context.set(ctx)
        d = self._dirs.get(fh)
        if d is None:
            raise FUSEError(errno.EBADF)
        if start_id == 0 or d.entries is None:
            d.entries = await self._list(d)
        table, dnode = self.table, d.node
        use_ino, readdir_ino = self.ops.use_ino, self.ops.readdir_ino
        for i in range(start_id, len(d.entries)):
            name, attr = d.entries[i]
            if name == "." or name == "..":
                dots = dnode if name == "." else (dnode.parent or table.root)
                attr = attr or EntryAttributes(st_mode=stat.S_IFDIR)
                yield DirEntry(os.fsencode(name), _with_ids(attr, dots.id, 0), i + 1)
                continue
            known = table.child(dnode, name)
            if known is not None and known.hidden:
                continue  # an unlinked file kept for its open handles
            if use_ino and attr is not None and attr.st_ino:
                ino = attr.st_ino
            elif readdir_ino and known is not None:
                ino = known.ino
            else:
                ino = _UNKNOWN_INO
            made: list[Node] = []
            lazy = self._lazy_attr(dnode, name, attr, made)
            mode = attr.st_mode if attr is not None else 0
            if (yield DirEntry(os.fsencode(name), lazy, i + 1, ino, mode)):
                made[0].nlookup += 1
            elif made:
                table.drop_if_unused(made[0])

    def _lazy_attr(
        self, dnode: Node, name: str, attr: EntryAttributes | None, made: list[Node]
    ) -> Callable[[], EntryAttributes]:
        def entry() -> EntryAttributes:
            if attr is None:
                raise FUSEError(errno.ENOENT)  # listed without attributes: no lookup
            node = self.table.attach(dnode, name)
            made.append(node)
            return self._attr(attr, node)

        return entry

    async def releasedir(self, fh: int) -> None:
        d = self._dirs.pop(fh, None)
        if d is None:
            return
        try:
            await self.ops.releasedir(self.table.path(d.node), d.fh)
        except OSError as exc:
            _fail(exc)
        finally:
            d.node.nopen -= 1
            self.table.drop_if_unused(d.node)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        d = self._dirs.get(fh)
        if d is None:
            raise FUSEError(errno.EBADF)
        try:
            await self.ops.fsyncdir(self.table.path(d.node), datasync, d.fh)
        except OSError as exc:
            _fail(exc)

    # ---- filesystem ----------------------------------------------------------------

    async def statfs(self, ctx: RequestContext) -> StatvfsData:
        _context.set(ctx)
        try:
            return await self.ops.statfs("/")
        except OSError as exc:
            _fail(exc)

    async def access(self, inode: int, mode: int, ctx: RequestContext) -> None:
        _context.set(ctx)
        try:
            await self.ops.access(self._path(self._node(inode)), mode)
        except OSError as exc:
            _fail(exc)

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, flags: int, ctx: RequestContext
    ) -> None:
        _context.set(ctx)
        path = self._path(self._node(inode))
        try:
            await self.ops.setxattr(path, os.fsdecode(name), value, flags)
        except OSError as exc:
            _fail(exc)

    async def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        _context.set(ctx)
        path = self._path(self._node(inode))
        try:
            return await self.ops.getxattr(path, os.fsdecode(name))
        except OSError as exc:
            _fail(exc)

    async def listxattr(self, inode: int, ctx: RequestContext) -> Sequence[bytes]:
        _context.set(ctx)
        path = self._path(self._node(inode))
        try:
            names = await self.ops.listxattr(path)
        except OSError as exc:
            _fail(exc)
        return [os.fsencode(n) for n in names]

    async def removexattr(self, inode: int, name: bytes, ctx: RequestContext) -> None:
        _context.set(ctx)
        path = self._path(self._node(inode))
        try:
            await self.ops.removexattr(path, os.fsdecode(name))
        except OSError as exc:
            _fail(exc)


def _dir_item(item: DirItem) -> tuple[str, EntryAttributes | None]:
    if isinstance(item, str):
        return item, None
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], EntryAttributes)
    ):
        return item[0], item[1]
    raise TypeError(
        "paths.Operations.readdir must give names (str) or (str, EntryAttributes) pairs, "
        f"not {item!r}"
    )


# Path handler -> the inode handlers that exist only if it is implemented. Left out, the
# inode layer's default answers (ENOSYS) make the kernel use its own fallback: no FLUSH,
# local locks, create as mknod + open, all-data lseek...
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "create": ("create",),
    "flush": ("flush",),
    "fsync": ("fsync",),
    "fsyncdir": ("fsyncdir",),
    "access": ("access",),
    "lock": ("getlk", "setlk"),
    "flock": ("flock",),
    "lseek": ("lseek",),
    "copy_file_range": ("copy_file_range",),
    "fallocate": ("fallocate",),
    "ioctl": ("ioctl",),
    "setxattr": ("setxattr",),
    "getxattr": ("getxattr",),
    "listxattr": ("listxattr",),
    "removexattr": ("removexattr",),
}


def adapter_for(ops: Operations) -> PathAdapter:
    """The inode operations serving ``ops``, offering the kernel only what ``ops`` does."""
    cls = type(ops)
    missing = {
        inode_name: getattr(InodeOperations, inode_name)
        for path_name, inode_names in _OPTIONAL.items()
        if getattr(cls, path_name, None) is getattr(Operations, path_name)
        for inode_name in inode_names
    }
    if not missing:
        return PathAdapter(ops)
    adapter_cls = type("PathAdapter", (PathAdapter,), missing)
    return adapter_cls(ops)  # type: ignore[no-any-return]
