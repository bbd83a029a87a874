"""Serve a synchronous fusepy ``Operations`` object as an async path filesystem.

Each request runs the user's handler in one of a bounded number of worker threads (a
sync handler may block as long as it likes without stalling the others), and converts
between fusepy's values (dicts, negative errno returns, float or ns times) and the path
layer's types.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import inspect
import logging
import os
import stat
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from ... import paths
from ...ops import EntryAttributes, FileInfo, FUSEError, InitInfo, Lock, StatvfsData
from ._api import fuse_config, fuse_conn_info, fuse_file_info

log = logging.getLogger("fuse")

_ATTR_INT_KEYS = (
    "st_mode",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_rdev",
    "st_size",
    "st_blksize",
    "st_blocks",
)
_STATVFS_KEYS = (
    "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
    "f_namemax",
)  # fmt: skip


class CriticalError(Exception):
    """A handler raised a BaseException (SystemExit...): the mount is stopped."""


def _statvfs(d: dict[str, int]) -> StatvfsData:
    v = StatvfsData(0, 0, 0, 0, 0, 0, 0, 0, 255)
    for key in _STATVFS_KEYS:
        if key in d:
            setattr(v, key, int(d[key]))
    if not v.f_frsize:
        v.f_frsize = v.f_bsize
    return v


class FlockStruct:
    """``struct flock`` as fusepy's ``lock`` handlers read and fill it."""

    def __init__(self, lock: Lock) -> None:
        self.l_type = lock.type
        self.l_whence = os.SEEK_SET
        self.l_start = lock.start
        self.l_len = 0 if lock.end >= (1 << 63) - 1 else lock.end - lock.start + 1
        self.l_pid = lock.pid

    def to_lock(self) -> Lock:
        end = (1 << 63) - 1 if self.l_len == 0 else self.l_start + self.l_len - 1
        return Lock(self.l_start, end, self.l_type, self.l_pid)


