"""A mounted filesystem's life: mount, INIT, choose a transport, serve, unmount.

Everything a mount owns (tasks, ring threads, the /dev/fuse fd, the mount itself) is
created inside :func:`mount` and released before it returns, whether the body ends
normally, raises, or is cancelled. There is no global state: several mounts can share
one process and one trio loop.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from . import _deadlines, _mountlib
from . import _protocol as P
from ._abi import PASSTHROUGH_STACK_DEPTH, InitFlag
from ._backing import BackingFiles
from ._devfuse import ConnectionGone, DevFuseTransport, FdHolder, read_one, write_message
from ._dispatch import Dispatcher, capabilities, check_handlers
from ._options import Options
from ._types import FUSEError, InitInfo, MountStats
from ._uring_support import UringUnavailable, unavailable_reason
from .ops._operations import Operations

if TYPE_CHECKING:
    from ._ring import RingTransport

log = logging.getLogger("trio_fuse_uring")

#: What mount(), serve() and run() take as a mountpoint.
StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

#: How long an unmount may take before the connection is aborted instead.
UNMOUNT_TIMEOUT = 5.0
#: How long a busy mount (an open file, a process inside) is retried before it is
#: detached, and how often: a caller about to close its file gets a clean unmount.
BUSY_RETRY_FOR = 1.0
BUSY_RETRY_EVERY = 0.1
#: FUSE_NOTIFY_INC_EPOCH arrived with protocol 7.44 (Linux 6.16).
INC_EPOCH_MINOR = 44
#: Inodes per prune notification (the kernel also works through them 512 at a time).
PRUNE_BATCH = 512

_DEFAULT_WANT = (
    InitFlag.ASYNC_READ
    | InitFlag.PARALLEL_DIROPS
    | InitFlag.DO_READDIRPLUS
    | InitFlag.READDIRPLUS_AUTO
    | InitFlag.ATOMIC_O_TRUNC
    | InitFlag.EXPORT_SUPPORT
    | InitFlag.BIG_WRITES
    | InitFlag.SETXATTR_EXT
    | InitFlag.CACHE_SYMLINKS
    | InitFlag.EXPLICIT_INVAL_DATA
    | InitFlag.INIT_EXT
    | InitFlag.ASYNC_DIO
    | InitFlag.HAS_EXPIRE_ONLY
    | InitFlag.DONT_MASK
)


@dataclass(frozen=True, slots=True)
class _Choice:
    """Which transport carries the requests, and why (``Mount.transport``, ``..._reason``)."""

    name: Literal["uring", "devfuse"]
    reason: str


def _ring_wanted(asked: str, kernel_flags: int) -> tuple[bool, str]:
    """Whether to set up the io-uring for a mount, given the ``transport`` option and the
    kernel's INIT flags; else why not.

    Raises:
        UringUnavailable: ``transport="uring"`` was asked for and cannot be had.
    """
    if asked == "devfuse":
        return False, "transport='devfuse' was asked for"
    reason = unavailable_reason(kernel_flags)
    if reason is None:
        return True, ""
    if asked == "uring":
        raise UringUnavailable(f"cannot serve over io-uring: {reason}")
    log.warning("io-uring unavailable: %s; using /dev/fuse", reason)
    return False, f"io-uring unavailable: {reason}"


def init_flags_for(ops: Operations, options: Options, uring: bool) -> int:
    """The INIT flags to ask for, from the options and the handlers ``ops`` implements."""
    want = int(_DEFAULT_WANT)
    caps = capabilities(ops)
    if options.writeback_cache:
        want |= InitFlag.WRITEBACK_CACHE
    if options.posix_acl:
        want |= InitFlag.POSIX_ACL
    if options.handle_killpriv_v2:
        want |= InitFlag.HANDLE_KILLPRIV_V2
    if "getlk" in caps and "setlk" in caps:
        want |= InitFlag.POSIX_LOCKS
    if "flock" in caps:
        want |= InitFlag.FLOCK_LOCKS
    if "open" not in caps:
        want |= InitFlag.NO_OPEN_SUPPORT
    if "opendir" not in caps:
        want |= InitFlag.NO_OPENDIR_SUPPORT
    if uring:
        want |= InitFlag.OVER_IO_URING
    if options.request_timeout:
        want |= InitFlag.REQUEST_TIMEOUT
    return want


_CAP_SYS_ADMIN = 21


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def passthrough_unavailable(kernel_flags: int, options: Options, privileged: bool) -> str | None:
    """Why kernel passthrough cannot be asked for at INIT (None: it can)."""
    if not options.passthrough:
        return "not asked for (Options.passthrough)"
    if not kernel_flags & InitFlag.PASSTHROUGH:
        return "the kernel does not offer FUSE passthrough (Linux 6.9+, CONFIG_FUSE_PASSTHROUGH)"
    if options.writeback_cache:
        return "writeback_cache is on, and the kernel does not combine it with passthrough"
    if not privileged:
        return "kernel passthrough needs CAP_SYS_ADMIN, which this process does not have"
    return None


def _max_pages_limit() -> int:
    try:
        with open("/proc/sys/fs/fuse/max_pages_limit") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 256


class Mount:
    """A mounted filesystem, as yielded by :func:`mount`.

    Attributes:
        mountpoint: absolute path of the mount.
        transport: ``"uring"`` or ``"devfuse"``: what carries the requests.
        transport_reason: why that transport was chosen.
    """

    def __init__(self, session: _Session) -> None:
        if not isinstance(session, _Session):
            raise TypeError(
                "Mount objects come from `async with mount(...) as m` or "
                "`await nursery.start(serve, ...)`; they cannot be constructed"
            )
        self._s = session

    def __repr__(self) -> str:
        s = self._s
        state = "unmounted" if s.finished.is_set() else "mounted"
        return f"<trio_fuse_uring.Mount {s.mountpoint!r} {state} transport={s.transport.name}>"

    @property
    def mountpoint(self) -> str:
        """The absolute path mounted on, with symlinks resolved (as mount(2) did)."""
        return self._s.mountpoint

    @property
    def synchronous_init(self) -> bool:
        """Whether mount(2) waited for INIT (``FUSE_DEV_IOC_SYNC_INIT``, Linux 6.18, as
        root): the mount was never visible before it could serve."""
        return self._s.sync_mount is not None

    @property
    def transport(self) -> str:
        return self._s.transport.name

    @property
    def transport_reason(self) -> str:
        return self._s.transport.reason

    @property
    def backing(self) -> BackingFiles:
        """The backing files of this mount's open files (attach, replace, detach)."""
        return self._s.backing

    @property
    def options(self) -> Options:
        return self._s.options

    def stats(self) -> MountStats:
        """Counters: requests per transport, errors, blocked handlers, ring queues."""
        return self._s.stats()

    async def wait_unmounted(self) -> None:
        """Wait until the filesystem is unmounted (by anyone) or the connection aborted."""
        await self._s.finished.wait()

    # ---- notifications (never block, safe inside handlers) --------------------------------

    def invalidate_inode(
        self, inode: int, offset: int = 0, length: int = 0, *, attr_only: bool = False
    ) -> None:
        """Drop the kernel's cached attributes and data of ``inode``.

        Data in [offset, offset+length) is dropped (``length`` 0: to the end); with
        ``attr_only`` only the attributes are. Queued and sent by a background task: safe
        to call from a handler (even one for the same inode) without deadlocking.
        """
        self._s.notifier.send(P.notify_inval_inode(inode, -1 if attr_only else offset, length))

    def invalidate_entry(
        self, parent_inode: int, name: bytes, *, expire_only: bool = False
    ) -> None:
        """Drop the kernel's cached lookup of ``name`` in ``parent_inode``."""
        self._s.notifier.send(P.notify_inval_entry(parent_inode, name, expire_only))

    def notify_delete(self, parent_inode: int, inode: int, name: bytes) -> None:
        """Tell the kernel that ``name`` (inode ``inode``) was removed from ``parent_inode``."""
        self._s.notifier.send(P.notify_delete(parent_inode, inode, name))

    def notify_store(self, inode: int, offset: int, data: bytes) -> None:
        """Push ``data`` into the kernel's page cache of ``inode`` at ``offset``."""
        self._s.notifier.send(P.notify_store(inode, offset, bytes(data)))

    def invalidate_all_entries(self) -> None:
        """Drop every cached lookup at once (``FUSE_NOTIFY_INC_EPOCH``, Linux 6.16+).

        The kernel starts a new epoch; each name it cached before is looked up again on
        its next use. Open files and the cached data stay.

        Raises:
            FUSEError: ``ENOSYS`` on a kernel older than protocol 7.44 (Linux 6.16), which
                lacks the notification; ``ENOTCONN`` once the mount has ended.
        """
        if self._s.neg.minor < INC_EPOCH_MINOR:
            raise FUSEError(errno.ENOSYS)
        self._s.notifier.send(P.notify_inc_epoch())

    def prune_inodes(self, inodes: Iterable[int]) -> None:
        """Drop the kernel's unused cached names of ``inodes`` (``FUSE_NOTIFY_PRUNE``).

        Unlike :meth:`invalidate_entry` it needs no parent and name: every alias (hard
        link) of each inode goes, so the kernel may then forget the inode. Names in use
        (a process's working directory, an open path lookup) stay. Needs the kernel's
        prune notification (Linux 6.18+); where the
        kernel lacks it, a warning is logged once and nothing else happens.

        Raises:
            FUSEError: ``ENOTCONN`` once the mount has ended.
        """
        ids = [int(i) for i in inodes]
        for start in range(0, len(ids), PRUNE_BATCH):
            msg = P.notify_prune(ids[start : start + PRUNE_BATCH])
            self._s.notifier.send(msg, self._s.prune_failed)

    def notify_poll_wakeup(self, kh: int) -> None:
        """Wake ``poll()`` waiters for the kernel handle ``kh`` given to ``Operations.poll``."""
        self._s.notifier.send(P.notify_poll_wakeup(kh))

    async def notifications_sent(self) -> None:
        """Wait until the kernel has taken every notification queued so far.

        Notifications are sent in the background, so a handler that invalidates a
        cache and then replies may be answered first. Await this before returning to
        make the caller see the invalidation once its call returns. Returns at once if
        the mount stopped serving.
        """
        await self._s.notifier.drained()

    async def retrieve(self, inode: int, offset: int, size: int) -> bytes:
        """Fetch what the kernel has cached of ``inode`` in [offset, offset+size).

        Returns the bytes the kernel had (possibly fewer, or none). Raises
        ``FUSEError(ENOENT)`` if the kernel does not know the inode.
        """
        return await self._s.retrieve(inode, offset, size)


