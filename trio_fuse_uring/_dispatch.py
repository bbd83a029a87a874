"""Where a decoded request meets the user's :class:`Operations` (the only such place).

Transports hand each request to :meth:`Dispatcher.start`, which runs the handler
*inline*, in the transport's own task, until it finishes or first blocks. Most handlers
of an in-memory or cached filesystem never block, so most requests cost no task spawn
(spawning a trio task per request measured a third of the throughput here). When a
handler does block, the transport's task *becomes* that handler's task (see
:meth:`Dispatcher.finish`) and the transport starts a fresh task to keep serving. The
task's cancel scope, entered before the handler started, is registered under the
request's ``unique`` so that FUSE_INTERRUPT can cancel exactly that handler.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import errno
import fcntl
import inspect
import logging
import math
import os
import stat
import struct
import time
import types
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from . import _abi
from . import _protocol as P
from ._abi import Opcode
from ._backing import BackingFiles, c_side
from ._types import (
    DirEntry,
    DirListing,
    EntryAttributes,
    FileInfo,
    FileRange,
    FUSEError,
    Lock,
    RequestContext,
    SetattrFields,
    StatvfsData,
)
from .ops._operations import Operations

log = logging.getLogger("trio_fuse_uring")

# A FileRange body (size set: the bytes wanted) is read from its fd by the transport.
Body = bytes | bytearray | memoryview | FileRange | None


class _NoReply(bytes):
    """Marker result: the request takes no reply (``OpcodeInfo.replies`` is False)."""


_NO_REPLY = _NoReply()
_V = _abi.SetattrValid
_ACL_ACCESS = b"system.posix_acl_access"
_ALLOWED_RENAME_FLAGS = _abi.RENAME_NOREPLACE | _abi.RENAME_EXCHANGE | _abi.RENAME_WHITEOUT
_EARLY_INTERRUPTS_MAX = 1024
_READ = int(Opcode.READ)
# Requests that take no reply: the kernel holds nothing for them, so no deadline.
_NEVER_TIMED = frozenset(
    {Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT, Opcode.NOTIFY_REPLY}
)


class Replier(Protocol):
    """What a transport offers the dispatcher: send one reply for one request."""

    def reply(self, slot: Any, unique: int, error: int, body: Body) -> None:
        """Send ``body`` (or, with ``error`` < 0, just the error) for request ``unique``."""

    def no_reply(self, slot: Any, unique: int) -> None:
        """Request ``unique`` takes no reply (FORGET, NOTIFY_REPLY...): release its slot."""

    def reply_buffer(self, slot: Any, size: int) -> memoryview:
        """A writable buffer for a reply body of up to ``size`` bytes; replying with a
        prefix of it (``buf[:n]``) sends it without another copy where possible."""


class _BadReturn(Exception):
    def __init__(self, handler: str, expected: str, value: object) -> None:
        super().__init__(
            f"handler {handler}() returned {type(value).__name__} {value!r:.80}, "
            f"it must return {expected}"
        )


class _InvalidReply(_BadReturn):
    """A well-typed reply that the kernel would refuse (and turn into EIO silently)."""

    def __init__(self, handler: str, what: str) -> None:
        Exception.__init__(self, f"handler {handler}() {what}")


_FILE_TYPES = {
    stat.S_IFREG: "a regular file",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symlink",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a fifo",
    stat.S_IFSOCK: "a socket",
}
# What the mode argument of each creating handler lacks, for the error message.
_TYPE_HINTS = {
    "mkdir": "mkdir's mode argument holds only permission bits: return "
    "st_mode=stat.S_IFDIR | (mode & ~ctx.umask)",
    "symlink": "return st_mode=stat.S_IFLNK | 0o777",
    "create": "create's mode argument includes S_IFREG: return it (with ctx.umask applied)",
    "tmpfile": "tmpfile's mode argument includes S_IFREG: return it (with ctx.umask applied)",
    "mknod": "mknod's mode argument holds the file type: return it (with ctx.umask applied)",
}
_MAX_SIZE = (1 << 63) - 1


def _check_attr(
    attr: EntryAttributes, handler: str, *, want_type: int | None = None, new: bool = False
) -> None:
    """Refuse attributes the kernel rejects (fs/fuse: fuse_invalid_attr, invalid_nodeid
    and the type check of create_new_entry), naming the handler and what is wrong."""
    mode = attr.st_mode
    ftype = stat.S_IFMT(mode)
    if ftype not in _FILE_TYPES:
        raise _InvalidReply(
            handler, f"returned st_mode {mode:#o}, which has no valid file type (add one of "
            "stat.S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK)",
        )  # fmt: skip
    if want_type is not None and ftype != want_type:
        raise _InvalidReply(
            handler, f"returned {_FILE_TYPES[ftype]} (st_mode {mode:#o}) where the kernel "
            f"needs {_FILE_TYPES.get(want_type, 'the requested type')} ({_TYPE_HINTS[handler]})",
        )  # fmt: skip
    if new and (attr.nodeid or attr.st_ino) in (0, _abi.ROOT_ID):  # the kernel's number
        raise _InvalidReply(
            handler, f"returned st_ino {attr.st_ino} for a new entry: it needs an inode "
            "number other than 0 and 1 (the root)",
        )  # fmt: skip
    if not 0 <= attr.st_size <= _MAX_SIZE:
        raise _InvalidReply(handler, f"returned st_size {attr.st_size}, outside 0..2**63-1")


def _expect(value: Any, typ: type | tuple[type, ...], handler: str, expected: str) -> Any:
    if not isinstance(value, typ):
        raise _BadReturn(handler, expected, value)
    return value


@types.coroutine
def _resume(coro: Any, msg: Any) -> Generator[Any, Any, Any]:
    """Go on driving ``coro``, which already yielded ``msg`` to trio, from this task.

    Every value and exception trio sends to this task is forwarded into ``coro``.
    """
    while True:
        try:
            value = yield msg
        except BaseException as exc:
            try:
                msg = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                msg = coro.send(value)
            except StopIteration as stop:
                return stop.value


@dataclass(slots=True)
class Blocked:
    """A handler that blocked on its first step; finish it with :meth:`Dispatcher.finish`."""

    unique: int
    coro: Any
    msg: Any
    request: P.Request
    #: trio.current_time() when the request reached the dispatcher (with a budget).
    received: float = 0.0


@dataclass
class DispatchStats:
    """Counters shared by all transports of one mount."""

    errors: int = 0
    handler_failures: int = 0
    invalid_replies: int = 0  # well-typed replies the kernel would refuse (answered EIO)
    interrupts: int = 0
    blocked: int = 0
    timed_out: int = 0
    per_opcode: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    """Runs handlers for decoded requests and turns their outcome into replies."""

    def __init__(
        self,
        ops: Operations,
        *,
        entry_timeout: float = 1.0,
        attr_timeout: float = 1.0,
        debug: bool = False,
        backing: BackingFiles | None = None,
    ) -> None:
        self.ops = ops
        self.backing = backing if backing is not None else BackingFiles()
        # fh -> backing fd, for the READ/WRITEs the transports leave to Python (no C
        # extension; writes that must clear set-id bits first)
        self._backing_fds = self.backing._fds
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.debug = debug
        self.stats = DispatchStats()
        # The kernel's write-back cache was negotiated: it holds written data the
        # handlers have not seen yet (set by the session after INIT).
        self.writeback_cache = False
        self._active: dict[int, trio.CancelScope] = {}
        # Request timeouts: seconds a handler may run, why, and each blocked
        # handler's deadline (trio time).
        self._budget: float | None = None
        self._budget_why = ""
        self._deadlines: dict[int, float] = {}
        self._early_interrupts: OrderedDict[int, None] = OrderedDict()
        self._retrieves: dict[int, tuple[trio.Event, list[P.NotifyReply]]] = {}
        self._read_into = _overrides(ops, "read_into")
        self._handlers: dict[int, Callable[[Any], Awaitable[Body]]] = {
            op: getattr(self, "_" + info.dispatch)
            for op, info in P.OPCODES.items()
            if info.dispatch is not None
        }

    def set_request_budget(self, seconds: float, why: str) -> None:
        """Answer (ETIMEDOUT) and cancel any handler still running ``seconds`` after its
        request arrived; ``why`` (the deadline being beaten) goes into the log."""
        self._budget = seconds
        self._budget_why = why

    # ---- the hand-off with transports ---------------------------------------------------

    def start(self, req: P.Request, replier: Replier, slot: Any) -> Blocked | None:
        """Run the handler for ``req`` until it finishes (returns None) or blocks.

        Must be called from a trio task whose cancel scope can be given to
        :meth:`finish`: if the handler blocks, that same task must call ``finish``.
        """
        received = 0.0 if self._budget is None else trio.current_time()
        coro = self._handle(req, replier, slot)
        try:
            msg = coro.send(None)
        except StopIteration:
            return None
        return Blocked(req.unique, coro, msg, req, received)

    async def finish(self, blocked: Blocked, scope: trio.CancelScope) -> None:
        """Drive a blocked handler to completion in the current task.

        ``scope`` is a cancel scope this task entered *before* :meth:`start`; it is what
        FUSE_INTERRUPT for this request cancels.
        """
        self.stats.blocked += 1
        unique = blocked.unique
        self._active[unique] = scope
        if self._early_interrupts.pop(unique, 0) is None:
            scope.cancel()
        if self._budget is not None and blocked.request.opcode not in _NEVER_TIMED:
            # The handler's own scope (a new one here would nest wrongly with the scopes
            # the handler entered in its first step).
            scope.deadline = self._deadlines[unique] = blocked.received + self._budget
        try:
            await _resume(blocked.coro, blocked.msg)
        finally:
            del self._active[unique]
            self._deadlines.pop(unique, None)

    async def _handle(self, req: P.Request, replier: Replier, slot: Any) -> None:
        handler = self._handlers.get(req.opcode, self._enosys)
        t0 = 0.0
        if self.debug:
            t0 = time.perf_counter()
            log.debug("rx %d: %s", req.unique, P.describe(req))
        try:
            if self._read_into and req.opcode == _READ:
                # read_into() fills the transport's own reply buffer: the one adapter
                # that needs the transport and the request's slot.
                body = await self._read_to_buffer(req, replier, slot)  # type: ignore[arg-type]
            else:
                body = await handler(req)
        except FUSEError as exc:
            error = exc.errno
            body = None
        except trio.Cancelled:
            scope = self._active.get(req.unique)
            deadline = self._deadlines.get(req.unique, math.inf)
            if scope is not None and scope.cancel_called and trio.current_time() < deadline:
                # FUSE_INTERRUPT: the caller has a signal pending, and the kernel
                # restarts what is restartable (a lock wait) after its handler ran.
                self.stats.interrupts += 1
                error, why = errno.EINTR, "interrupted"
            elif scope is not None and scope.cancel_called:
                self.stats.timed_out += 1
                error, why = errno.ETIMEDOUT, "timed out"
                log.error(
                    "handler %s() was still running %.1f s after request %d (%s) "
                    "arrived; answering ETIMEDOUT and cancelling it, because %s",
                    _handler_name(req.opcode), self._budget, req.unique, P.describe(req),
                    self._budget_why,
                )  # fmt: skip
            else:
                # The mount is shutting down. No signal is pending, so EINTR would reach
                # the caller as is, or as the kernel's internal ERESTARTSYS (errno 512)
                # from a lock wait: say what a caller sees once the daemon is gone.
                error, why = errno.ENOTCONN, "shutting down"
            replier.reply(slot, req.unique, -error, None)
            if self.debug:
                log.debug("tx %d: %s (%s)", req.unique, errno.errorcode[error], why)
            raise
        except _BadReturn as exc:
            self.stats.handler_failures += 1
            if isinstance(exc, _InvalidReply):
                self.stats.invalid_replies += 1
            log.error("%s; answering EIO to %s", exc, P.describe(req))
            error, body = errno.EIO, None
        except Exception:
            self.stats.handler_failures += 1
            log.exception(
                "handler %s() raised on request %d (%s); answering EIO",
                _handler_name(req.opcode), req.unique, P.describe(req),
            )  # fmt: skip
            error, body = errno.EIO, None
        else:
            error = 0
            if body is _NO_REPLY:
                replier.no_reply(slot, req.unique)
                return
        if error:
            self.stats.errors += 1
            replier.reply(slot, req.unique, -error, None)
        else:
            replier.reply(slot, req.unique, 0, body)
        if self.debug:
            ms = (time.perf_counter() - t0) * 1000
            if error:
                log.debug("tx %d: %s (%.3f ms)", req.unique, errno.errorcode.get(error, error), ms)
            else:
                size = f"up to {body.size}" if isinstance(body, FileRange) else len(body or b"")
                log.debug("tx %d: OK %s bytes (%.3f ms)", req.unique, size, ms)

    # ---- interrupts and retrieve ---------------------------------------------------------

    async def _interrupt(self, r: P.Interrupt) -> Body:
        scope = self._active.get(r.target)
        if scope is not None:
            scope.cancel()
        else:
            # The target may not have arrived yet (ring requests and interrupts travel
            # different paths) or may have finished already: remember a bounded number.
            self._early_interrupts[r.target] = None
            if len(self._early_interrupts) > _EARLY_INTERRUPTS_MAX:
                self._early_interrupts.popitem(last=False)
        return _NO_REPLY

    def expect_retrieve(self, notify_unique: int) -> tuple[trio.Event, list[P.NotifyReply]]:
        """Register interest in the NOTIFY_REPLY answering retrieve ``notify_unique``."""
        slot: tuple[trio.Event, list[P.NotifyReply]] = (trio.Event(), [])
        self._retrieves[notify_unique] = slot
        return slot

    def cancel_retrieve(self, notify_unique: int) -> None:
        self._retrieves.pop(notify_unique, None)

    async def _notify_reply(self, r: P.NotifyReply) -> Body:
        waiter = self._retrieves.pop(r.unique, None)
        if waiter is not None:
            waiter[1].append(r)
            waiter[0].set()
        return _NO_REPLY

    # ---- helpers -----------------------------------------------------------------------

    @staticmethod
    def _ctx(r: P.Request, umask: int = 0) -> RequestContext:
        return RequestContext(r.uid, r.gid, r.pid, umask)

    def _entry(
        self, value: Any, handler: str, want_type: int | None = None, new: bool = True
    ) -> bytes:
        _expect(value, EntryAttributes, handler, "EntryAttributes")
        if new or value.st_ino:  # st_ino 0 from lookup: a cached "no such entry"
            _check_attr(value, handler, want_type=want_type, new=new)
            if value.st_ino == _abi.ROOT_ID and value.generation:
                raise _InvalidReply(
                    handler, f"returned the root inode with generation {value.generation}: "
                    "the root's generation must be 0",
                )  # fmt: skip
        return P.encode_entry(value, self.entry_timeout, self.attr_timeout)

    def _entry_and_open(self, value: Any, handler: str) -> bytes:
        if not (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], FileInfo)
            and isinstance(value[1], EntryAttributes)
        ):
            raise _BadReturn(handler, "tuple[FileInfo, EntryAttributes]", value)
        fi, attr = value
        nodeid = attr.nodeid or attr.st_ino
        return self._entry(attr, handler, stat.S_IFREG) + self._open_reply(nodeid, fi, handler)

    def _open_reply(self, nodeid: int, fi: FileInfo, handler: str) -> bytes:
        flags, backing_id = _open_flags(fi), 0
        if fi.backing_fd is not None:
            bfd = fi.backing_fd
            if type(bfd) is not int or bfd < 0:
                raise _BadReturn(handler, "FileInfo with backing_fd None or an fd >= 0", fi)
            try:
                extra, backing_id = self.backing.opened(nodeid, fi.fh, bfd)
            except OSError as exc:
                raise _BadReturn(handler, "FileInfo whose backing_fd is an open file", fi) from exc
            flags |= extra
        return P.encode_open(fi.fh, flags, backing_id)

    async def _enosys(self, r: P.Request) -> Body:
        raise FUSEError(errno.ENOSYS)

    # ---- one adapter per request kind ------------------------------------------------------

    async def _lookup(self, r: P.Lookup) -> Body:
        attr = await self.ops.lookup(r.nodeid, r.name, self._ctx(r))
        return self._entry(attr, "lookup", new=False)

    async def _forget(self, r: P.Forget | P.BatchForget) -> Body:
        items = r.forgets if isinstance(r, P.BatchForget) else [(r.nodeid, r.nlookup)]
        try:
            await self.ops.forget(items)
        except Exception:
            log.exception("handler forget() raised (no reply is sent for FORGET)")
        return _NO_REPLY

    async def _getattr(self, r: P.Getattr) -> Body:
        attr = _expect(
            await self.ops.getattr(r.nodeid, self._ctx(r)), EntryAttributes, "getattr",
            "EntryAttributes",
        )  # fmt: skip
        _check_attr(attr, _handler_name(r.opcode))
        return P.encode_attr(attr, self.attr_timeout)

    async def _statx(self, r: P.Statx) -> Body:
        # STATX is GETATTR that can carry the creation time (EntryAttributes.st_birthtime_ns).
        attr = _expect(
            await self.ops.getattr(r.nodeid, self._ctx(r)), EntryAttributes, "getattr",
            "EntryAttributes",
        )  # fmt: skip
        return P.encode_statx(attr, self.attr_timeout)

    async def _setattr(self, r: P.Setattr) -> Body:
        v = r.valid
        f = SetattrFields()
        if v & _V.MODE:
            f.st_mode = r.mode
        if v & _V.UID:
            f.st_uid = r.setattr_uid
        if v & _V.GID:
            f.st_gid = r.setattr_gid
        if v & _V.SIZE:
            f.st_size = r.size
        if v & _V.ATIME_NOW:
            f.atime_now = True
        elif v & _V.ATIME:
            f.st_atime_ns = r.atime * 1_000_000_000 + r.atimensec
        if v & _V.MTIME_NOW:
            f.mtime_now = True
        elif v & _V.MTIME:
            f.st_mtime_ns = r.mtime * 1_000_000_000 + r.mtimensec
        if v & _V.CTIME:
            f.st_ctime_ns = r.ctime * 1_000_000_000 + r.ctimensec
        f.kill_suidgid = bool(v & _V.KILL_SUIDGID)
        attr = _expect(
            await self.ops.setattr(r.nodeid, f, r.fh, self._ctx(r)), EntryAttributes, "setattr",
            "EntryAttributes",
        )  # fmt: skip
        _check_attr(attr, _handler_name(r.opcode))
        return P.encode_attr(attr, self.attr_timeout)

    async def _readlink(self, r: P.Readlink) -> Body:
        target = await self.ops.readlink(r.nodeid, self._ctx(r))
        return bytes(_expect(target, (bytes, bytearray), "readlink", "bytes"))

    async def _symlink(self, r: P.Symlink) -> Body:
        return self._entry(
            await self.ops.symlink(r.nodeid, r.name, r.target, self._ctx(r)), "symlink",
            stat.S_IFLNK,
        )  # fmt: skip

    async def _mknod(self, r: P.Mknod) -> Body:
        ctx = self._ctx(r, r.umask)
        attr = await self.ops.mknod(r.nodeid, r.name, r.mode, r.rdev, ctx)
        return self._entry(attr, "mknod", stat.S_IFMT(r.mode) or None)

    async def _mkdir(self, r: P.Mkdir) -> Body:
        ctx = self._ctx(r, r.umask)
        attr = await self.ops.mkdir(r.nodeid, r.name, r.mode, ctx)
        return self._entry(attr, "mkdir", stat.S_IFDIR)

    async def _unlink(self, r: P.Unlink) -> Body:
        await self.ops.unlink(r.nodeid, r.name, self._ctx(r))
        return None

    async def _rmdir(self, r: P.Rmdir) -> Body:
        await self.ops.rmdir(r.nodeid, r.name, self._ctx(r))
        return None

    async def _rename(self, r: P.Rename) -> Body:
        if r.flags & ~_ALLOWED_RENAME_FLAGS:
            raise FUSEError(errno.EINVAL)
        await self.ops.rename(r.nodeid, r.name, r.newdir, r.newname, r.flags, self._ctx(r))
        return None

    async def _link(self, r: P.Link) -> Body:
        return self._entry(
            await self.ops.link(r.oldnodeid, r.nodeid, r.newname, self._ctx(r)), "link"
        )

    async def _open(self, r: P.Open) -> Body:
        if r.open_flags & _abi.OPEN_KILL_SUIDGID:
            await self._kill_suidgid(r, None)
        fi = _expect(
            await self.ops.open(r.nodeid, r.flags, self._ctx(r)), FileInfo, "open", "FileInfo"
        )
        return self._open_reply(r.nodeid, fi, "open")

    async def _create(self, r: P.Create) -> Body:
        ctx = self._ctx(r, r.umask)
        if r.opcode == Opcode.TMPFILE:
            value = await self.ops.tmpfile(r.nodeid, r.mode, r.flags, ctx)
            return self._entry_and_open(value, "tmpfile")
        value = await self.ops.create(r.nodeid, r.name, r.mode, r.flags, ctx)
        return self._entry_and_open(value, "create")

    async def _read_to_buffer(self, r: P.Read, replier: Replier, slot: Any) -> Body:
        buf = replier.reply_buffer(slot, r.size)
        bfd = self._backing_fds.get(r.fh)
        if bfd is not None:
            return _read_backing(bfd, r.offset, buf)
        n = await self.ops.read_into(r.fh, r.offset, buf)
        if type(n) is FileRange:
            return _file_range(n, r.size, "read_into")
        if type(n) is not int or not 0 <= n <= r.size:
            raise _BadReturn("read_into", f"an int between 0 and {r.size}", n)
        return buf[:n]

    async def _read(self, r: P.Read) -> Body:
        bfd = self._backing_fds.get(r.fh)
        if bfd is not None:
            return _read_backing(bfd, r.offset, bytearray(r.size))
        data = await self.ops.read(r.fh, r.offset, r.size)
        if type(data) is FileRange:
            return _file_range(data, r.size, "read")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _BadReturn("read", "bytes", data)
        if len(data) > r.size:
            raise _BadReturn("read", f"at most {r.size} bytes", f"<{len(data)} bytes>")
        return data

    async def _kill_suidgid(self, r: P.Request, fh: int | None) -> None:
        # HANDLE_KILLPRIV_V2 (opt-in): the kernel leaves clearing set-id bits to us.
        await self.ops.setattr(r.nodeid, SetattrFields(kill_suidgid=True), fh, self._ctx(r))

    async def _write(self, r: P.Write) -> Body:
        if r.write_flags & _abi.WRITE_KILL_SUIDGID:
            await self._kill_suidgid(r, r.fh)
        bfd = self._backing_fds.get(r.fh)
        if bfd is not None:
            try:
                return P.encode_write(os.pwrite(bfd, r.data, r.offset))
            except OSError as exc:
                raise FUSEError(exc.errno or errno.EIO) from None
        n = await self.ops.write(r.fh, r.offset, r.data)
        if type(n) is not int or not 0 <= n <= r.size:
            raise _BadReturn("write", f"an int between 0 and {r.size}", n)
        return P.encode_write(n)

    async def _statfs(self, r: P.Statfs) -> Body:
        s = await self.ops.statfs(self._ctx(r))
        return P.encode_statfs(_expect(s, StatvfsData, "statfs", "StatvfsData"))

    async def _release(self, r: P.Release) -> Body:
        if r.release_flags & _abi.RELEASE_FLOCK_UNLOCK and _overrides(self.ops, "flock"):
            await self.ops.flock(r.fh, r.lock_owner, fcntl.LOCK_UN, False)
        try:
            await self.ops.release(r.fh)
        finally:
            if r.fh in self.backing:
                self.backing.released(r.fh)
        return None

    async def _fsync(self, r: P.Fsync) -> Body:
        await self.ops.fsync(r.fh, r.datasync)
        return None

    async def _setxattr(self, r: P.Setxattr) -> Body:
        ctx = self._ctx(r)
        await self.ops.setxattr(r.nodeid, r.name, r.value, r.flags, ctx)
        if r.setxattr_flags & _abi.SETXATTR_ACL_KILL_SGID and r.name == _ACL_ACCESS:
            # posix_acl: an access ACL set by someone outside the file's group without
            # CAP_FSETID drops set-group-ID (the kernel's posix_acl_update_mode); the
            # kernel leaves that to the filesystem and says so with this flag.
            attr = await self.ops.getattr(r.nodeid, ctx)
            if isinstance(attr, EntryAttributes) and attr.st_mode & stat.S_ISGID:
                fields = SetattrFields(st_mode=attr.st_mode & 0o7777 & ~stat.S_ISGID)
                await self.ops.setattr(r.nodeid, fields, None, ctx)
        return None

    async def _getxattr(self, r: P.Getxattr) -> Body:
        value = await self.ops.getxattr(r.nodeid, r.name, self._ctx(r))
        _expect(value, (bytes, bytearray), "getxattr", "bytes")
        return _xattr_reply(bytes(value), r.size)

    async def _listxattr(self, r: P.Listxattr) -> Body:
        names = await self.ops.listxattr(r.nodeid, self._ctx(r))
        if isinstance(names, bytes | str) or not all(
            isinstance(n, bytes) and n and b"\0" not in n for n in names
        ):
            raise _BadReturn("listxattr", "a sequence of non-empty bytes without NUL", names)
        return _xattr_reply(b"".join(n + b"\0" for n in names), r.size)

    async def _removexattr(self, r: P.Removexattr) -> Body:
        await self.ops.removexattr(r.nodeid, r.name, self._ctx(r))
        return None

    async def _flush(self, r: P.Flush) -> Body:
        await self.ops.flush(r.fh, r.lock_owner)
        return None

    async def _opendir(self, r: P.Open) -> Body:
        fh = await self.ops.opendir(r.nodeid, self._ctx(r))
        if isinstance(fh, FileInfo):
            return P.encode_open(fh.fh, _open_flags(fh))
        if type(fh) is not int:
            raise _BadReturn("opendir", "int", fh)
        return P.encode_open(fh, 0)

    async def _readdir(self, r: P.Read) -> Body:
        plus = r.opcode == Opcode.READDIRPLUS
        buf = P.DirentBuffer(r.size, plus, self.entry_timeout, self.attr_timeout)
        it: Any = self.ops.readdir(r.fh, r.offset, self._ctx(r))
        if inspect.iscoroutine(it):  # an `async def` that returns the whole listing
            listing = await it
            if not isinstance(listing, DirListing):
                raise _BadReturn(
                    "readdir", "a DirListing (or yield DirEntry values)", listing
                )  # fmt: skip
            return self._listing_reply(listing, r.offset, r.size, plus)
        asend = getattr(it, "asend", None)
        if asend is None and not hasattr(it, "__anext__"):
            raise _BadReturn("readdir", "an async iterator of DirEntry (use yield)", it)
        try:
            entry = await it.__anext__()
            while True:
                if not isinstance(entry, DirEntry) or not isinstance(entry.name, bytes):
                    raise _BadReturn("readdir", "DirEntry values with bytes names", entry)
                name, given = entry.name, entry.attr
                dots = name == b"." or name == b".."
                attr: EntryAttributes | None
                if isinstance(given, EntryAttributes):
                    attr, ino, mode = given, given.st_ino, given.st_mode
                elif callable(given):
                    # Lazy attributes: only a readdirplus entry needs them.
                    attr, ino, mode = None, entry.ino, entry.mode
                    if plus and not dots:
                        with contextlib.suppress(FUSEError):  # then: no attributes, no lookup
                            attr = _expect(
                                given(), EntryAttributes, "readdir",
                                "DirEntry.attr() -> EntryAttributes",
                            )  # fmt: skip
                            ino, mode = attr.st_ino, attr.st_mode
                else:
                    raise _BadReturn(
                        "readdir", "DirEntry.attr as EntryAttributes or a function", entry
                    )
                try:
                    fits = buf.add_raw(name, ino, mode, entry.next_id, attr if plus else None)
                except ValueError as exc:
                    raise _BadReturn("readdir", "DirEntry with a valid name", entry) from exc
                except struct.error as exc:
                    raise _BadReturn("readdir", "DirEntry with in-range numbers", entry) from exc
                if not fits:
                    break
                counted = plus and attr is not None and not dots
                entry = await (asend(counted) if asend is not None else it.__anext__())
        except StopAsyncIteration:
            pass
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        return buf.getvalue()

    def _listing_reply(self, listing: DirListing, start: int, size: int, plus: bool) -> Body:
        """The entries of ``listing`` from index ``start`` on that fit in ``size``."""
        n = len(listing.names)
        if start >= n:
            return None
        if plus and listing.attr is not None:
            return self._listing_plus(listing, start, size)
        enc = listing._encoded.get(plus)
        if enc is None:
            enc = listing._encoded[plus] = _encode_listing(listing, plus)
        blob, pos = enc
        begin = pos[start]
        end = bisect.bisect_right(pos, begin + size, start) - 1
        return memoryview(blob)[begin : pos[end]]

    def _listing_plus(self, listing: DirListing, start: int, size: int) -> Body:
        """READDIRPLUS with attributes: ``attr(i)`` for each entry that fits."""
        assert listing.attr is not None
        buf = P.DirentBuffer(size, True, self.entry_timeout, self.attr_timeout)
        names, inos, modes, get = listing.names, listing.inos, listing.modes, listing.attr
        for i in range(start, len(names)):
            name = names[i]
            if type(name) is not bytes:
                raise _BadReturn("readdir", "a DirListing of bytes names", name)
            if not buf.fits(len(name)):
                break
            attr: EntryAttributes | None = None
            ino, mode = inos[i], modes[i]
            if name != b"." and name != b"..":
                with contextlib.suppress(FUSEError):  # then: no attributes, no lookup
                    attr = _expect(get(i), EntryAttributes, "readdir", "DirListing.attr(i)")
                    ino, mode = attr.st_ino, attr.st_mode
            try:
                buf.add_raw(name, ino, mode, i + 1, attr)
            except (ValueError, struct.error) as exc:
                raise _BadReturn(
                    "readdir", "a DirListing of valid names and numbers", name
                ) from exc
        return buf.getvalue()

    async def _releasedir(self, r: P.Release) -> Body:
        await self.ops.releasedir(r.fh)
        return None

    async def _fsyncdir(self, r: P.Fsync) -> Body:
        await self.ops.fsyncdir(r.fh, r.datasync)
        return None

    async def _getlk(self, r: P.Lk) -> Body:
        lock = await self.ops.getlk(r.fh, r.owner, Lock(r.start, r.end, r.type, r.lock_pid))
        _expect(lock, Lock, "getlk", "Lock")
        return P.encode_lock(lock.start, lock.end, lock.type, lock.pid)

    async def _setlk(self, r: P.Lk) -> Body:
        wait = r.opcode == Opcode.SETLKW
        if r.lk_flags & _abi.LK_FLOCK:
            op = {fcntl.F_RDLCK: fcntl.LOCK_SH, fcntl.F_WRLCK: fcntl.LOCK_EX}.get(
                r.type, fcntl.LOCK_UN
            )
            await self.ops.flock(r.fh, r.owner, op, wait)
        else:
            await self.ops.setlk(r.fh, r.owner, Lock(r.start, r.end, r.type, r.lock_pid), wait)
        return None

    async def _access(self, r: P.Access) -> Body:
        await self.ops.access(r.nodeid, r.mask, self._ctx(r))
        return None

    async def _bmap(self, r: P.Bmap) -> Body:
        block = await self.ops.bmap(r.nodeid, r.blocksize, r.block)
        return P.encode_u64(_expect(block, int, "bmap", "int"))

    async def _destroy(self, r: P.Destroy) -> Body:
        await self.ops.destroy()
        return None

    async def _ioctl(self, r: P.Ioctl) -> Body:
        if r.flags & _abi.IOCTL_UNRESTRICTED:
            raise FUSEError(errno.ENOSYS)
        value = await self.ops.ioctl(r.fh, r.cmd, r.arg, r.data, r.out_size, r.flags)
        if not (
            isinstance(value, tuple)
            and len(value) == 2
            and type(value[0]) is int
            and isinstance(value[1], bytes)
            and len(value[1]) <= r.out_size
        ):
            raise _BadReturn("ioctl", f"tuple[int, bytes of at most {r.out_size}]", value)
        return P.encode_ioctl(value[0], value[1])

    async def _poll(self, r: P.Poll) -> Body:
        kh = r.kh if r.flags & _abi.POLL_SCHEDULE_NOTIFY else None
        revents = await self.ops.poll(r.fh, r.events, kh)
        return P.encode_poll(_expect(revents, int, "poll", "int"))

    async def _fallocate(self, r: P.Fallocate) -> Body:
        await self.ops.fallocate(r.fh, r.mode, r.offset, r.length)
        return None

    async def _lseek(self, r: P.Lseek) -> Body:
        if self.writeback_cache:
            # The kernel sends LSEEK without writing back the data it caches, so a
            # handler would answer from stale sizes and holes (SEEK_DATA past data
            # that is still in the page cache: a sparse-aware copy would skip it).
            # ENOSYS makes the kernel stop asking and treat the file as all data,
            # which is always correct.
            if _overrides(self.ops, "lseek"):  # once: the kernel stops asking
                log.info(
                    "SEEK_DATA/SEEK_HOLE are answered by the kernel (the whole file is "
                    "data): with writeback_cache, lseek() would not see the data the "
                    "kernel caches"
                )
            raise FUSEError(errno.ENOSYS)
        off = await self.ops.lseek(r.fh, r.offset, r.whence)
        if type(off) is not int or off < 0:
            raise _BadReturn("lseek", "a non-negative int", off)
        return P.encode_u64(off)

    async def _copy_file_range(self, r: P.CopyFileRange) -> Body:
        n = await self.ops.copy_file_range(
            r.fh_in, r.off_in, r.fh_out, r.off_out, r.length, r.flags
        )
        if type(n) is not int or not 0 <= n <= r.length:
            raise _BadReturn("copy_file_range", f"an int between 0 and {r.length}", n)
        return P.encode_u64(n) if r.wide else P.encode_write(min(n, 0xFFFFFFFF))

    async def _syncfs(self, r: P.Syncfs) -> Body:
        await self.ops.syncfs()
        return None


def _encode_listing(listing: DirListing, plus: bool) -> tuple[bytes, Sequence[int]]:
    """Every entry of ``listing`` as READDIR (or attribute-less READDIRPLUS) records,
    and where each starts (``n + 1`` offsets), encoded in one C call."""
    n = len(listing.names)
    try:
        names = b"\0".join(listing.names) + b"\0"
        inos = array.array("Q", listing.inos)
        modes = array.array("I", listing.modes)
    except (TypeError, OverflowError) as exc:
        raise _BadReturn(
            "readdir", "a DirListing of bytes names, inode numbers and modes", exc
        ) from None  # fmt: skip
    pos = array.array("Q", bytes(8 * (n + 1)))
    c = c_side()
    if c is None:  # no C extension: the same records, packed in Python
        return _encode_listing_py(listing, plus, pos)
    ffi, lib = c
    bad = ffi.new("uint32_t *")
    args = (
        names, len(names), ffi.from_buffer("uint64_t[]", inos),
        ffi.from_buffer("uint32_t[]", modes), n, 0, int(plus),
    )  # fmt: skip
    need = lib.tfu_dirents_encode(*args, ffi.NULL, 0, ffi.from_buffer("uint64_t[]", pos), bad)
    if need < 0:
        raise _BadReturn(
            "readdir", "a DirListing of names without '/' or NUL, 1 to 1024 bytes long",
            listing.names[min(bad[0], n - 1)],
        )  # fmt: skip
    blob = bytearray(need)
    lib.tfu_dirents_encode(*args, ffi.from_buffer(blob), need, ffi.NULL, bad)
    return bytes(blob), pos


def _encode_listing_py(
    listing: DirListing, plus: bool, pos: array.array[int]
) -> tuple[bytes, Sequence[int]]:
    out = []
    at = 0
    for i, name in enumerate(listing.names):
        buf = P.DirentBuffer(P.dirent_size(len(name), plus), plus)
        try:
            buf.add_raw(name, listing.inos[i], listing.modes[i], i + 1, None)
        except (ValueError, struct.error) as exc:
            raise _BadReturn("readdir", "a DirListing of valid names", name) from exc
        rec = bytes(buf.getvalue())
        pos[i] = at
        at += len(rec)
        out.append(rec)
    pos[len(listing.names)] = at
    return b"".join(out), pos


def _read_backing(fd: int, offset: int, buf: memoryview | bytearray) -> Body:
    """A READ on a backed handle that the transport left to Python (no C extension, or
    it arrived while the handle had no backing and was attached since): read it now.
    Not a FileRange: the queue thread might read it later, after a detach closed ``fd``."""
    try:
        n = os.preadv(fd, (buf,), offset)
    except OSError as exc:
        raise FUSEError(exc.errno or errno.EIO) from None
    return memoryview(buf)[:n]


def _xattr_reply(value: bytes, size: int) -> bytes:
    """Size probes (``size == 0``) get the length; a too-small buffer gets ERANGE."""
    if size == 0:
        return P.encode_xattr_size(len(value))
    if len(value) > size:
        raise FUSEError(errno.ERANGE)
    return value


def _open_flags(fi: FileInfo) -> int:
    F = _abi.OpenFlag
    flags = 0
    if fi.direct_io:
        flags |= F.DIRECT_IO
    if fi.keep_cache:
        flags |= F.KEEP_CACHE
    if fi.nonseekable:
        flags |= F.NONSEEKABLE
    if fi.cache_dir:
        flags |= F.CACHE_DIR
    if fi.parallel_direct_writes:
        flags |= F.PARALLEL_DIRECT_WRITES
    if fi.noflush:
        flags |= F.NOFLUSH
    return int(flags)


def _handler_name(opcode: int) -> str:
    info = P.OPCODES.get(opcode)
    if info is None:
        return f"opcode {opcode}"
    return info.handler or info.opcode.name.lower()


def _file_range(fr: FileRange, size: int, handler: str) -> FileRange:
    """``fr`` checked, with the request's size as its upper bound."""
    fd, off = fr.fd, fr.offset
    if type(fd) is not int or fd < 0 or type(off) is not int or off < 0:
        raise _BadReturn(handler, "a FileRange of an fd >= 0 and an offset >= 0", fr)
    if fr.size is not None and (type(fr.size) is not int or fr.size < 0):
        raise _BadReturn(handler, "a FileRange whose size is None or >= 0", fr)
    if fr.size is not None and fr.size < size:
        size = fr.size
    return FileRange(fd, off, size)