class FusepyBridge(paths.Operations):
    """The path operations calling a fusepy ``Operations`` object (see :func:`bridge_for`)."""

    def __init__(
        self,
        operations: Any,
        *,
        raw_fi: bool,
        encoding: str,
        errors: str,
        threads: int,
        config: fuse_config,
        on_critical: Callable[[BaseException], None],
    ) -> None:
        self.operations = operations
        self.raw_fi = raw_fi
        self.encoding = encoding
        self.errors = errors
        self.use_ns = bool(getattr(operations, "use_ns", False))
        self.config = config
        # threads=0: handlers run in the serving thread itself, one at a time (libfuse's
        # single-threaded mode, -s): no thread hop, but a blocking handler stalls all.
        self._inline = threads == 0
        self._limiter = trio.CapacityLimiter(max(threads, 1))
        self._on_critical = on_critical
        self._fis: dict[int, fuse_file_info] = {}
        self.running = 0  # handlers in worker threads now
        self._next_fi = 1
        own_call = type(operations).__dict__.get("__call__") or next(
            (k.__dict__["__call__"] for k in type(operations).__mro__ if "__call__" in k.__dict__),
            None,
        )
        # fusepy called every handler through ``operations(name, *args)``; honour a
        # class that overrides it (fusepy's LoggingMixIn did), else call directly.
        from ._api import Operations as _Base

        self._via_call = own_call is not None and own_call is not _Base.__call__
        self._apply_config()
        self._create_arity = self._arity("create")

    def _apply_config(self) -> None:
        c = self.config
        self.use_ino = bool(c.use_ino)
        self.readdir_ino = bool(c.readdir_ino)
        self.hard_remove = bool(c.hard_remove or c.nullpath_ok)

    def _arity(self, name: str) -> int:
        """How many arguments the handler takes (its class's function: wrappers such
        as LoggingMixIn's hide the signature)."""
        fn = getattr(type(self.operations), name, None)
        bound = 1
        if fn is None:
            fn, bound = getattr(self.operations, name, None), 0
        if fn is None:
            return 0
        try:
            return len(inspect.signature(fn).parameters) - bound
        except (TypeError, ValueError):
            return 3

    # ---- calling the user's code ---------------------------------------------------

    def _sync(self, name: str, fn: Callable[..., Any] | None, *args: Any) -> Any:
        """Run in a worker thread: the handler, with fusepy's error conventions."""
        try:
            if fn is not None:
                ret = fn(*args)
            elif self._via_call:
                ret = self.operations(name, *args)
            else:
                ret = getattr(self.operations, name)(*args)
        except OSError as exc:
            err = exc.errno
            if isinstance(err, int) and 0 < err < 512:
                expected = (name == "getattr" and err == errno.ENOENT) or (
                    name == "getxattr" and err == errno.ENODATA
                )
                log.debug("FUSE operation %s raised %r", name, exc, exc_info=not expected)
                raise FUSEError(err) from None
            log.exception(
                "FUSE operation %s raised an OSError without errno, returning EINVAL", name
            )
            raise FUSEError(errno.EINVAL) from None
        except Exception:
            log.exception(
                "Uncaught exception from FUSE operation %s, returning errno.EINVAL.", name
            )
            raise FUSEError(errno.EINVAL) from None
        except BaseException as exc:
            log.critical(
                "Uncaught critical exception from FUSE operation %s, aborting.", name, exc_info=True
            )
            self._on_critical(exc)
            raise FUSEError(errno.EFAULT) from None
        return ret

    async def _call(self, name: str, *args: Any) -> Any:
        if self._inline:
            return self._sync(name, None, *args)
        self.running += 1
        try:
            return await trio.to_thread.run_sync(
                partial(self._sync, name, None, *args), limiter=self._limiter
            )
        finally:
            self.running -= 1

    async def _call_int(self, name: str, *args: Any) -> int:
        """A handler whose int result is 0 or positive on success, -errno on failure."""
        ret = await self._call(name, *args)
        if ret is None:
            return 0
        if isinstance(ret, int) and ret < 0:
            raise FUSEError(-ret if -ret < 512 else errno.EIO)
        return ret if isinstance(ret, int) else 0

    def _fh(self, fh: int | None) -> Any:
        if fh is None or not self.raw_fi:
            return fh
        return self._fis.get(fh)

    def _decode_time(self, value: Any) -> int:
        return int(value) if self.use_ns else round(float(value) * 1e9)

    def _encode_time(self, ns: int) -> Any:
        return ns if self.use_ns else ns / 1e9

    def _attrs(self, d: Any, handler: str = "getattr") -> EntryAttributes:
        if not isinstance(d, dict):
            log.error("%s must return a dict, not %s", handler, type(d).__name__)
            raise FUSEError(errno.EIO)
        a = EntryAttributes.__new__(EntryAttributes)
        EntryAttributes.__init__(a, st_mode=d.get("st_mode", 0) or stat.S_IFREG)
        for key in _ATTR_INT_KEYS:
            if key in d:
                setattr(a, key, int(d[key]))
        if not stat.S_IFMT(a.st_mode):
            log.error("%s returned st_mode %#o without file type bits", handler, a.st_mode)
            raise FUSEError(errno.EIO)
        if "st_ino" in d:
            a.st_ino = int(d["st_ino"])
        for key in ("st_atime", "st_mtime", "st_ctime"):
            if key in d:
                setattr(a, key + "_ns", self._decode_time(d[key]))
        return a

    # ---- lifecycle -----------------------------------------------------------------

    async def init(self, info: InitInfo) -> None:
        ops = self.operations

        def run_init() -> None:
            with_config = getattr(ops, "init_with_config", None)
            if with_config is not None and not getattr(with_config, "libfuse_ignore", False):
                conn = fuse_conn_info(info.major, info.minor, info.max_readahead)
                with_config(conn, self.config)
            else:
                plain = getattr(ops, "init", None)
                if plain is not None and not getattr(plain, "libfuse_ignore", False):
                    plain("/")

        if self._inline:
            run_init()
        else:
            await trio.to_thread.run_sync(run_init, limiter=self._limiter)
        self._apply_config()

    async def destroy(self) -> None:
        fn = getattr(self.operations, "destroy", None)
        if fn is not None and not getattr(fn, "libfuse_ignore", False):
            await self._call("destroy", "/")

    # ---- names and attributes ------------------------------------------------------

    async def getattr(self, path: str | None, fh: int | None) -> EntryAttributes:
        return self._attrs(await self._call("getattr", path, self._fh(fh)))

    async def readlink(self, path: str) -> str:
        target = await self._call("readlink", path)
        if isinstance(target, bytes):
            return os.fsdecode(target)
        return str(target)

    async def mknod(self, path: str, mode: int, rdev: int) -> None:
        await self._call_int("mknod", path, mode, rdev)

    async def mkdir(self, path: str, mode: int) -> None:
        await self._call_int("mkdir", path, mode)

    async def unlink(self, path: str) -> None:
        await self._call_int("unlink", path)

    async def rmdir(self, path: str) -> None:
        await self._call_int("rmdir", path)

    async def symlink(self, path: str, target: str) -> None:
        await self._call_int("symlink", path, target)

    async def rename(self, old: str, new: str, flags: int) -> None:
        if flags:
            # fusepy's rename has no flags: doing a plain rename instead of a
            # RENAME_NOREPLACE or RENAME_EXCHANGE could destroy the target.
            raise FUSEError(errno.EINVAL)
        await self._call_int("rename", old, new)

    async def link(self, path: str, new_path: str) -> None:
        await self._call_int("link", new_path, path)

    async def chmod(self, path: str | None, mode: int, fh: int | None) -> None:
        await self._call_int("chmod", path, mode)

    async def chown(self, path: str | None, uid: int, gid: int, fh: int | None) -> None:
        await self._call_int("chown", path, uid, gid)

    async def truncate(self, path: str | None, size: int, fh: int | None) -> None:
        if fh is None:
            await self._call_int("truncate", path, size)
        else:
            await self._call_int("truncate", path, size, self._fh(fh))

    async def utimens(
        self, path: str | None, atime_ns: int | None, mtime_ns: int | None, fh: int | None
    ) -> None:
        if atime_ns is None or mtime_ns is None:
            current = await self.getattr(path, fh)
            atime_ns = current.st_atime_ns if atime_ns is None else atime_ns
            mtime_ns = current.st_mtime_ns if mtime_ns is None else mtime_ns
        times = (self._encode_time(atime_ns), self._encode_time(mtime_ns))
        await self._call_int("utimens", path, times)

    # ---- files ---------------------------------------------------------------------

    def _file_info(self, fi: fuse_file_info) -> FileInfo:
        key = self._next_fi
        self._next_fi += 1
        self._fis[key] = fi
        return FileInfo(
            key, direct_io=bool(fi.direct_io), keep_cache=bool(fi.keep_cache),
            nonseekable=bool(fi.nonseekable),
        )  # fmt: skip

    def _opened(self, fh: Any, flags: int) -> FileInfo:
        c = self.config
        if type(fh) is not int:
            log.error("open/create must return an int handle, not %s", type(fh).__name__)
            raise FUSEError(errno.EIO)
        return FileInfo(fh, direct_io=bool(c.direct_io), keep_cache=bool(c.kernel_cache))

    async def open(self, path: str, flags: int) -> FileInfo:
        if self.raw_fi:
            fi = fuse_file_info(flags)
            await self._call_int("open", path, fi)
            return self._file_info(fi)
        return self._opened(await self._call("open", path, flags), flags)

    async def create(self, path: str, mode: int, flags: int) -> FileInfo:
        if self.raw_fi:
            fi = fuse_file_info(flags)
            await self._call_int("create", path, mode, fi)
            return self._file_info(fi)
        if self._create_arity == 2:
            return self._opened(await self._call("create", path, mode), flags)
        return self._opened(await self._call("create", path, mode, flags), flags)

    async def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        data = await self._call("read", path, size, offset, self._fh(fh))
        if not data:
            return b""
        if len(data) > size:
            log.error("read returned %d bytes for a read of %d", len(data), size)
            raise FUSEError(errno.EIO)
        return bytes(data)

    async def write(self, path: str | None, data: memoryview, offset: int, fh: int) -> int:
        return await self._call_int("write", path, bytes(data), offset, self._fh(fh))

    async def flush(self, path: str | None, fh: int) -> None:
        await self._call_int("flush", path, self._fh(fh))

    async def release(self, path: str | None, fh: int) -> None:
        try:
            await self._call_int("release", path, self._fh(fh))
        finally:
            if self.raw_fi:
                self._fis.pop(fh, None)

    async def fsync(self, path: str | None, datasync: bool, fh: int) -> None:
        await self._call_int("fsync", path, int(datasync), self._fh(fh))

    async def fallocate(
        self, path: str | None, mode: int, offset: int, length: int, fh: int
    ) -> None:
        await self._call_int("fallocate", path, mode, offset, length, self._fh(fh))

    async def lock(self, path: str | None, fh: int, owner: int, cmd: int, lock: Lock) -> Lock:
        fl = FlockStruct(lock)
        await self._call_int("lock", path, self._fh(fh), cmd, fl)
        return fl.to_lock() if cmd == fcntl.F_GETLK else lock

    async def flock(self, path: str | None, fh: int, owner: int, operation: int) -> None:
        await self._call_int("flock", path, self._fh(fh), operation)

    async def ioctl(
        self, path: str | None, cmd: int, arg: int, data: bytes, out_size: int, flags: int, fh: int
    ) -> tuple[int, bytes]:
        # fusepy hands the handler a pointer to a buffer that holds the input and
        # receives the output, as libfuse does.
        buf = ctypes.create_string_buffer(data, max(len(data), out_size, 1))
        ret = await self._call_int(
            "ioctl", path, cmd, ctypes.c_void_p(arg), self._fh(fh), flags,
            ctypes.cast(buf, ctypes.c_void_p),
        )  # fmt: skip
        return ret, buf.raw[:out_size]

    # ---- directories ---------------------------------------------------------------

    async def opendir(self, path: str) -> int:
        fh = await self._call_int("opendir", path)
        return fh

    async def readdir(self, path: str | None, fh: int) -> list[paths.DirItem]:  # type: ignore[override]
        with_offset = getattr(self.operations, "readdir_with_offset", None)
        if with_offset is not None and not getattr(with_offset, "libfuse_ignore", False):
            # The whole listing from the start; the layer pages through it for the kernel.
            listing = partial(_listing, self, "readdir_with_offset", path, 0, fh)
        else:
            listing = partial(_listing, self, "readdir", path, fh)
        if self._inline:
            result: list[paths.DirItem] = self._sync("readdir", listing)
        else:
            result = await trio.to_thread.run_sync(
                partial(self._sync, "readdir", listing), limiter=self._limiter
            )
        return result

    async def releasedir(self, path: str | None, fh: int) -> None:
        await self._call_int("releasedir", path, fh)

    async def fsyncdir(self, path: str | None, datasync: bool, fh: int) -> None:
        await self._call_int("fsyncdir", path, int(datasync), fh)

    # ---- filesystem ----------------------------------------------------------------

    async def statfs(self, path: str) -> StatvfsData:
        d = await self._call("statfs", path)
        return _statvfs(d or {})

    async def access(self, path: str, mode: int) -> None:
        await self._call_int("access", path, mode)

    async def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        await self._call_int("setxattr", path, name, value, flags)

    async def getxattr(self, path: str, name: str) -> bytes:
        value = await self._call("getxattr", path, name)
        if isinstance(value, str):
            return value.encode(self.encoding, self.errors)
        return bytes(value)

    async def listxattr(self, path: str) -> list[str]:
        names = await self._call("listxattr", path)
        return [n if isinstance(n, str) else os.fsdecode(n) for n in (names or ())]

    async def removexattr(self, path: str, name: str) -> None:
        await self._call_int("removexattr", path, name)


