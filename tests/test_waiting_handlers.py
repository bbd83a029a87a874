"""Handlers that wait for a later request from the same CPU.

Over io-uring a request holds its ring entry until its handler replies, and the kernel
routes a request to the queue of the CPU its caller runs on. With a fixed number of
entries per queue, handlers that wait for a later request from that CPU (a reader
waiting for a writer, a lock waiting for an unlock) would hold every entry and the
request they wait for would never arrive. Queues grow instead (``ring_max_depth``).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

import pytest
import trio
from helpers import MountOps

import trio_fuse_uring as tfu

GATE = tfu.ROOT_INODE + 1
WAITERS = 12  # more than the default ring_depth (2) and than libfuse's fixed 8

# N threads pinned to one CPU read the gate file; each prints when its read returned.
_READERS = """
import os, sys, threading
os.sched_setaffinity(0, {int(sys.argv[2])})
n, stagger = int(sys.argv[3]), float(sys.argv[4])
out = []
def read():
    fd = os.open(sys.argv[1], os.O_RDONLY)
    try:
        out.append(os.pread(fd, 16, 0))
    finally:
        os.close(fd)
threads = [threading.Thread(target=read) for _ in range(n)]
for t in threads:
    t.start()
    if stagger:
        import time; time.sleep(stagger)
for t in threads:
    t.join()
assert out == [b"open"] * n, out
print("read", len(out))
"""

_WRITER = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[2])})
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"open", 0)
os.close(fd)
"""


class GateFS(tfu.Operations):
    """One file, ``gate``: a read waits until somebody writes to it."""

    def __init__(self) -> None:
        self.opened = trio.Event()
        self.waiting = 0

    def _attr(self, inode: int) -> tfu.EntryAttributes:
        if inode == tfu.ROOT_INODE:
            mode = stat.S_IFDIR | 0o755
        elif inode == GATE:
            mode = stat.S_IFREG | 0o666
        else:
            raise tfu.FUSEError(errno.ENOENT)
        return tfu.EntryAttributes(st_ino=inode, st_mode=mode, st_nlink=1, st_size=4)

    async def lookup(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        if parent_inode != tfu.ROOT_INODE or name != b"gate":
            raise tfu.FUSEError(errno.ENOENT)
        return self._attr(GATE)

    async def getattr(self, inode, ctx):  # type: ignore[no-untyped-def]
        return self._attr(inode)

    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def read(self, fh, off, size):  # type: ignore[no-untyped-def]
        self.waiting += 1
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1
        return b"open"[off : off + size]

    async def write(self, fh, off, buf):  # type: ignore[no-untyped-def]
        self.opened.set()
        return len(buf)


async def _wait_for(fs: GateFS, n: int, proc: trio.Process) -> None:
    while fs.waiting < n:
        assert proc.returncode is None, "the readers exited early"
        await trio.sleep(0.01)


@pytest.mark.parametrize("stagger", [0.05, 0.0], ids=["one-by-one", "all-at-once"])
async def test_many_handlers_wait_for_a_request_from_the_same_cpu(mount_ops: MountOps, stagger):
    fs = GateFS()
    m = await mount_ops(fs, attr_timeout=0, entry_timeout=0)
    gate = os.path.join(m.mountpoint, "gate")
    cpu = min(os.sched_getaffinity(0))
    async with trio.open_nursery() as nursery:
        readers = await nursery.start(
            trio.run_process,
            [sys.executable, "-c", _READERS, gate, str(cpu), str(WAITERS), str(stagger)],
        )  # fmt: skip
        with trio.fail_after(20):
            await _wait_for(fs, WAITERS, readers)
        t0 = time.monotonic()
        with trio.fail_after(20):
            await trio.run_process([sys.executable, "-c", _WRITER, gate, str(cpu)])
            while readers.returncode is None:
                await trio.sleep(0.01)
        assert readers.returncode == 0
        assert time.monotonic() - t0 < 10
    if m.transport == "uring":
        queue = next(q for q in m.stats()["ring"]["queues"] if q["qid"] == cpu)
        assert WAITERS < queue["entries"] <= 64, queue


async def test_a_queue_stops_growing_at_ring_max_depth_and_says_so(mount_ops, caplog):
    fs = GateFS()
    m = await mount_ops(fs, attr_timeout=0, entry_timeout=0, ring_depth=2, ring_max_depth=4)
    gate = os.path.join(m.mountpoint, "gate")
    cpu = min(os.sched_getaffinity(0))
    async with trio.open_nursery() as nursery:
        readers = await nursery.start(
            trio.run_process, [sys.executable, "-c", _READERS, gate, str(cpu), "6", "0.05"]
        )
        expected = 6 if m.transport == "devfuse" else 4  # the rest wait in the kernel
        with trio.fail_after(20):
            await _wait_for(fs, expected, readers)
        await trio.sleep(0.3)
        assert fs.waiting == expected
        fs.opened.set()  # not a request: the queue is full
        with trio.fail_after(20):
            while readers.returncode is None:
                await trio.sleep(0.01)
        assert readers.returncode == 0
    if m.transport == "uring":
        assert "(ring_max_depth)" in caplog.text
        queue = next(q for q in m.stats()["ring"]["queues"] if q["qid"] == cpu)
        assert queue["entries"] == 4