class _Notifier:
    """Writes notifications to /dev/fuse from a worker thread, in order.

    A notification can block inside the kernel until a request on the same inode is
    answered (for example invalidating an inode while a write to it is in flight); if
    the trio thread made that write, the reply could never be sent. So notifications
    are queued (never blocking the caller) and written off the event loop.
    """

    def __init__(self, fd: FdHolder) -> None:
        self.fd = fd
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, Any]](math.inf)
        self.queued = 0
        self.sent = 0  # written (or refused) by the kernel
        self._progress = trio.Event()  # set (and replaced) whenever ``sent`` grows
        self._closed = False

    def send(self, msg: bytes, on_error: Any = None) -> None:
        try:
            self._send.send_nowait((msg, on_error))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise FUSEError(errno.ENOTCONN) from None
        self.queued += 1

    async def run(self) -> None:
        async with self._recv:
            async for msg, on_error in self._recv:
                if self.fd.closed:
                    break
                err = await trio.to_thread.run_sync(write_message, self.fd, msg)
                self.sent += 1
                self._progress.set()
                self._progress = trio.Event()
                if err:
                    if on_error is not None:
                        on_error(err)
                    elif err != errno.ENOENT:
                        log.warning("notification failed: %s", os.strerror(err))

    async def drained(self) -> None:
        """Wait until every message queued so far was written (or serving ended)."""
        target = self.queued
        while self.sent < target and not self._closed and not self.fd.closed:
            await self._progress.wait()

    def close(self) -> None:
        self._send.close()
        self._closed = True
        self._progress.set()


