"""The io-uring transport: requests arrive in ring entries filled by the kernel.

Some facts about FUSE-over-io-uring (Linux 6.14+; see ``_ring.h`` and the kernel's
``fs/fuse/dev_uring.c``), checked on Linux 6.18, that shape this module:

- The kernel creates one queue per *possible* CPU and routes each request to the queue
  of the CPU its caller runs on. Every queue needs at least one registered entry before
  any request is served at all, so all queues are registered together.
- An entry is a header buffer (in header, op struct, ``payload_sz``) plus a payload
  buffer. It is either in the kernel (waiting for a request) or with us (holding one
  until COMMIT_AND_FETCH sends the reply and waits for the next request).
- The kernel delivers a request in the context of the thread that last submitted a
  command for that entry; if that thread has exited, the request fails with ECANCELED.
  So only the C queue threads (``_ring.c``, one pinned per CPU, owning their rings for
  the whole mount) ever submit. This module never does.
- FORGET, INTERRUPT, notifications and INIT still use /dev/fuse: the /dev/fuse
  transport runs alongside for the whole mount.
- A REGISTER the kernel rejects silently switches the connection back to /dev/fuse,
  which is why a registration error is reported and served, never a hang.
- A request holds its entry until its reply, so a handler that waits holds one. Each
  queue starts with ``ring_depth`` entries and grows by one whenever a handler blocks
  (``_held_by_waiter``), up to ``ring_max_depth``; the queue thread then kicks the queue
  so that requests the kernel queued meanwhile reach the new entries (``_ring.c``).

Hand-off: queue threads put ready entries on lock-free lists and write an eventfd only
when trio said it is asleep; this task takes whole batches, runs their handlers (inline
when they do not block, like the /dev/fuse transport), writes each reply straight into
the entry's payload buffer, and wakes the queue threads once per batch. Both sides spin
for ``poll_us`` before sleeping, because waking a sleeping thread on another CPU costs
tens of microseconds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from typing import TYPE_CHECKING, Any

import trio

from . import _abi
from . import _protocol as P
from ._types import FileRange, QueueStats, RingStats
from ._uring_support import possible_cpus

if TYPE_CHECKING:
    from ._devfuse import FdHolder
    from ._dispatch import Body, Dispatcher
    from ._options import Options

from ._ring_cffi import ffi, lib  # type: ignore[import-not-found]

log = logging.getLogger("trio_fuse_uring")

_HDR_SZ = _abi.FUSE_URING_REQ_HEADER_SZ
_CHECKPOINT_EVERY = 64


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


def _check_build() -> None:
    from pathlib import Path

    header = Path(__file__).with_name("_ring.h")
    if header.exists():
        import re

        m = re.search(r'#define\s+TFU_RING_ABI_VERSION\s+"([^"]+)"', header.read_text())
        built = ffi.string(lib.tfu_ring_abi_version()).decode()
        if m and m.group(1) != built:
            raise ImportError(
                f"trio_fuse_uring._ring_cffi is stale (built {built}, source {m.group(1)}): "
                f"reinstall the package"
            )


_check_build()


HANDOFF_ENV = "TRIO_FUSE_URING_HANDOFF"


class _TokenWaker:
    """The other hand-off, kept to be measured: instead of writing the eventfd
    that trio waits on, a queue thread calls into Python (taking the GIL) and wakes the
    loop with ``TrioToken.run_sync_soon``. Chosen with ``TRIO_FUSE_URING_HANDOFF=token``;
    benchmarks/README.md has the numbers that made the eventfd the default."""

    def __init__(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.event = trio.Event()
        self.handle = ffi.new_handle(self)

    def wake(self) -> None:  # any thread
        with contextlib.suppress(trio.RunFinishedError):  # the loop already ended
            self.token.run_sync_soon(self._set)

    def _set(self) -> None:
        self.event.set()


@ffi.def_extern()  # type: ignore[untyped-decorator]
def _tfu_wake_trio(ctx: Any) -> None:
    waker: _TokenWaker = ffi.from_handle(ctx)
    waker.wake()


class RingTransport:
    """All ring queues of one connection, served by one trio task at a time."""

    name = "uring"

    def __init__(
        self,
        ring: Any,
        neg: P.Negotiated,
        dispatcher: Dispatcher,
        nr_queues: int,
        depth: int,
        poll_us: int = 50,
    ) -> None:
        self._r = ring
        self.neg = neg
        self.dispatcher = dispatcher
        self.nr_queues = nr_queues
        self.depth = depth
        self.payload_size = neg.payload_size
        n = lib.tfu_ring_entry_count(ring)
        self.max_depth = lib.tfu_ring_max_depth(ring)
        # Entries held by handlers that wait, per queue; see _held_by_waiter.
        self._waiting = bytearray(n)
        self._waiters = [0] * nr_queues
        self._wanted = [depth] * nr_queues
        self._full_warned = [False] * nr_queues
        self._headers = [
            memoryview(ffi.buffer(lib.tfu_ring_header(ring, e), _HDR_SZ)) for e in range(n)
        ]
        self._payloads: list[memoryview] = [
            memoryview(ffi.buffer(lib.tfu_ring_payload(ring, e), self.payload_size))
            for e in range(n)
        ]
        self._out = ffi.new("uint32_t[]", n)
        self._max_take = n
        self._in_batch = False
        # Queue threads spin while we hold their requests (poll_us > 0): handing each
        # reply over at once costs them no wake-up and lets them commit (the kernel's
        # copy of read data) while we handle the rest of the batch, which is what keeps
        # large reads flowing. Without polling, one wake-up per batch.
        self._flush_each = poll_us > 0
        self._closed = False
        self._nursery: trio.Nursery | None = None
        self._waker: _TokenWaker | None = None
        self.failed: str | None = None
        self._stats_at_close: RingStats | None = None
        self.requests = 0
        self.batches = 0
        self.destroyed = False  # the threads exited and the buffers are freed

    def __repr__(self) -> str:
        return (
            f"<RingTransport queues={self.nr_queues} depth={self.depth} requests={self.requests}>"
        )

    @classmethod
    def create(
        cls,
        fd: FdHolder,
        neg: P.Negotiated,
        dispatcher: Dispatcher,
        options: Options,
        *,
        backing: Any = None,
    ) -> RingTransport:
        """Allocate the queues and start their threads (nothing is registered yet).

        ``backing`` (a ``tfu_backing *``, which must outlive the ring) lets the queue
        threads answer READ and WRITE on its handles themselves.

        Raises:
            OSError: the rings or threads could not be set up (nothing is left behind).
        """
        nr_queues = len(possible_cpus())
        params = ffi.new(
            "struct tfu_ring_params *",
            {
                "fuse_fd": fd.fd,
                "nr_queues": nr_queues,
                "depth": options.ring_depth,
                "max_depth": options.ring_entries_max,
                "payload_size": neg.payload_size,
                "ring_poll_us": options.poll_us,
                "trio_poll_us": options.poll_us,
            },
        )
        tuning = ffi.new("struct tfu_ring_tuning *")
        lib.tfu_ring_default_tuning(tuning)
        if backing is not None:
            tuning.backing = backing
        waker = None
        handoff = os.environ.get(HANDOFF_ENV, "eventfd")
        if handoff == "token":
            waker = _TokenWaker()
            tuning.wake_trio = lib._tfu_wake_trio
            tuning.wake_ctx = waker.handle
        elif handoff != "eventfd":
            raise ValueError(f"{HANDOFF_ENV} must be 'eventfd' or 'token', not {handoff!r}")
        out = ffi.new("tfu_ring **")
        _check(lib.tfu_ring_create_ex(params, tuning, out), "setting up the io-uring queues")
        self = cls(out[0], neg, dispatcher, nr_queues, options.ring_depth, options.poll_us)
        self._waker = waker
        return self

    def set_mountpoint(self, path: str) -> None:
        """What the queue threads stat to kick a queue they grew (see _ring.c)."""
        _check(lib.tfu_ring_set_kick_path(self._r, os.fsencode(path)), "setting the kick path")

    def start(self) -> None:
        """Register every entry with the kernel (after the INIT reply was written).

        A REGISTER the kernel refuses turns io-uring off for the connection; requests
        then arrive on /dev/fuse, which is served anyway. ``failed`` says why.
        """
        _check(lib.tfu_ring_start(self._r), "registering the io-uring entries")
        err = lib.tfu_ring_error(self._r)
        if err:
            self.failed = f"the kernel refused ring registration: {os.strerror(-err)}"
            log.warning("%s; requests fall back to /dev/fuse", self.failed)

    # ---- replies -------------------------------------------------------------------------------

    def _held_by_waiter(self, e: int) -> None:
        """The handler of entry e waits: keep ``depth`` entries of its queue free.

        Registered late, an entry only becomes available: requests the kernel already
        queued for that CPU are handed out at the next commit on the queue. So the
        queue grows as soon as one handler waits, while its other entries still cycle,
        rather than once all of them are held.
        """
        q = e // self.max_depth
        self._waiting[e] = 1
        self._waiters[q] += 1
        want = self._waiters[q] + self.depth
        if want <= self._wanted[q]:
            return
        got = lib.tfu_ring_grow(self._r, q, want)
        if got > 0:
            self._wanted[q] = got
        if 0 <= got <= self._waiters[q] + 1 and not self._full_warned[q]:
            self._full_warned[q] = True
            log.warning(
                "io-uring queue %d: %d handlers are waiting and the queue cannot grow past "
                "%d entries (ring_max_depth); once all are held, requests from CPU %d wait "
                "in the kernel until one of them replies",
                q, self._waiters[q], got, q,
            )  # fmt: skip

    def reply(self, slot: Any, unique: int, error: int, body: Body) -> None:
        if self._closed:
            return
        if self._waiting[slot]:
            self._waiting[slot] = 0
            self._waiters[slot // self.max_depth] -= 1
        n = 0
        if isinstance(body, FileRange):  # never with an error
            size = body.size if body.size is not None else self.payload_size
            rc = lib.tfu_ring_commit_from_fd(
                self._r, slot, body.fd, body.offset, min(size, self.payload_size)
            )
            if rc < 0:
                log.error("committing the reply to %d failed: %s", unique, os.strerror(-rc))
            if self._flush_each or not self._in_batch:
                lib.tfu_ring_flush(self._r)
            return
        if not error and body:
            n = len(body)
            if n > self.payload_size:
                log.error("reply to %d is %d bytes, larger than the ring buffer", unique, n)
                error, n = -errno.EIO, 0
            else:
                payload = self._payloads[slot]
                # A prefix of reply_buffer() is already in place (read_into).
                if not (isinstance(body, memoryview) and body.obj is payload.obj):
                    payload[:n] = body
        rc = lib.tfu_ring_commit(self._r, slot, error, n)
        if rc < 0:
            log.error("committing the reply to %d failed: %s", unique, os.strerror(-rc))
        if self._flush_each or not self._in_batch:
            lib.tfu_ring_flush(self._r)

    def reply_buffer(self, slot: Any, size: int) -> memoryview:
        payload: memoryview = self._payloads[slot]
        return payload[: min(size, self.payload_size)]

    def no_reply(self, slot: Any, unique: int) -> None:
        # The entry still has to go back to the kernel, which only a commit does.
        self.reply(slot, unique, 0, None)

    # ---- serving -------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take batches of requests from the queue threads until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._loop, [])
            task_status.started()

    async def _loop(self, pending: list[int]) -> None:
        """One serving task at a time: a handler that blocks keeps this task and the
        rest of the batch goes to a new one (see _dispatch.py)."""
        assert self._nursery is not None
        r = self._r
        out = self._out
        headers = self._headers
        payloads = self._payloads
        neg = self.neg
        start = self.dispatcher.start
        decode = P.decode_ring
        take = lib.tfu_ring_take
        notify_fd = lib.tfu_ring_notify_fd(r)
        waker = self._waker
        since_checkpoint = 0
        with trio.CancelScope() as scope:
            while True:
                if pending:
                    batch, pending = pending, []
                else:
                    n = take(r, out, self._max_take, -1)
                    if n <= 0:
                        _check(n, "taking ring requests")
                        if waker is not None:
                            waker.event = trio.Event()  # before saying we sleep
                        if lib.tfu_ring_prepare_sleep(r):
                            since_checkpoint = 0
                            try:
                                if waker is None:
                                    await trio.lowlevel.wait_readable(notify_fd)
                                else:
                                    await waker.event.wait()
                            finally:
                                lib.tfu_ring_wakeup_ack(r)
                        continue
                    batch = list(out[0:n])
                    self.batches += 1
                    self.requests += n
                self._in_batch = True
                try:
                    for i, e in enumerate(batch):
                        try:
                            req = decode(headers[e], payloads[e], neg)
                        except P.ProtocolError as exc:
                            log.error("malformed request in ring entry %d: %s", e, exc)
                            self.reply(e, 0, -errno.EIO, None)
                            continue
                        blocked = start(req, self, e)
                        if blocked is not None:
                            self._held_by_waiter(e)
                            self._in_batch = False
                            lib.tfu_ring_flush(r)
                            self._nursery.start_soon(self._loop, batch[i + 1 :])
                            await self.dispatcher.finish(blocked, scope)
                            return
                finally:
                    self._in_batch = False
                lib.tfu_ring_flush(r)
                since_checkpoint += len(batch)
                if since_checkpoint >= _CHECKPOINT_EVERY:
                    since_checkpoint = 0
                    await trio.lowlevel.checkpoint()

    # ---- stats and shutdown ---------------------------------------------------------------------

    def stats(self) -> RingStats:
        if self._stats_at_close is not None:
            return self._stats_at_close
        queues: list[QueueStats] = []
        s = ffi.new("struct tfu_queue_stats *")
        total = 0
        for q in range(self.nr_queues):
            if lib.tfu_ring_stats(self._r, q, s) < 0:
                continue
            total += s.requests
            queues.append(
                {
                    "qid": q, "cpu": s.cpu, "requests": s.requests, "batches": s.batches,
                    "mean_batch": round(s.requests / s.batches, 2) if s.batches else 0.0,
                    "errors": s.errors, "sleeps": s.sleeps, "wakeups_sent": s.wakeups_sent,
                    "entries": s.registered, "kicks": s.kicks,
                    "file_reads": {"queue_thread": s.fills, "trio": s.fills_here},
                    "backing": {"reads": s.backing_reads, "writes": s.backing_writes},
                }
            )  # fmt: skip
        return {
            "requests": total,
            "batches": self.batches,
            "mean_batch": round(self.requests / self.batches, 2) if self.batches else 0.0,
            "queues": queues,
            "handoff": "eventfd" if self._waker is None else "token",
            "failed": self.failed,
        }

    async def aclose(self, *, force: bool = False) -> None:
        """Stop and join every queue thread, then free the buffers.

        Threads exit once the kernel has released all their entries (after unmount or
        abort); if that does not happen in time, or at once with ``force`` (the
        connection is still alive), their rings are torn down, which cancels the pending
        commands. Buffers are freed only after the threads exit.
        """
        if self._closed:
            return
        self._stats_at_close = self.stats()
        self._closed = True
        r = self._r
        lib.tfu_ring_stop(r, 1 if force else 0)
        rc = await trio.to_thread.run_sync(lib.tfu_ring_join, r, 10000 if force else 2000)
        if rc < 0 and not force:
            log.warning("ring queues did not drain after unmount; tearing them down")
            lib.tfu_ring_stop(r, 1)
            rc = await trio.to_thread.run_sync(lib.tfu_ring_join, r, 10000)
        if rc < 0:
            # A thread still running may touch the buffers and the ring: never free them.
            log.error("ring queue threads did not exit: %s; leaking them", os.strerror(-rc))
            return
        self._headers.clear()
        self._payloads.clear()
        lib.tfu_ring_destroy(r)
        self._r = ffi.NULL
        self.destroyed = True