def _listing(bridge: FusepyBridge, name: str, *args: Any) -> list[paths.DirItem]:
    """Collect a fusepy listing in the worker thread (its generator may block)."""
    if bridge._via_call:
        items = bridge.operations(name, *args)
    else:
        items = getattr(bridge.operations, name)(*args)
    out: list[paths.DirItem] = []
    for item in items or ():
        if isinstance(item, str):
            out.append(item)
            continue
        entry_name, attrs, _offset = item
        if isinstance(attrs, dict) and "st_mode" in attrs:
            out.append((entry_name, bridge._attrs(attrs, name)))
        elif isinstance(attrs, int) and stat.S_IFMT(attrs):
            out.append((entry_name, EntryAttributes(st_mode=attrs)))
        else:
            out.append(entry_name)
    return out


# fusepy handler -> the path operations that exist only if it is implemented.
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "readlink": ("readlink",),
    "mknod": ("mknod",),
    "mkdir": ("mkdir",),
    "unlink": ("unlink",),
    "rmdir": ("rmdir",),
    "symlink": ("symlink",),
    "rename": ("rename",),
    "link": ("link",),
    "chmod": ("chmod",),
    "chown": ("chown",),
    "truncate": ("truncate",),
    "utimens": ("utimens",),
    "open": ("open",),
    "create": ("create",),
    "read": ("read",),
    "write": ("write",),
    "flush": ("flush",),
    "release": ("release",),
    "fsync": ("fsync",),
    "fallocate": ("fallocate",),
    "lock": ("lock",),
    "flock": ("flock",),
    "ioctl": ("ioctl",),
    "opendir": ("opendir",),
    "releasedir": ("releasedir",),
    "fsyncdir": ("fsyncdir",),
    "statfs": ("statfs",),
    "access": ("access",),
    "setxattr": ("setxattr",),
    "getxattr": ("getxattr",),
    "listxattr": ("listxattr",),
    "removexattr": ("removexattr",),
}


def _implemented(operations: Any, name: str) -> bool:
    value = getattr(operations, name, None)
    return value is not None and not getattr(value, "libfuse_ignore", False)


def bridge_for(operations: Any, **kwargs: Any) -> FusepyBridge:
    """The path operations for ``operations``, offering only what it implements."""
    missing: dict[str, Any] = {
        path_name: getattr(paths.Operations, path_name)
        for name, path_names in _OPTIONAL.items()
        if not _implemented(operations, name)
        for path_name in path_names
    }
    if not (_implemented(operations, "readdir") or _implemented(operations, "readdir_with_offset")):
        missing["readdir"] = paths.Operations.readdir
    cls = type("FusepyBridge", (FusepyBridge,), missing) if missing else FusepyBridge
    bridge: FusepyBridge = cls(operations, **kwargs)
    return bridge