class _Session:
    def __init__(
        self,
        ops: Operations,
        handle: _mountlib.MountHandle,
        options: Options,
        sync_mount: Callable[[], _mountlib.MountHandle] | None = None,
    ) -> None:
        self.ops = ops
        # Synchronous INIT: mount(2), still to be called (on a thread) while we answer.
        self.sync_mount = sync_mount
        self._mounted = trio.Event()
        self._mount_error: Exception | None = None
        self.options = options
        self.handle = handle
        self.mountpoint = handle.mountpoint
        self.fd = FdHolder(handle.fd)
        self.backing = BackingFiles()
        self.dispatcher = Dispatcher(
            ops,
            entry_timeout=options.entry_timeout,
            attr_timeout=options.attr_timeout,
            debug=options.debug,
            backing=self.backing,
        )
        self.notifier = _Notifier(self.fd)
        self.transport = _Choice("devfuse", "")
        self.devfuse: DevFuseTransport | None = None
        self.ring: RingTransport | None = None
        self.finished = trio.Event()
        self.initialized = False  # ops.init() returned: ops.destroy() is owed
        self._notify_ids = itertools.count(1)
        self.neg = P.Negotiated()
        self._prune_warned = False

    # ---- serving ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if self.sync_mount is not None:
                    await self._begin_sync_mount(nursery)
                try:
                    await self._init()
                except BaseException:
                    self._abort_unfinished_mount()
                    raise
                assert self.devfuse is not None
                await nursery.start(self.devfuse.serve)
                if self.sync_mount is not None:
                    # mount(2) may still send requests before it returns: served above.
                    await self._mounted.wait()
                    if self._mount_error is not None:
                        raise self._mount_error
                self._start_ring()
                if self.ring is not None:
                    await nursery.start(self.ring.serve)
                nursery.start_soon(self.notifier.run)
                log.info(
                    "serving %s over %s (%s)", self.mountpoint, self.transport.name,
                    self.transport.reason,
                )  # fmt: skip
                task_status.started()
                await self.devfuse.gone.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.notifier.close()
            if self.ring is not None:
                with trio.CancelScope(shield=True):
                    # If the kernel never ended the connection (we are being cancelled
                    # while it is still mounted), tear the rings down at once.
                    alive = self.devfuse is None or not self.devfuse.gone.is_set()
                    await self.ring.aclose(force=alive)
            if self.ring is None or self.ring.destroyed:
                # Not while a queue thread that did not exit may still use the table.
                self.backing.close()
            self.finished.set()

    async def _begin_sync_mount(self, nursery: trio.Nursery) -> None:
        """Start mount(2) on a thread; return once it attached our fd to its connection.

        Until then a read or poll of the fd would sleep in the kernel (and take the
        event loop with it), so the fd's fdinfo is watched instead; that wait is short
        and shielded, because a mount(2) left waiting for an INIT nobody answers would
        never return.
        """
        assert self.sync_mount is not None
        mount_it = self.sync_mount

        async def mount_in_thread() -> None:
            try:
                done = await trio.to_thread.run_sync(mount_it)
            except Exception as exc:
                self._mount_error = exc
            else:
                self.handle.watchdog, self.handle.watchdog_pipe = done.watchdog, done.watchdog_pipe
                self.handle.conn = done.conn
            finally:
                self._mounted.set()

        nursery.start_soon(mount_in_thread)
        with trio.CancelScope(shield=True):
            while (conn := _mountlib.installed_connection(self.fd.fd)) is None:
                if self._mounted.is_set():
                    raise self._mount_error or _mountlib.MountError(
                        errno.EIO, f"mount(2) of {self.mountpoint} did not use our /dev/fuse"
                    )
                await trio.sleep(0.001)
        self.handle.conn = conn

    def _abort_unfinished_mount(self) -> None:
        # INIT was not answered: the mount(2) waiting for it returns once the connection
        # is aborted (a synchronous INIT waits in the kernel, not for a signal).
        if self.sync_mount is not None and not self._mounted.is_set() and self.handle.conn:
            _mountlib.abort_connection(self.handle.conn)

    @property
    def connection_gone(self) -> bool:
        """The kernel ended our connection: our mount was unmounted, or aborted (dead)."""
        return self.devfuse is not None and self.devfuse.gone.is_set()

    async def destroy(self) -> None:
        """Call the handler's ``destroy()`` once if ``init()`` was called: after the last
        request and the unmount, however serving ended (an unmount, a cancelled scope, a
        signal), as libfuse does."""
        if not self.initialized:
            return
        self.initialized = False
        with trio.CancelScope(shield=True):
            try:
                await self.ops.destroy()
            except Exception:
                log.exception("handler destroy() raised")

    async def _init(self) -> None:
        """Answer INIT: choose the transport, negotiate once, set the transports up."""
        try:
            raw = await read_one(self.fd, 64 * 1024)
        except ConnectionGone:
            raise _mountlib.MountError(errno.ENODEV, "the connection closed before INIT") from None
        req = P.decode_devfuse(memoryview(raw), self.neg)
        if not isinstance(req, P.Init):
            raise P.ProtocolError(f"expected INIT, got {P.describe(req)}")
        opts = self.options
        try_ring, reason = _ring_wanted(opts.transport, req.flags)
        cfg = P.InitConfig(
            want=init_flags_for(self.ops, opts, try_ring), max_write=opts.max_write,
            max_pages=opts.max_pages, max_readahead=opts.max_readahead,
            max_background=opts.max_background, congestion_threshold=opts.congestion_threshold,
            time_gran=opts.time_gran, max_pages_limit=_max_pages_limit(),
            request_timeout=opts.request_timeout or 0,
        )  # fmt: skip
        no_passthrough = passthrough_unavailable(req.flags, opts, _has_cap_sys_admin())
        if no_passthrough is None:
            cfg.want |= InitFlag.PASSTHROUGH
            cfg.max_stack_depth = PASSTHROUGH_STACK_DEPTH
        self.neg = P.negotiate_init(req, cfg)
        self.transport = self._open_ring() if try_ring else _Choice("devfuse", reason)
        if self.ring is None:
            self.neg.flags &= ~InitFlag.OVER_IO_URING
        self.dispatcher.writeback_cache = bool(self.neg.flags & InitFlag.WRITEBACK_CACHE)
        self._apply_request_timeout(req.flags)
        if self.neg.flags & InitFlag.PASSTHROUGH:
            self.backing.set_passthrough(self.fd.fd, None)
        else:
            self.backing.set_passthrough(self.fd.fd, no_passthrough)
            if opts.passthrough:
                log.warning("%s; backing files are served by the framework", no_passthrough)
        info = InitInfo(
            major=req.major, minor=req.minor, max_readahead=req.max_readahead,
            kernel_flags=req.flags, transport=self.transport.name,
            capabilities=frozenset(f.name or "" for f in InitFlag if f & self.neg.flags),
            mount_flags=(
                _mountlib.mount_flags(self.handle.conn) if self.sync_mount is None
                # Synchronous INIT: not mounted yet; these are the flags mount(2) gets.
                else _mountlib.flags_asked(opts)
            ),
            backing=self.backing,
        )  # fmt: skip
        await self.ops.init(info)
        self.initialized = True
        self.devfuse = DevFuseTransport(
            self.fd, self.neg, self.dispatcher, poll_us=0 if self.ring else opts.poll_us,
            backing=self.backing.table,
        )  # fmt: skip
        body = P.encode_init(self.neg, cfg)
        err = write_message(self.fd, P.reply_header(req.unique, 0, len(body)), body)
        if err:
            raise _mountlib.MountError(err, f"INIT reply rejected: {os.strerror(err)}")

    def _start_ring(self) -> None:
        """Register the ring's entries (the kernel accepts them only after INIT)."""
        if self.ring is None:
            return
        assert self.devfuse is not None
        opts = self.options
        self.ring.start()
        if self.ring.failed:
            # The kernel refused the REGISTERs (known only now, after INIT): the
            # connection stays on /dev/fuse.
            if opts.transport == "uring":
                raise UringUnavailable(f"cannot serve over io-uring: {self.ring.failed}")
            self.transport = _Choice("devfuse", f"io-uring unavailable: {self.ring.failed}")
            self.devfuse.poll_ns = opts.poll_us * 1000  # it carries everything now

    def _apply_request_timeout(self, kernel_flags: int) -> None:
        """Find the kernel's deadline for replies and have the dispatcher beat it."""
        asked = self.options.request_timeout or 0
        if kernel_flags & InitFlag.REQUEST_TIMEOUT:
            # Read right before the reply that makes the kernel read them.
            default, maximum = _deadlines.read_sysctls()
            granted = asked if self.neg.flags & InitFlag.REQUEST_TIMEOUT else 0
            timeout = _deadlines.kernel_request_timeout(granted, default, maximum)
            if not timeout:
                return
            why = f"the kernel aborts the connection after {timeout} s without a reply"
            if not asked:
                why += f" (set by {_deadlines.SYSCTL_DIR}/*_request_timeout)"
            elif timeout < asked:
                why += f" (capped by {_deadlines.SYSCTL_DIR}/max_request_timeout)"
        elif asked:
            timeout = asked
            why = f"request_timeout={asked} (this kernel has no request timeouts of its own)"
        else:
            return
        budget = _deadlines.handler_budget(timeout)
        self.dispatcher.set_request_budget(budget, why)
        log.info(
            "%s: handlers still running after %.1f s are cancelled and answered ETIMEDOUT; %s",
            self.mountpoint, budget, why,
        )  # fmt: skip

    def _open_ring(self) -> _Choice:
        """Set up the io-uring (``self.ring``); the choice it leads to."""
        from ._ring import RingTransport

        try:
            self.ring = RingTransport.create(
                self.fd, self.neg, self.dispatcher, self.options, backing=self.backing.table
            )
        except OSError as exc:
            if self.options.transport == "uring":
                raise UringUnavailable(f"cannot set up the io-uring: {exc}") from exc
            reason = f"io-uring setup failed ({exc})"
            log.warning("%s; using /dev/fuse", reason)
            return _Choice("devfuse", reason)
        self.ring.set_mountpoint(self.mountpoint)
        return _Choice(
            "uring",
            f"io-uring enabled: {self.ring.nr_queues} queues x {self.options.ring_depth} "
            f"entries (up to {self.ring.max_depth} while handlers wait)",
        )

    # ---- notifications -------------------------------------------------------------------------

    def prune_failed(self, err: int) -> None:
        if err == errno.EINVAL and not self._prune_warned:
            # Kernels without it refuse the unknown notification code with EINVAL.
            self._prune_warned = True
            log.warning(
                "prune_inodes: this kernel does not support FUSE_NOTIFY_PRUNE (Linux 6.18+); "
                "use invalidate_entry() or invalidate_all_entries() instead"
            )
        elif err not in (errno.EINVAL, errno.ENOENT):
            log.warning("prune notification failed: %s", os.strerror(err))

    async def retrieve(self, inode: int, offset: int, size: int) -> bytes:
        notify_unique = next(self._notify_ids)
        event, result = self.dispatcher.expect_retrieve(notify_unique)
        failed: list[int] = []

        def on_error(err: int) -> None:
            failed.append(err)
            self.dispatcher.cancel_retrieve(notify_unique)
            event.set()

        try:
            self.notifier.send(P.notify_retrieve(notify_unique, inode, offset, size), on_error)
            await event.wait()
        finally:
            self.dispatcher.cancel_retrieve(notify_unique)
        if failed:
            raise FUSEError(failed[0])
        return result[0].data if result else b""

    # ---- stats -------------------------------------------------------------------------------

    def stats(self) -> MountStats:
        d = self.dispatcher.stats
        ring_stats = self.ring.stats() if self.ring is not None else None
        ring_requests = ring_stats["requests"] if ring_stats else 0
        devfuse_requests = self.devfuse.requests if self.devfuse else 0
        out: MountStats = {
            "transport": self.transport.name,
            "requests": {"uring": ring_requests, "devfuse": devfuse_requests},
            "errors": d.errors,
            "handler_failures": d.handler_failures,
            "invalid_replies": d.invalid_replies,
            "interrupted": d.interrupts,
            "blocked_handlers": d.blocked,
            "timed_out": d.timed_out,
            "notifications": self.notifier.sent,
            "backing": self.backing.stats(),
        }
        if self.devfuse is not None:
            out["devfuse_wakeups"] = self.devfuse.wakeups
        if ring_stats:
            out["ring"] = ring_stats
        return out

    # ---- ending -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Unmount and wait for the session to end.

        A busy mount (open files, a process inside it) is retried for
        :data:`BUSY_RETRY_FOR` seconds, then detached lazily and its connection aborted: nobody will serve it after we leave, so its users
        get ENOTCONN now rather than hanging (or retrying interrupted calls) until the
        last of them lets go. As root that is fusectl's ``abort``; otherwise closing our
        /dev/fuse fd and rings, which the caller does right after this.
        """
        if self.finished.is_set():
            return
        conn = self.handle.conn if os.geteuid() == 0 else None
        err = await trio.to_thread.run_sync(_mountlib.unmount, self.handle)
        if err == errno.EBUSY:
            with trio.move_on_after(BUSY_RETRY_FOR):
                while err == errno.EBUSY:
                    await trio.sleep(BUSY_RETRY_EVERY)
                    err = await trio.to_thread.run_sync(_mountlib.unmount, self.handle)
        if err == errno.EINVAL:
            # Not on top of the path any more (detached from outside, or another mount
            # stacked on it) yet still serving: nobody will after we leave.
            if conn is not None:
                _mountlib.abort_connection(conn)
            return  # else closing our fd and rings aborts it
        if err == errno.EBUSY:
            log.warning(
                "%s is busy; detaching it and aborting its connection (still busy after "
                "%.1f s of retries)",
                self.mountpoint, BUSY_RETRY_FOR,
            )  # fmt: skip
            await trio.to_thread.run_sync(lambda: _mountlib.unmount(self.handle, lazy=True))
            if conn is not None:
                _mountlib.abort_connection(conn)
            else:
                return  # closing our fd and rings aborts it
        with trio.move_on_after(UNMOUNT_TIMEOUT):
            await self.finished.wait()
        if not self.finished.is_set() and conn is not None:
            log.warning("connection did not end after unmount; aborting it")
            _mountlib.abort_connection(conn)


@asynccontextmanager
async def mount(
    ops: Operations, mountpoint: StrOrBytesPath, options: Options | None = None
) -> AsyncIterator[Mount]:
    """Mount ``ops`` at ``mountpoint`` and serve it while the ``async with`` body runs.

    Yields a :class:`Mount` once the kernel connection is initialized (the filesystem is
    usable from other threads and processes). On exit, normal or by exception or
    cancellation, the filesystem is unmounted and every task, thread and fd it used is
    released. If someone else unmounts it first, serving stops and the body may notice
    with :meth:`Mount.wait_unmounted`. As root on Linux 6.18+ the mount becomes visible
    only once INIT is answered (:attr:`Mount.synchronous_init`).

    Raises:
        MountError: the mount failed (the message says why and what to do).
        UringUnavailable: ``transport="uring"`` was asked for but cannot be had.
        OptionError: an option value is unsafe or out of range.
        ProtocolError: the kernel's INIT could not be understood (a kernel speaking
            another FUSE major version, or an older minor than 7.31).
        TypeError: ``ops`` is not an :class:`Operations`, ``options`` not an
            :class:`Options` or ``mountpoint`` not a path, or a handler is a plain
            ``def`` where ``async def`` is needed (the message names them).
    """
    options = _checked_options(options)
    if not isinstance(ops, Operations):
        raise TypeError(f"ops must be a trio_fuse_uring.Operations, not {type(ops).__name__}")
    check_handlers(ops)
    path = _mountpoint_arg(mountpoint)
    sync_fd = None
    if os.geteuid() == 0:  # fusermount3 opens /dev/fuse itself
        sync_fd = await trio.to_thread.run_sync(_mountlib.open_for_sync_init)
    if sync_fd is None:
        handle = await trio.to_thread.run_sync(_mountlib.mount, path, options)
        session = _Session(ops, handle, options)
    else:
        # mount(2) runs on a thread while the session answers INIT: the session owns
        # the fd from here on, and learns the rest of the handle as mounting proceeds.
        handle = _mountlib.MountHandle(os.path.realpath(path), sync_fd, via_fusermount=False)
        mount_it = functools.partial(_mountlib.mount, path, options, sync_fd=sync_fd)
        session = _Session(ops, handle, options, sync_mount=mount_it)
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(session.run)
                yield Mount(session)
            finally:
                with trio.CancelScope(shield=True):
                    await session.shutdown()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Our nursery is an implementation detail: a single error (the body's own, or
        # why mounting failed) reaches the caller as itself, not wrapped in a group.
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        raise leaf from None
    finally:
        session.fd.close()
        with trio.CancelScope(shield=True):
            # Only ours. Once the kernel ended our connection its id may belong to a new
            # mount at the same path, so then only a dead mount with our id is ours
            # (aborted through fusectl, not unmounted).
            await trio.to_thread.run_sync(_unmount_if_ours, session)
            await trio.to_thread.run_sync(_mountlib.release_helper, handle)
            await session.destroy()


def _checked_options(options: object) -> Options:
    if options is None:
        return Options()
    if not isinstance(options, Options):
        hint = (
            " (Options.parse_with_own returns (options, own): pass its first item)"
            if isinstance(options, tuple)
            else ""
        )
        raise TypeError(
            f"options must be a trio_fuse_uring.Options, not {type(options).__name__}{hint}"
        )
    return options


def _mountpoint_arg(mountpoint: object) -> str:
    """``mountpoint`` as a str path: str, bytes and os.PathLike of either are taken."""
    try:
        path = os.fspath(mountpoint)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"mountpoint must be a path (str, bytes or os.PathLike), not "
            f"{type(mountpoint).__name__}"
        ) from None
    return os.fsdecode(path)


def _unmount_if_ours(session: _Session) -> None:
    handle = session.handle
    if handle.conn is None:
        return  # never mounted (a synchronous mount(2) that failed): nothing is ours
    if session.connection_gone and not (
        _mountlib.connection_id(handle.mountpoint) == handle.conn
        and _mountlib.is_dead(handle.mountpoint)
    ):
        return
    _mountlib.unmount(handle, lazy=True)


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


async def serve(
    ops: Operations,
    mountpoint: StrOrBytesPath,
    options: Options | None = None,
    *,
    task_status: trio.TaskStatus[Mount] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Mount and serve until unmounted; for ``await nursery.start(serve, ops, path)``.

    ``task_status.started`` receives the :class:`Mount` once the filesystem is usable.
    Cancel the surrounding scope to unmount.

    Raises:
        MountError, UringUnavailable, OptionError, ProtocolError, TypeError: as
            :func:`mount`.
    """
    async with mount(ops, mountpoint, options) as m:
        task_status.started(m)
        await m.wait_unmounted()


