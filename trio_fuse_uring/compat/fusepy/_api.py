"""fusepy / mfusepy names that handler code uses: Operations, errors, decorators, context."""

from __future__ import annotations

import contextvars
import errno
import functools
import logging
import os
import stat
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import trio

from ...paths import request_context

F = TypeVar("F", bound=Callable[..., Any])

#: "operation not supported" (fusepy exports it for xattr handlers).
ENOTSUP: int = errno.ENOTSUP
#: "no such attribute" (ENODATA on Linux).
ENOATTR: int = getattr(errno, "ENOATTR", errno.ENODATA)

ReadDirResult = Iterable[str | tuple[str, dict[str, int], int] | tuple[str, int, int]]

#: The version of the libfuse API this shim stands in for (what mfusepy reports).
fuse_version_major = 3
fuse_version_minor = 16
fuse_version = (fuse_version_major, fuse_version_minor)


class FuseOSError(OSError):
    """Raise ``FuseOSError(errno.X)`` from a handler to fail the request with errno X."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno, os.strerror(errno))


class fuse_file_info:
    """The open-file record handlers get with ``raw_fi=True`` (libfuse's fields)."""

    def __init__(self, flags: int = 0) -> None:
        self.flags = flags
        self.fh = 0
        self.direct_io = 0
        self.keep_cache = 0
        self.nonseekable = 0
        self.cache_readdir = 0
        self.flush = 0
        self.lock_owner = 0
        self.writepage = 0

    def __repr__(self) -> str:
        return f"fuse_file_info(flags={self.flags:#o}, fh={self.fh})"


class fuse_conn_info:
    """What ``init_with_config`` gets about the connection (read-only here)."""

    def __init__(self, proto_major: int, proto_minor: int, max_readahead: int) -> None:
        self.proto_major = proto_major
        self.proto_minor = proto_minor
        self.max_readahead = max_readahead
        self.max_write = 0
        self.max_background = 0
        self.congestion_threshold = 0
        self.time_gran = 1
        self.capable = 0
        self.want = 0


class fuse_config:
    """The libfuse 3 configuration ``init_with_config`` may change: ``use_ino``,
    ``readdir_ino``, ``hard_remove`` and ``nullpath_ok`` take effect; the timeouts and
    cache flags were fixed at mount (pass them to ``FUSE(...)`` instead)."""

    def __init__(self) -> None:
        self.set_gid = self.gid = self.set_uid = self.uid = 0
        self.set_mode = self.umask = 0
        self.entry_timeout = 1.0
        self.negative_timeout = 0.0
        self.attr_timeout = 1.0
        self.intr = self.intr_signal = self.remember = 0
        self.hard_remove = self.use_ino = self.readdir_ino = 0
        self.direct_io = self.kernel_cache = self.auto_cache = 0
        self.no_rofd_flush = self.ac_attr_timeout_set = 0
        self.ac_attr_timeout = 0.0
        self.nullpath_ok = 0
        self.parallel_direct_writes = 0
        self.show_help = self.debug = 0
        self.modules = None


# The FUSE instance serving the current thread's request (set for the serving loop and
# copied into each handler's worker thread).
current_fuse: contextvars.ContextVar[Any] = contextvars.ContextVar("fusepy_current_fuse")


def fuse_get_context() -> tuple[int, int, int]:
    """``(uid, gid, pid)`` of the process whose request the calling handler serves."""
    ctx = request_context()
    return ctx.uid, ctx.gid, ctx.pid


def fuse_exit() -> None:
    """Unmount and make the ``FUSE(...)`` call return (like SIGINT), from a handler."""
    fuse = current_fuse.get(None)
    if fuse is None:
        raise RuntimeError("fuse_exit() is only meaningful inside a handler of a running FUSE")
    try:
        trio.from_thread.run_sync(fuse.exit)
    except RuntimeError:
        fuse.exit()  # already in the trio thread


def _nullable_dummy_function(method: F) -> F:
    """Mark a default handler as absent: the kernel's fallback is used instead."""
    method.libfuse_ignore = True  # type: ignore[attr-defined]
    return method


class Operations:
    """Base class of a filesystem: override the handlers you implement.

    Same names, arguments and defaults as fusepy's and mfusepy's ``Operations``. A
    handler you do not override is not offered to the kernel (its own fallback
    applies); one set to ``None`` counts as not overridden too.
    """

    def __call__(self, op: str, *args: Any) -> Any:
        """fusepy's dispatcher: a subclass may override it to wrap every handler."""
        if not hasattr(self, op):
            raise FuseOSError(errno.EFAULT)
        return getattr(self, op)(*args)

    @_nullable_dummy_function
    def access(self, path: str, amode: int) -> int:
        return 0

    @_nullable_dummy_function
    def bmap(self, path: str, blocksize: int, idx: Any) -> int:
        return 0

    @_nullable_dummy_function
    def chmod(self, path: str, mode: int) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def chown(self, path: str, uid: int, gid: int) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        """Return a numeric handle (with ``raw_fi``: set ``fi.fh`` and return 0)."""
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def destroy(self, path: str) -> None:
        """Called when the filesystem is unmounted. ``path`` is always ``/``."""

    @_nullable_dummy_function
    def flush(self, path: str, fh: int) -> int:
        return 0

    @_nullable_dummy_function
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return 0

    @_nullable_dummy_function
    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """Return a dict with the keys of ``struct stat`` (``st_mode``, ``st_size``...)."""
        if path != "/":
            raise FuseOSError(errno.ENOENT)
        return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}

    @_nullable_dummy_function
    def init(self, path: str) -> None:
        """Called once mounted (``path`` is ``/``)."""

    @_nullable_dummy_function
    def init_with_config(
        self, conn_info: fuse_conn_info | None, config_3: fuse_config | None
    ) -> None:
        """Like ``init``, with the connection and the libfuse 3 configuration."""

    @_nullable_dummy_function
    def ioctl(self, path: str, cmd: int, arg: Any, fh: int, flags: int, data: Any) -> int:
        raise FuseOSError(errno.ENOTTY)

    @_nullable_dummy_function
    def link(self, target: str, source: str) -> int:
        """Create hard link ``target`` to ``source`` (``ln source target``)."""
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def listxattr(self, path: str) -> Iterable[str]:
        return []

    @_nullable_dummy_function
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        raise FuseOSError(ENOTSUP)

    @_nullable_dummy_function
    def lock(self, path: str, fh: int, cmd: int, lock: Any) -> int:
        raise FuseOSError(errno.ENOSYS)

    @_nullable_dummy_function
    def mkdir(self, path: str, mode: int) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def open(self, path: str, flags: int) -> int:
        """Return a numeric handle (with ``raw_fi``: ``open(path, fi)``, set ``fi.fh``)."""
        return 0

    @_nullable_dummy_function
    def opendir(self, path: str) -> int:
        return 0

    @_nullable_dummy_function
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        raise FuseOSError(errno.EIO)

    @_nullable_dummy_function
    def readdir(self, path: str, fh: int) -> ReadDirResult:
        """Names, or ``(name, attrs, offset)`` tuples (attrs: a dict as from getattr)."""
        return [".", ".."]

    @_nullable_dummy_function
    def readdir_with_offset(self, path: str, offset: int, fh: int) -> ReadDirResult:
        """Like ``readdir``, resuming after ``offset`` (mfusepy)."""
        return [".", ".."]

    @_nullable_dummy_function
    def readlink(self, path: str) -> str:
        raise FuseOSError(errno.ENOENT)

    @_nullable_dummy_function
    def release(self, path: str, fh: int) -> int:
        return 0

    @_nullable_dummy_function
    def releasedir(self, path: str, fh: int) -> int:
        return 0

    @_nullable_dummy_function
    def removexattr(self, path: str, name: str) -> int:
        raise FuseOSError(ENOTSUP)

    @_nullable_dummy_function
    def rename(self, old: str, new: str) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def rmdir(self, path: str) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        raise FuseOSError(ENOTSUP)

    @_nullable_dummy_function
    def statfs(self, path: str) -> dict[str, int]:
        """Return a dict with the keys of ``struct statvfs``."""
        return {}

    @_nullable_dummy_function
    def symlink(self, target: str, source: str) -> int:
        """Create symlink ``target`` whose content is ``source`` (``ln -s source target``)."""
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def unlink(self, path: str) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def utimens(self, path: str, times: tuple[Any, Any] | None = None) -> int:
        """``times`` is ``(atime, mtime)`` (ns with ``use_ns``, else float seconds)."""
        return 0

    @_nullable_dummy_function
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        raise FuseOSError(errno.EROFS)

    @_nullable_dummy_function
    def poll(self, path: str, fh: int, ph: Any, reventsp: Any) -> int:
        raise FuseOSError(errno.ENOSYS)

    @_nullable_dummy_function
    def write_buf(self, path: str, buf: Any, offset: int, fh: int) -> int:
        raise FuseOSError(errno.ENOSYS)

    @_nullable_dummy_function
    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fh: int) -> int:
        raise FuseOSError(errno.ENOSYS)

    @_nullable_dummy_function
    def flock(self, path: str, fh: int, op: int) -> int:
        raise FuseOSError(errno.ENOSYS)

    @_nullable_dummy_function
    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        raise FuseOSError(errno.ENOSYS)


