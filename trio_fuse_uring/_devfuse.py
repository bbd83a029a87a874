"""The classic transport: requests read from, and replies written to, ``/dev/fuse``.

Some facts about /dev/fuse that this module relies on:

- One ``read`` returns exactly one request; the buffer must hold the largest request
  (``max_write`` plus headers), or the read fails with EINVAL.
- One ``write``/``writev`` sends exactly one reply or notification; it never waits for
  the client, so it does not block the event loop (notifications can, see
  ``_session._Notifier``).
- ``read`` returns ENODEV once the connection is gone (unmount or abort): that is the
  normal end of a session, not an error. A reply to a request that was interrupted
  and already answered by the kernel fails with ENOENT: harmless.
- Even when the io-uring carries the requests, INIT, FORGET, INTERRUPT and
  notifications still travel here, so this reader runs for the whole mount.

Waking a sleeping thread costs ~45 µs across CPUs on small VMs, more than handling a
request. So after a request the reader keeps reading without sleeping for a short,
bounded ``poll_us`` window: under load the next request is usually already there; an
idle mount spins at most once per wake-up.
"""

from __future__ import annotations

import errno
import io
import logging
import mmap
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from . import _backing
from . import _protocol as P
from ._abi import FUSE_IN_HEADER, FUSE_WRITE_IN
from ._types import FileRange

if TYPE_CHECKING:
    from ._dispatch import Body, Dispatcher

log = logging.getLogger("trio_fuse_uring")

#: Yield to the trio scheduler at least this often under sustained load.
_CHECKPOINT_EVERY = 32
_RETRY_READ = frozenset({errno.EINTR, errno.ENOENT})

# Buffers are page-aligned, as the io-uring ones are, so that handlers can hand them to
# files opened with O_DIRECT (which wants aligned memory on most filesystems): a
# request is read this far into its buffer so that a WRITE's data, after its two
# headers, starts on a page boundary, and a reply to a READ is built in the same
# buffer from that boundary on.
_PAGE = mmap.PAGESIZE
_DATA_AT = _PAGE
_READ_AT = _DATA_AT - FUSE_IN_HEADER.size - FUSE_WRITE_IN.size


def _aligned_buffer(size: int) -> memoryview:
    return memoryview(mmap.mmap(-1, size))