def _overrides(ops: Operations, name: str) -> bool:
    """True if ``ops``'s class implements ``name`` itself rather than inheriting ours."""
    return getattr(type(ops), name, None) is not getattr(Operations, name)


def check_handlers(ops: Operations) -> None:
    """Refuse handlers that could never answer: a plain ``def`` where the framework
    awaits (each request would fail with EIO), or a ``readdir`` written as a plain
    generator (it must be an async generator, or return a :class:`DirListing`).

    Raises:
        TypeError: naming every such handler and what it should be.
    """
    wrong = []
    for name, ours in vars(Operations).items():
        theirs = getattr(type(ops), name, ours)
        if name.startswith("_") or theirs is ours or not callable(ours):
            continue
        fn = inspect.unwrap(theirs)
        if not inspect.isfunction(fn):
            continue  # a callable object or a builtin: cannot tell, let it run
        if name == "readdir":
            if inspect.isgeneratorfunction(fn):  # a plain def may return either
                wrong.append(
                    "readdir() must be an async generator (async def with yield) or an "
                    "async def returning a DirListing"
                )
        elif inspect.iscoroutinefunction(ours) and not inspect.iscoroutinefunction(fn):
            wrong.append(f"{name}() must be async def")
    if wrong:
        raise TypeError(f"{type(ops).__name__}: " + "; ".join(wrong))


def capabilities(ops: Operations) -> set[str]:
    """Which handlers ``ops`` implements itself (drives INIT flags): those named in the
    opcode table, and ``flock`` (called for SETLK and RELEASE of flock(2) locks)."""
    names = {info.handler for info in P.OPCODES.values() if info.handler} | {"flock"}
    return {n for n in names if _overrides(ops, n)}