def run(ops: Operations, mountpoint: StrOrBytesPath, options: Options | None = None) -> MountStats:
    """Mount, serve until SIGINT, SIGTERM or an unmount, then clean up; one call.

    Runs its own trio loop. Returns the mount's final :meth:`Mount.stats`.

    Raises:
        MountError, UringUnavailable, OptionError, ProtocolError, TypeError: as
            :func:`mount`.
    """
    options = _checked_options(options)
    result: list[MountStats] = []

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                serving = trio.CancelScope()

                # Keeps receiving until the mount is cleaned up: a signal left pending
                # when the receiver closes is re-raised (KeyboardInterrupt, or death by
                # SIGTERM without cleanup or stats), and a second one is common: Ctrl-C
                # pressed twice, or `timeout` and service managers that signal both the
                # process and its group.
                async def stop_on_signal() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if serving.cancel_called:
                            log.info("got %s again; still unmounting", name)
                        else:
                            log.info("got %s; unmounting", name)
                            serving.cancel()

                nursery.start_soon(stop_on_signal)
                with serving:
                    async with mount(ops, mountpoint, options) as m:
                        try:
                            await m.wait_unmounted()
                        finally:
                            result.append(m.stats())
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)  # our nurseries are not the caller's business
        if leaf is None:
            raise
        raise leaf from None
    return result[0]