callback_logger = logging.getLogger("fuse.log-mixin")


def _log_method_call(method: Callable[..., Any], *args: Any) -> Any:
    callback_logger.debug("-> %s %s", method.__name__, repr(args))
    ret: Any = "[Unhandled Exception]"
    try:
        ret = method(*args)
        return ret
    except OSError as e:
        ret = str(e)
        raise
    finally:
        callback_logger.debug("<- %s %s", method.__name__, repr(ret))


class LoggingMixIn:
    """Inherit before ``Operations`` to log every handler call and result at DEBUG."""

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if (
            not name.startswith("_")
            and callable(value)
            and hasattr(Operations, name)
            and not getattr(value, "libfuse_ignore", False)
        ):
            return functools.partial(_log_method_call, value)
        return value


def log_callback(method: F) -> F:
    """Decorator: log calls of this one handler (mfusepy)."""

    def wrap_method_call(*args: Any) -> Any:
        return _log_method_call(method, *args)

    return wrap_method_call  # type: ignore[return-value]


def overrides(parent_class: type) -> Callable[[F], F]:
    """Decorator checking that the handler exists in ``parent_class`` (mfusepy)."""

    def overrider(method: F) -> F:
        assert method.__name__ in dir(parent_class), f"{method.__name__} overrides nothing"
        return method

    return overrider


def _offered(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def default(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    del default.libfuse_ignore  # type: ignore[attr-defined]  # copied by wraps
    return default


class ClassicOperations(Operations):
    """fusepy 3.0's ``Operations``: every default handler is offered to the kernel (an
    unimplemented ``chmod`` answers EROFS, ``utimens`` and ``access`` succeed...), except
    ``bmap`` and ``lock``, which fusepy sets to None. ``import fuse`` under the runner
    gets this class; ``import mfusepy`` gets :class:`Operations`, which offers only what a
    subclass overrides (mfusepy's behaviour)."""

    bmap = None  # type: ignore[assignment]
    lock = None  # type: ignore[assignment]


for _name, _value in list(vars(Operations).items()):
    if getattr(_value, "libfuse_ignore", False) and _name not in (
        "bmap", "lock", "init_with_config", "readdir_with_offset", "poll", "write_buf",
        "read_buf", "flock", "fallocate",
    ):  # fmt: skip
        setattr(ClassicOperations, _name, _offered(_value))
del _name, _value