class FdHolder:
    """Owns the ``/dev/fuse`` file descriptor; closes it exactly once."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            trio.lowlevel.notify_closing(fd)
            os.close(fd)


class ConnectionGone(Exception):
    """``/dev/fuse`` reported ENODEV: the filesystem was unmounted or aborted."""


async def read_one(fd: FdHolder, size: int) -> bytes:
    """Read a single message (used for INIT, before the serving loop runs)."""
    while True:
        try:
            return os.read(fd.fd, size)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd.fd)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise ConnectionGone from None
            if exc.errno not in _RETRY_READ:
                raise


def write_message(fd: FdHolder, *chunks: bytes | bytearray | memoryview) -> int:
    """Write one message; returns 0 or the errno the kernel gave (never raises OSError)."""
    try:
        os.writev(fd.fd, chunks)
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


class DevFuseTransport:
    """Serves requests read from ``/dev/fuse`` (all of them, or those the ring does not
    carry: FORGET, INTERRUPT, NOTIFY_REPLY)."""

    name = "devfuse"

    def __init__(
        self,
        fd: FdHolder,
        neg: P.Negotiated,
        dispatcher: Dispatcher,
        *,
        poll_us: int = 50,
        backing: Any = None,
    ) -> None:
        self.fd = fd
        # A tfu_backing table: READ/WRITE on its handles are answered inside the read
        # call (tfu_devfuse_read), in C, and never come back to Python.
        self.backing = backing if _backing.c_side() is not None else None
        self.neg = neg
        self.dispatcher = dispatcher
        self.poll_ns = poll_us * 1000
        # the largest request, read at _READ_AT; or the largest READ reply, at _DATA_AT
        self.bufsize = max(
            _READ_AT + max(neg.max_write + 4096, 8192 + 4096), _DATA_AT + neg.payload_size
        )
        self._buffers: list[memoryview] = []
        self.requests = 0
        self.wakeups = 0
        self._nursery: trio.Nursery | None = None
        self.gone = trio.Event()

    def __repr__(self) -> str:
        return f"<DevFuseTransport fd={self.fd.fd} requests={self.requests}>"

    # ---- replies -------------------------------------------------------------------------

    def reply(self, slot: object, unique: int, error: int, body: Body) -> None:
        if isinstance(body, FileRange):
            error, body = self._read_file(slot, body)
        if error or not body:
            err = write_message(self.fd, P.reply_header(unique, error))
        else:
            err = write_message(self.fd, P.reply_header(unique, 0, len(body)), body)
        if err and err not in (errno.ENOENT, errno.ENODEV, errno.EBADF):
            log.error("writing the reply to request %d failed: %s", unique, os.strerror(err))

    def no_reply(self, slot: object, unique: int) -> None:
        pass

    def _read_file(self, slot: object, r: FileRange) -> tuple[int, memoryview]:
        # The dispatcher always sets size (the request's, or less).
        size = self.neg.payload_size if r.size is None else min(r.size, self.neg.payload_size)
        view = self.reply_buffer(slot, size)
        try:
            n = os.preadv(r.fd, (view,), r.offset)
        except OSError as exc:
            return -(exc.errno or errno.EIO), view[:0]
        return 0, view[:n]

    def reply_buffer(self, slot: object, size: int) -> memoryview:
        # slot is the buffer the READ came in: its reader holds it until the reply is sent.
        assert isinstance(slot, memoryview)
        return slot[_DATA_AT : _DATA_AT + size]

    # ---- the reading loop ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and dispatch until the connection is gone. Returns normally on ENODEV."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._reader)
            task_status.started()
            await self.gone.wait()
            nursery.cancel_scope.cancel()

    def _take_buffer(self) -> memoryview:
        return self._buffers.pop() if self._buffers else _aligned_buffer(self.bufsize)

    def _backed_reader(self, buf: memoryview) -> Callable[[memoryview], int | None]:
        """``readinto`` for ``buf[_READ_AT:]`` that answers requests on backing files
        itself, in C, with READ replies built at ``buf[_DATA_AT:]``."""
        c = _backing.c_side()
        assert c is not None
        ffi, lib = c
        table, fuse_fd, c_read = self.backing, self.fd.fd, lib.tfu_devfuse_read
        into = buf[_READ_AT:]
        req = ffi.from_buffer(into)
        size = len(into)
        reply = ffi.from_buffer(buf[_DATA_AT:])
        room = min(len(buf) - _DATA_AT, self.neg.payload_size)
        eagain = -errno.EAGAIN

        def readinto(_view: memoryview) -> int | None:
            n: int = c_read(table, fuse_fd, req, size, reply, room)
            if n >= 0:
                return n
            if n == eagain:
                return None
            raise OSError(-n, os.strerror(-n))

        return readinto

    async def _reader(self) -> None:
        """One reader at a time: if a handler blocks, this task stays with it and starts a
        new reader (see _dispatch.py for why)."""
        assert self._nursery is not None
        buf = self._take_buffer()
        into = buf[_READ_AT:]
        fd = self.fd
        # FileIO.readinto returns None on EAGAIN instead of raising: an empty poll costs
        # a syscall, not the construction of a BlockingIOError (13% of daemon CPU).
        readinto: Callable[[memoryview], int | None] = io.FileIO(
            fd.fd, "rb", closefd=False
        ).readinto
        if self.backing is not None:
            readinto = self._backed_reader(buf)
        start = self.dispatcher.start
        neg = self.neg
        poll_ns = self.poll_ns
        now_ns = time.perf_counter_ns
        with trio.CancelScope() as scope:
            since_checkpoint = 0
            spin_until = 0
            while True:
                try:
                    n = readinto(into)
                except OSError as exc:
                    if exc.errno in _RETRY_READ:
                        continue
                    if exc.errno not in (errno.ENODEV, errno.EBADF):
                        log.error("reading /dev/fuse failed: %s; ending the session", exc)
                    self.gone.set()
                    return
                if n is None:  # EAGAIN: poll a little, then sleep
                    if poll_ns:
                        now = now_ns()
                        if not spin_until:
                            spin_until = now + poll_ns
                        if now < spin_until:
                            continue
                    spin_until = since_checkpoint = 0
                    self.wakeups += 1
                    try:
                        await trio.lowlevel.wait_readable(fd.fd)
                    except (trio.ClosedResourceError, OSError):
                        self.gone.set()
                        return
                    continue
                spin_until = 0
                self.requests += 1
                try:
                    req = P.decode_devfuse(into[:n], neg)
                except P.ProtocolError as exc:
                    log.error("dropping a malformed request from /dev/fuse: %s", exc)
                    continue
                blocked = start(req, self, buf)
                if blocked is not None:
                    # This task now belongs to the handler; someone else reads.
                    self._nursery.start_soon(self._reader)
                    try:
                        await self.dispatcher.finish(blocked, scope)
                    finally:
                        self._buffers.append(buf)
                    return
                since_checkpoint += 1
                if since_checkpoint >= _CHECKPOINT_EVERY:
                    since_checkpoint = 0
                    await trio.lowlevel.checkpoint()
