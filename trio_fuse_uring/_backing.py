"""Backing files: open files whose READ and WRITE never reach Python.

A handler attaches a file of its own to the handle it returns from ``open``/``create``
(``FileInfo.backing_fd``); then the framework answers READ and WRITE on that handle with
``pread``/``pwrite`` on that file, in C (``_backing.c``): over io-uring in the queue
thread of the caller's CPU, over /dev/fuse in the reading task's read call, neither
taking the GIL nor entering the handler layer. With kernel passthrough (Linux 6.9+,
``Options(passthrough=True)``, CAP_SYS_ADMIN) the kernel itself reads and writes the
file and such requests never leave it.

The table owns a duplicate of each fd it is given, so the handler may close its own at
any time; a detach or replace waits for no read, and a read already running finishes on
the file it started with (its reference keeps that duplicate open).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
from typing import Any, NotRequired, TypedDict

from . import _abi

log = logging.getLogger("trio_fuse_uring")


@functools.cache
def c_side() -> tuple[Any, Any] | None:
    """The compiled C side ``(ffi, lib)``, imported on first use (importing the package
    must not load it), or None without the extension: backed requests are then served
    in Python."""
    try:
        from . import _ring_cffi
    except ImportError:
        return None
    return _ring_cffi.ffi, _ring_cffi.lib


class BackingStats(TypedDict):
    """Backing files (docs/backing-files.md), in :class:`MountStats`."""

    #: Open handles served from backing files by the framework, and by the kernel.
    handles: int
    passthrough_handles: int
    #: READs and WRITEs the /dev/fuse transport answered from backing files in C.
    devfuse_reads: NotRequired[int]
    devfuse_writes: NotRequired[int]
    #: Whether kernel passthrough is in use, or why not.
    passthrough: str


class BackingFiles:
    """The backing files of one mount's open files, by file handle (``fh``).

    ``FileInfo(fh=..., backing_fd=fd)`` returned from ``open``/``create`` attaches ``fd``
    to ``fh`` until that handle's ``release``; :meth:`attach` and :meth:`detach` change it
    at any other time (e.g. after replacing the file on a truncate). It is reached as
    ``InitInfo.backing`` in ``Operations.init`` and as ``Mount.backing``, and is used from
    the trio thread only.

    Every ``fh`` with a backing file must name one open file (the same ``fh`` for two
    open files would give the second one's backing to both).
    """

    def __init__(self) -> None:
        self._table: Any = None
        c = c_side()
        self._ffi: Any = None
        self._lib: Any = None
        if c is not None:
            self._ffi, self._lib = c
            out = self._ffi.new("tfu_backing **")
            rc = self._lib.tfu_backing_create(out)
            if rc < 0:
                raise OSError(-rc, f"creating the backing table: {os.strerror(-rc)}")
            self._table = out[0]
        self._fds: dict[int, int] = {}  # fh -> our duplicate (owned by the C table if any)
        self._fuse_fd = -1
        #: Kernel passthrough: None until INIT, then True (in use) or False (see reason).
        self._passthrough: bool | None = None
        self.passthrough_reason = "not asked for (Options.passthrough)"
        self._ids: dict[int, list[int]] = {}  # nodeid -> [backing id, open handles]
        self._fh_node: dict[int, int] = {}  # fh -> nodeid, for handles on a backing id
        self._closed = False
        self._served_at_close: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<BackingFiles handles={len(self._fds)} passthrough={self.passthrough}>"

    def __contains__(self, fh: object) -> bool:
        return fh in self._fds or fh in self._fh_node

    def __len__(self) -> int:
        return len(self._fds) + len(self._fh_node)

    @property
    def passthrough(self) -> bool:
        """The kernel serves backed handles itself (FUSE passthrough is in use)."""
        return bool(self._passthrough)

    def attach(self, fh: int, fd: int) -> None:
        """From now on, answer READ and WRITE on handle ``fh`` from file ``fd``.

        ``fd`` is duplicated (the caller keeps and closes its own); a backing ``fh`` had
        before is replaced. Reads and writes of ``fh`` go to the file at the offsets the
        kernel asks for. Handles opened with kernel passthrough keep the file the kernel
        was given at open (the kernel does not ask again).

        Raises:
            OSError: ``fd`` is not an open file descriptor (EBADF).
        """
        if type(fh) is not int or not 0 <= fh < 1 << 64:
            raise ValueError(f"fh must be an int in 0..2**64-1, not {fh!r}")
        dup = os.dup(fd)
        if self._table is not None:
            rc = self._lib.tfu_backing_attach(self._table, fh, dup)
            if rc < 0:
                os.close(dup)
                raise OSError(-rc, f"attaching a backing file: {os.strerror(-rc)}")
        else:
            old = self._fds.get(fh)
            if old is not None:
                os.close(old)
        self._fds[fh] = dup

    def detach(self, fh: int) -> bool:
        """Stop serving ``fh`` from its backing file; its requests reach the handlers
        again. Reads already running finish first, on the old file. Returns whether
        ``fh`` had one."""
        dup = self._fds.pop(fh, None)
        if dup is None:
            return False
        if self._table is not None:
            self._lib.tfu_backing_detach(self._table, fh)  # closes dup after the last reader
        else:
            os.close(dup)
        return True

    # ---- the framework's side ---------------------------------------------------------

    @property
    def table(self) -> Any:
        """The C table (``tfu_backing *``) the transports serve from, or None."""
        return self._table

    def fd_of(self, fh: int) -> int | None:
        """The backing fd of ``fh`` (valid until the next attach/detach), or None."""
        return self._fds.get(fh)

    def set_passthrough(self, fuse_fd: int, reason: str | None) -> None:
        """After INIT: kernel passthrough negotiated (``reason`` None) or not (why)."""
        self._fuse_fd = fuse_fd
        self._passthrough = reason is None
        if reason is not None:
            self.passthrough_reason = reason
        else:
            self.passthrough_reason = "kernel passthrough in use"

    def opened(self, nodeid: int, fh: int, fd: int) -> tuple[int, int]:
        """An ``open``/``create`` returned ``backing_fd=fd`` for handle ``fh`` of inode
        ``nodeid``: register it, and return the open reply's extra flags and backing id.

        With kernel passthrough, one backing id per inode is shared by its open handles
        (the kernel refuses two different backing files for one inode); otherwise the
        file is attached to ``fh`` for the transports.
        """
        if fh in self:
            log.warning(
                "open() returned fh=%d, which still has a backing file: every open file "
                "needs its own fh; the new file replaces the old one", fh,
            )  # fmt: skip
            self._forget_handle(fh)
        if self._passthrough:
            entry = self._ids.get(nodeid)
            if entry is None:
                bid = self._backing_open(fd)
                if bid is not None:
                    entry = self._ids[nodeid] = [bid, 0]
            if entry is not None:
                entry[1] += 1
                self._fh_node[fh] = nodeid
                return int(_abi.OpenFlag.PASSTHROUGH), entry[0]
        self.attach(fh, fd)
        return 0, 0

    def released(self, fh: int) -> None:
        """Handle ``fh`` was released: drop its backing file."""
        self._forget_handle(fh)

    def _forget_handle(self, fh: int) -> None:
        self.detach(fh)
        nodeid = self._fh_node.pop(fh, None)
        if nodeid is None:
            return
        entry = self._ids[nodeid]
        entry[1] -= 1
        if entry[1] == 0:
            del self._ids[nodeid]
            try:
                fcntl.ioctl(
                    self._fuse_fd, _abi.FUSE_DEV_IOC_BACKING_CLOSE, entry[0].to_bytes(4, "little")
                )
            except OSError as exc:
                if exc.errno not in (errno.ENODEV, errno.EBADF, errno.ENOTCONN):
                    log.warning("closing kernel backing id %d failed: %s", entry[0], exc)

    def _backing_open(self, fd: int) -> int | None:
        # A mutable buffer makes ioctl() return the call's result (the id), not the buffer.
        arg = bytearray(_abi.FUSE_BACKING_MAP.pack(fd, 0, 0))
        try:
            res = fcntl.ioctl(self._fuse_fd, _abi.FUSE_DEV_IOC_BACKING_OPEN, arg, True)
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOSYS):
                # Never going to work on this connection: say so once and stop asking.
                self._passthrough = False
                self.passthrough_reason = (
                    f"the kernel refused a backing file ({os.strerror(exc.errno or 0)}): "
                    "kernel passthrough needs CAP_SYS_ADMIN"
                    if exc.errno == errno.EPERM
                    else f"the kernel refused a backing file ({os.strerror(exc.errno or 0)})"
                )
                log.warning(
                    "%s; backing files are served by the framework instead",
                    self.passthrough_reason,
                )
            else:
                # This file only (a directory, a stacked filesystem: ELOOP...).
                log.info("no kernel passthrough for fd %d: %s", fd, exc)
            return None
        return int(res)

    def close(self) -> None:
        """Close every backing file (after the transports stopped)."""
        if self._closed:
            return
        self._closed = True
        if self._table is not None:
            self._served_at_close = self._served()  # stats() after the mount ended
            self._lib.tfu_backing_destroy(self._table)
            self._table = None
        else:
            for dup in self._fds.values():
                os.close(dup)
        self._fds.clear()
        self._ids.clear()
        self._fh_node.clear()

    def stats(self) -> BackingStats:
        """Backed handles now, requests the /dev/fuse transport served in C, and
        whether kernel passthrough is in use (or why not)."""
        out: BackingStats = {
            "handles": len(self._fds), "passthrough_handles": len(self._fh_node),
            "passthrough": self.passthrough_reason,
        }  # fmt: skip
        served = self._served() if self._table is not None else self._served_at_close
        if served is not None:
            out["devfuse_reads"], out["devfuse_writes"] = served
        return out

    def _served(self) -> tuple[int, int]:
        r = self._ffi.new("uint64_t[2]")
        self._lib.tfu_backing_devfuse_stats(self._table, r, r + 1)
        return int(r[0]), int(r[1])
