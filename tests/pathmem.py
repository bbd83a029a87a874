"""An in-memory filesystem on the path API, for the tests of trio_fuse_uring.paths.

A tree of objects (directories hold names → objects, so hard links and renames of
directories are real). It records the path each handler was called with.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio

import trio_fuse_uring as tfu
from trio_fuse_uring import paths


@dataclass
class Obj:
    mode: int
    ino: int
    uid: int = 0
    gid: int = 0
    data: bytearray = field(default_factory=bytearray)
    target: str = ""
    children: dict[str, Obj] = field(default_factory=dict)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    nlink: int = 1
    atime: int = 0
    mtime: int = 0
    ctime: int = 0


def _err(code: int) -> tfu.FUSEError:
    return tfu.FUSEError(code)


class PathMem(paths.Operations):
    def __init__(self) -> None:
        now = time.time_ns()
        self.root = Obj(stat.S_IFDIR | 0o755, 31, nlink=2, atime=now, mtime=now, ctime=now)
        self.next_ino = 100
        self.calls: list[tuple[str, str | None]] = []
        self.contexts: list[tuple[str, int, int, int]] = []
        self.handles: dict[int, Obj] = {}
        self.next_fh = 1
        self.releases = 0
        self.block_mkdir = False
        self.cancelled = trio.Event()

    # ---- helpers ----
    def _log(self, op: str, path: str | None) -> None:
        self.calls.append((op, path))
        ctx = paths.request_context()
        self.contexts.append((op, ctx.uid, ctx.gid, ctx.pid))

    def resolve(self, path: str) -> Obj:
        obj = self.root
        for part in path.split("/"):
            if part:
                if not stat.S_ISDIR(obj.mode) or part not in obj.children:
                    raise _err(errno.ENOENT)
                obj = obj.children[part]
        return obj

    def _parent(self, path: str) -> tuple[Obj, str]:
        head, _, name = path.rpartition("/")
        return self.resolve(head or "/"), name

    def _new(self, path: str, mode: int, **kw: object) -> Obj:
        parent, name = self._parent(path)
        if name in parent.children:
            raise _err(errno.EEXIST)
        now = time.time_ns()
        ctx = paths.request_context()
        obj = Obj(mode, self.next_ino, ctx.uid, ctx.gid, atime=now, mtime=now, ctime=now)
        for k, v in kw.items():
            setattr(obj, k, v)
        self.next_ino += 1
        parent.children[name] = obj
        return obj

    def attrs(self, o: Obj) -> tfu.EntryAttributes:
        size = len(o.data) if stat.S_ISREG(o.mode) else len(o.target)
        return tfu.EntryAttributes(
            st_ino=o.ino, st_mode=o.mode, st_nlink=o.nlink, st_uid=o.uid, st_gid=o.gid,
            st_size=size, st_atime_ns=o.atime, st_mtime_ns=o.mtime, st_ctime_ns=o.ctime,
        )  # fmt: skip

    def _obj(self, path: str | None, fh: int | None) -> Obj:
        if fh is not None and fh in self.handles:
            return self.handles[fh]
        if path is None:
            raise _err(errno.EBADF)
        return self.resolve(path)

    # ---- handlers ----
    async def getattr(self, path: str | None, fh: int | None) -> tfu.EntryAttributes:
        self._log("getattr", path)
        return self.attrs(self._obj(path, fh))

    async def readdir(self, path: str | None, fh: int) -> AsyncIterator[paths.DirItem]:
        self._log("readdir", path)
        assert path is not None
        d = self.resolve(path)
        yield "."
        yield ".."
        for i, (name, o) in enumerate(list(d.children.items())):
            yield (name, self.attrs(o)) if i % 2 else name

    async def mkdir(self, path: str, mode: int) -> None:
        self._log("mkdir", path)
        if self.block_mkdir:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                self.cancelled.set()
                raise
        self._new(path, stat.S_IFDIR | mode, nlink=2)

    async def mknod(self, path: str, mode: int, rdev: int) -> None:
        self._log("mknod", path)
        self._new(path, mode)

    async def create(self, path: str, mode: int, flags: int) -> int:
        self._log("create", path)
        obj = self._new(path, stat.S_IFREG | mode)
        return self._handle(obj)

    def _handle(self, obj: Obj) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = obj
        return fh

    async def open(self, path: str, flags: int) -> int:
        self._log("open", path)
        obj = self.resolve(path)
        if flags & os.O_TRUNC:
            del obj.data[:]
        return self._handle(obj)

    async def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        self._log("read", path)
        return bytes(self.handles[fh].data[offset : offset + size])

    async def write(self, path: str | None, data: memoryview, offset: int, fh: int) -> int:
        self._log("write", path)
        obj = self.handles[fh]
        if len(obj.data) < offset:
            obj.data.extend(bytes(offset - len(obj.data)))
        obj.data[offset : offset + len(data)] = data
        return len(data)

    async def release(self, path: str | None, fh: int) -> None:
        self._log("release", path)
        self.releases += 1
        del self.handles[fh]

    async def truncate(self, path: str | None, size: int, fh: int | None) -> None:
        self._log("truncate", path)
        obj = self._obj(path, fh)
        del obj.data[size:]
        obj.data.extend(bytes(size - len(obj.data)))

    async def chmod(self, path: str | None, mode: int, fh: int | None) -> None:
        self._log("chmod", path)
        obj = self._obj(path, fh)
        obj.mode = stat.S_IFMT(obj.mode) | stat.S_IMODE(mode)

    async def chown(self, path: str | None, uid: int, gid: int, fh: int | None) -> None:
        self._log("chown", path)
        obj = self._obj(path, fh)
        obj.uid = obj.uid if uid == -1 else uid
        obj.gid = obj.gid if gid == -1 else gid

    async def utimens(
        self, path: str | None, atime_ns: int | None, mtime_ns: int | None, fh: int | None
    ) -> None:
        self._log("utimens", path)
        obj = self._obj(path, fh)
        obj.atime = obj.atime if atime_ns is None else atime_ns
        obj.mtime = obj.mtime if mtime_ns is None else mtime_ns

    async def unlink(self, path: str) -> None:
        self._log("unlink", path)
        parent, name = self._parent(path)
        obj = parent.children.pop(name, None)
        if obj is None:
            raise _err(errno.ENOENT)
        obj.nlink -= 1

    async def rmdir(self, path: str) -> None:
        self._log("rmdir", path)
        parent, name = self._parent(path)
        obj = self.resolve(path)
        if obj.children:
            raise _err(errno.ENOTEMPTY)
        del parent.children[name]

    async def symlink(self, path: str, target: str) -> None:
        self._log("symlink", path)
        self._new(path, stat.S_IFLNK | 0o777, target=target)

    async def readlink(self, path: str) -> str:
        self._log("readlink", path)
        return self.resolve(path).target

    async def link(self, path: str, new_path: str) -> None:
        self._log("link", new_path)
        obj = self.resolve(path)
        parent, name = self._parent(new_path)
        if name in parent.children:
            raise _err(errno.EEXIST)
        parent.children[name] = obj
        obj.nlink += 1

    async def rename(self, old: str, new: str, flags: int) -> None:
        self._log("rename", f"{old} -> {new}")
        op, oname = self._parent(old)
        np, nname = self._parent(new)
        obj = self.resolve(old)
        if flags == 2:  # RENAME_EXCHANGE
            other = self.resolve(new)
            op.children[oname], np.children[nname] = other, obj
            return
        if nname in np.children:
            if flags == 1:
                raise _err(errno.EEXIST)
            np.children[nname].nlink -= 1
        del op.children[oname]
        np.children[nname] = obj

    async def statfs(self, path: str) -> tfu.StatvfsData:
        return tfu.StatvfsData(f_bsize=512, f_blocks=1000, f_bfree=500, f_bavail=400)

    async def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        self.resolve(path).xattrs[name] = bytes(value)

    async def getxattr(self, path: str, name: str) -> bytes:
        try:
            return self.resolve(path).xattrs[name]
        except KeyError:
            raise _err(errno.ENODATA) from None

    async def listxattr(self, path: str) -> list[str]:
        return list(self.resolve(path).xattrs)

    async def removexattr(self, path: str, name: str) -> None:
        if self.resolve(path).xattrs.pop(name, None) is None:
            raise _err(errno.ENODATA)


class HardRemoveMem(PathMem):
    hard_remove = True


class InoMem(PathMem):
    use_ino = True
    readdir_ino = True
