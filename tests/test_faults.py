"""Faults a deployed filesystem meets, each over both transports.

- a handler that raises on every call, for a sustained burst, while another file keeps
  being served (``FAULT_SECONDS`` sets the burst length: 60 for the full minute);
- clients SIGKILLed in the middle of large reads and writes;
- handlers that never return: interrupted callers get EINTR on every kind of request,
  and unmounting cancels the blocked handlers within a bound;
- the trio scope that owns the mount cancelled with hundreds of requests in flight;
- io-uring registration refused by the kernel half-way through setup.

(Killing the daemon itself, auto_unmount, signals and unmount under load are in
test_lifecycle.py and test_uring.py.)
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio
from hello import HELLO_DATA, HelloFS
from helpers import client, no_ring_threads, open_fds, require
from memfs import MemFS

import trio_fuse_uring as tfu
from trio_fuse_uring import _protocol
from trio_fuse_uring._mountlib import is_mountpoint

ROOT = tfu.ROOT_INODE
FAULT_SECONDS = float(os.environ.get("FAULT_SECONDS", "3"))


def _dir_attr() -> tfu.EntryAttributes:
    return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)


def _file_attr(ino: int, size: int, timeout: float = 0.0) -> tfu.EntryAttributes:
    return tfu.EntryAttributes(
        st_ino=ino, st_mode=stat.S_IFREG | 0o666, st_size=size,
        entry_timeout=timeout, attr_timeout=timeout,
    )  # fmt: skip


async def _stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            await stream.aclose()


async def _read_line(proc: trio.Process, buf: bytearray, timeout: float = 20) -> bytes:
    assert proc.stdout is not None
    with trio.fail_after(timeout):
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"client exited early: {bytes(buf)!r}")
            buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


# ---- a handler that raises on every call ------------------------------------------------------


GOOD = bytes(range(256)) * 16  # 4 KiB


class RaisingFS(tfu.Operations):
    """``bad`` raises in read on every call; ``good`` is served normally."""

    def __init__(self) -> None:
        self.bad_calls = 0

    async def getattr(self, inode, ctx):
        return _dir_attr() if inode == ROOT else _file_attr(inode, len(GOOD), 60)

    async def lookup(self, parent_inode, name, ctx):
        if name in (b"good", b"bad"):
            return _file_attr(2 if name == b"good" else 3, len(GOOD), 60)
        raise tfu.FUSEError(errno.ENOENT)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=inode, direct_io=True)  # every read reaches the handler

    async def read(self, fh, off, size):
        if fh == 3:
            self.bad_calls += 1
            raise RuntimeError(f"simulated failure #{self.bad_calls}")
        return GOOD[off : off + size]


# Two threads hammer `bad` (each read must fail with EIO), one reads `good` (each read
# must return the right bytes), for argv[2] seconds. Prints a JSON tally.
_HAMMER_BAD = """
import errno, json, os, sys, threading, time
d, seconds, good = sys.argv[1], float(sys.argv[2]), bytes(range(256)) * 16
deadline = time.monotonic() + seconds
tally = {"eio": 0, "other": [], "good": 0, "good_bad": 0, "good_max_ms": 0.0}
lock = threading.Lock()
def bad():
    fd = os.open(d + "/bad", os.O_RDONLY)
    n, other = 0, []
    while time.monotonic() < deadline:
        try:
            os.pread(fd, 4096, 0)
            other.append("read succeeded")
        except OSError as e:
            if e.errno == errno.EIO:
                n += 1
            else:
                other.append(repr(e))
    with lock:
        tally["eio"] += n
        tally["other"] += other[:5]
def ok():
    fd = os.open(d + "/good", os.O_RDONLY)
    while time.monotonic() < deadline:
        t = time.perf_counter()
        data = os.pread(fd, 4096, 0)
        tally["good_max_ms"] = max(tally["good_max_ms"], (time.perf_counter() - t) * 1000)
        tally["good" if data == good else "good_bad"] += 1
        time.sleep(0.001)
ts = [threading.Thread(target=bad) for _ in range(2)] + [threading.Thread(target=ok)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(tally))
"""


async def test_raising_handler_sustained_burst(mount_ops, transport, caplog):
    """Every read of ``bad`` raises for FAULT_SECONDS: every caller gets EIO, each failure
    is logged with the handler's name, ``good`` keeps being served correctly, and the
    mount is healthy afterwards."""
    ops = RaisingFS()
    m = await mount_ops(ops)
    with caplog.at_level(logging.ERROR, logger="trio_fuse_uring"):
        with trio.fail_after(FAULT_SECONDS + 60):
            proc = await trio.run_process(
                [sys.executable, "-c", _HAMMER_BAD, m.mountpoint, str(FAULT_SECONDS)],
                capture_stdout=True,
            )
    tally = json.loads(proc.stdout)
    assert tally["other"] == [], tally
    assert tally["good_bad"] == 0, tally
    assert tally["good"] > FAULT_SECONDS * 50, tally  # `good` was served all along
    assert tally["eio"] == ops.bad_calls  # every failure reached the caller as EIO
    assert tally["eio"] > FAULT_SECONDS * 500, tally
    failures = [r for r in caplog.records if "handler read() raised" in r.getMessage()]
    assert len(failures) == ops.bad_calls  # each one logged, naming the handler
    assert failures[-1].exc_info and "simulated failure" in str(failures[-1].exc_info[1])
    stats = m.stats()
    assert stats["handler_failures"] == ops.bad_calls
    # Still healthy: metadata and data requests are answered.
    assert await client(Path(m.mountpoint, "good").read_bytes) == GOOD
    assert (await client(os.stat, m.mountpoint)).st_ino == ROOT
    print(f"\n{transport}: {tally['eio']} EIO in {FAULT_SECONDS} s, good reads {tally['good']}")


# ---- clients killed in the middle of large reads and writes ----------------------------------


MiB = 1 << 20
BIG = 64 * MiB


def _pattern(tag: int, off: int, size: int) -> bytes:
    # Cheap, offset-dependent content: each MiB block repeats its own header.
    out = bytearray()
    while len(out) < size:
        block = (off + len(out)) // MiB
        out += (b"%08d:%08d|" % (tag, block)) * (MiB // 18) + bytes(MiB % 18)
    return bytes(out[:size])


# Writes argv[2] in 1 MiB chunks (printing each acknowledged chunk) while a second thread
# reads argv[1] in 1 MiB chunks over and over, until killed.
_VICTIM = (
    """
import os, sys, threading
MiB = 1 << 20
"""
    + inspect.getsource(_pattern)
    + """
keep, victim, tag = sys.argv[1], sys.argv[2], int(sys.argv[3])
def reader():
    fd = os.open(keep, os.O_RDONLY)
    while True:
        for off in range(0, 64 * MiB, MiB):
            os.pread(fd, MiB, off)
threading.Thread(target=reader, daemon=True).start()
fd = os.open(victim, os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(1 << 30):
    os.pwrite(fd, _pattern(tag, (i % 64) * MiB, MiB), (i % 64) * MiB)
    print(i, flush=True)
"""
)


def _write_big(path: str, tag: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for off in range(0, BIG, MiB):
            chunk = _pattern(tag, off, MiB)
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


async def test_client_killed_mid_io(mount_ops, transport):
    """SIGKILL a client while it writes a 64 MiB file and reads another, several times:
    the mount keeps serving, every acknowledged write is intact, the file written
    before is unchanged, handles are released, and the mount still serves readers."""
    fs = MemFS()
    m = await mount_ops(fs)
    keep = os.path.join(m.mountpoint, "keep")
    digest = await client(_write_big, keep, 1)

    async def parallel_reads() -> list[str]:
        digests: list[str] = []

        async def one() -> None:
            digests.append(await client(_sha256, keep))

        async with trio.open_nursery() as n:
            for _ in range(4):
                n.start_soon(one)
        return digests

    assert await parallel_reads() == [digest] * 4
    for it in range(3):
        victim = os.path.join(m.mountpoint, f"victim{it}")
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", _VICTIM, keep, victim, str(10 + it)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        buf = bytearray()
        try:
            acked = -1
            while acked < 8 + 16 * it:  # kill at a different point each time
                acked = int(await _read_line(proc, buf))
        finally:
            proc.send_signal(signal.SIGKILL)
            await _stop(proc)
        # Every acknowledged chunk is there, as written.
        size = (await client(os.stat, victim)).st_size
        assert size >= (acked + 1) * MiB
        data = await client(Path(victim).read_bytes)
        for i in range(acked + 1):
            assert data[i * MiB : (i + 1) * MiB] == _pattern(10 + it, i * MiB, MiB), i
    # The killed clients' files were released (their last references went with them).
    with trio.fail_after(30):  # RELEASE is sent asynchronously: a loaded CI takes a while
        while fs.handles:
            await trio.sleep(0.05)
    # The mount still serves concurrent readers (speed is the benchmarks' business).
    assert await parallel_reads() == [digest] * 4
    assert m._s.dispatcher._active == {}
    stats = m.stats()
    assert stats["handler_failures"] == 0
    if transport == "uring":
        assert stats["ring"]["failed"] is None
        assert all(q["errors"] == 0 for q in stats["ring"]["queues"]), stats["ring"]


# ---- handlers that never return ---------------------------------------------------------------


class HangingFS(tfu.Operations):
    """Each way in hangs in a different handler until cancelled.

    ``hang-lookup`` hangs in lookup; inode 3 (``hang-getattr``) in getattr; inode 4
    (``f``) in write; inode 5 (``hang-read``) in read; ``hang-mkdir`` in mkdir.
    """

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.cancelled: dict[str, int] = {}
        self.changed = trio.Event()
        self.release = trio.Event()

    async def _hang(self, what: str) -> None:
        self.started[what] = self.started.get(what, 0) + 1
        self.changed.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled[what] = self.cancelled.get(what, 0) + 1
            self.changed.set()
            raise

    async def wait_started(self, n: int, timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while sum(self.started.values()) < n:
                self.changed = trio.Event()
                await self.changed.wait()

    async def getattr(self, inode, ctx):
        if inode == ROOT:
            return _dir_attr()
        if inode == 3:
            await self._hang("getattr")
        return _file_attr(inode, 4096)

    async def lookup(self, parent_inode, name, ctx):
        if name == b"hang-lookup":
            await self._hang("lookup")
        ino = {b"hang-getattr": 3, b"f": 4, b"hang-read": 5}.get(name)
        if ino is None:
            raise tfu.FUSEError(errno.ENOENT)
        # hang-getattr's entry is cached, its attributes are not: stat() sends GETATTR.
        return _file_attr(ino, 4096, 0.0) if ino == 3 else _file_attr(ino, 4096, 60)

    async def mkdir(self, parent_inode, name, mode, ctx):
        await self._hang("mkdir")
        raise tfu.FUSEError(errno.EIO)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def read(self, fh, off, size):
        if fh == 5:
            await self._hang("read")
        return b"x" * size

    async def write(self, fh, off, buf):
        await self._hang("write")
        return len(buf)


# Runs one libc call that the filesystem never answers, after the no-op SIGUSR1 handler
# (no SA_RESTART) is set: prints the errno the call failed with.
_HANG_CLIENT = """
import ctypes, errno, os, signal, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
libc = ctypes.CDLL(None, use_errno=True)
mnt, op = sys.argv[1], sys.argv[2]
buf = ctypes.create_string_buffer(4096)
st = ctypes.create_string_buffer(256)
if op in ("write", "read"):
    fd = os.open(mnt + ("/f" if op == "write" else "/hang-read"), os.O_RDWR)
    print("ready", flush=True)
    rc = libc.write(fd, buf, 4096) if op == "write" else libc.read(fd, buf, 4096)
else:
    print("ready", flush=True)
    if op == "mkdir":
        rc = libc.mkdir((mnt + "/newdir").encode(), 0o755)
    else:
        rc = libc.stat((mnt + "/hang-" + op).encode(), st)
err = ctypes.get_errno()
print(errno.errorcode.get(err, err) if rc < 0 else f"rc={rc}", flush=True)
"""

HANG_OPS = ["lookup", "getattr", "read", "write", "mkdir"]
# A hung lookup holds the directory's lock shared and a hung mkdir holds it exclusively,
# so those two cannot hang at once in one directory; the kernel also serializes direct
# writes to one file and concurrent lookups of one name.
UNMOUNT_HANG_OPS = ["read", "read", "read", "write", "getattr", "getattr", "lookup"]


async def test_interrupted_callers_get_eintr(mount_ops):
    """A signal interrupts a caller stuck in any kind of request: the handler is
    cancelled and the syscall fails with EINTR (reads are in test_session.py too)."""
    ops = HangingFS()
    m = await mount_ops(ops)
    for i, op in enumerate(HANG_OPS):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", _HANG_CLIENT, m.mountpoint, op], stdout=subprocess.PIPE
        )
        buf = bytearray()
        try:
            assert await _read_line(proc, buf) == b"ready"
            await ops.wait_started(i + 1)
            assert ops.started == dict.fromkeys(HANG_OPS[: i + 1], 1)
            proc.send_signal(signal.SIGUSR1)
            result = await _read_line(proc, buf)
        finally:
            await _stop(proc)
        assert result == b"EINTR", (op, result)
        assert ops.cancelled.get(op) == 1, (op, ops.cancelled)
    assert m.stats()["interrupted"] >= len(HANG_OPS)
    assert m._s.dispatcher._active == {}
    # Still serving.
    assert (await client(os.stat, Path(m.mountpoint, "f"))).st_size == 4096


async def test_unmount_cancels_blocked_handlers(tmp_path, transport):
    """Leaving the mount's context while callers are stuck in never-returning handlers
    (several kinds): the unmount finishes within the bound, every handler sees Cancelled,
    and the callers get an error instead of hanging.

    The callers keep the mount busy, so it is detached lazily and, once UNMOUNT_TIMEOUT
    (5 s) passes without the connection ending, aborted: that is the bound.
    """
    ops = HangingFS()
    path = tmp_path / "m"
    path.mkdir()
    procs: list[trio.Process] = []
    try:
        async with tfu.mount(ops, path, tfu.Options(transport=transport)):
            # One at a time, so that each reaches its handler before the next starts.
            for i, op in enumerate(UNMOUNT_HANG_OPS):
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-c", _HANG_CLIENT, str(path), op], stdout=subprocess.PIPE
                )
                procs.append(proc)
                await ops.wait_started(i + 1)
            t0 = time.monotonic()
        elapsed = time.monotonic() - t0
        assert not is_mountpoint(str(path))
        assert ops.cancelled == ops.started, (ops.started, ops.cancelled)
        # A bound against hangs, not a timing: a busy mount's connection is aborted at
        # once, instead of waiting for blocked handlers (about 0.1 s here).
        assert elapsed < 10, elapsed
        print(f"\n{transport}: unmount with {len(procs)} blocked handlers took {elapsed:.2f} s")
        results = []
        with trio.fail_after(10):
            for proc in procs:
                buf = bytearray()
                assert await _read_line(proc, buf) == b"ready"
                results.append(await _read_line(proc, buf))
        # Answered EINTR while the connection lived, else the connection's end.
        assert set(results) <= {b"EINTR", b"ENOTCONN", b"ECONNABORTED", b"ENODEV"}, results
    finally:
        for proc in procs:
            await _stop(proc)
    await no_ring_threads()


# ---- cancelling the scope that owns the mount, hundreds of requests in flight -----------------


class WaitingFS(tfu.Operations):
    """Every read of ``f`` waits for an Event that is never set."""

    def __init__(self) -> None:
        self.waiting = 0
        self.cancelled = 0
        self.never = trio.Event()

    async def getattr(self, inode, ctx):
        return _dir_attr() if inode == ROOT else _file_attr(2, 4096, 60)

    async def lookup(self, parent_inode, name, ctx):
        if name != b"f":
            raise tfu.FUSEError(errno.ENOENT)
        return _file_attr(2, 4096, 60)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=2, direct_io=True)

    async def read(self, fh, off, size):
        self.waiting += 1
        try:
            await self.never.wait()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        return b""


# argv[2] threads each open the file and read it (all block in the handler); each
# prints how its read ended.
_MANY_READERS = """
import ctypes, errno, os, sys, threading
path, n = sys.argv[1], int(sys.argv[2])
results, lock = [], threading.Lock()
libc = ctypes.CDLL(None, use_errno=True)
def one():
    # libc's pread: Python's os.pread would retry after EINTR (PEP 475).
    fd = os.open(path, os.O_RDONLY)
    buf = ctypes.create_string_buffer(4096)
    rc = libc.pread(fd, buf, ctypes.c_size_t(4096), ctypes.c_long(0))
    r = "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    with lock:
        results.append(r)
ts = [threading.Thread(target=one) for _ in range(n)]
for t in ts: t.start()
print("started", flush=True)
for t in ts: t.join()
print(" ".join(sorted(set(results))), len(results), flush=True)
"""

IN_FLIGHT = 200


async def test_cancel_owner_scope_with_hundreds_in_flight(tmp_path, transport):
    """200 reads blocked in handlers when the scope that owns the mount is cancelled:
    everything unwinds within a bound, every handler is cancelled, every caller gets an
    answer, and no thread, fd or mount is left."""
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = open_fds()
    ops = WaitingFS()
    path = tmp_path / "m"
    path.mkdir()
    # Enough ring entries that all 200 requests reach handlers (the default 8 per CPU
    # would leave the rest queued in the kernel); small buffers keep that cheap.
    options = tfu.Options(transport=transport, ring_depth=256, max_write=32768, max_pages=8)
    buf = bytearray()
    with trio.CancelScope() as owner:
        async with tfu.mount(ops, path, options) as m:
            assert m.transport == transport
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-c", _MANY_READERS, str(path / "f"), str(IN_FLIGHT)],
                stdout=subprocess.PIPE,
            )
            assert await _read_line(proc, buf) == b"started"
            with trio.fail_after(30):
                while ops.waiting < IN_FLIGHT:
                    await trio.sleep(0.02)
            assert len(m._s.dispatcher._active) == IN_FLIGHT
            t0 = time.monotonic()
            owner.cancel()
            await trio.sleep_forever()
    elapsed = time.monotonic() - t0
    try:
        assert ops.cancelled == ops.waiting == IN_FLIGHT, (ops.cancelled, ops.waiting)
        assert elapsed < 10, elapsed  # a bound against hangs (about 0.1 s here)
        print(
            f"\n{transport}: cancelled with {IN_FLIGHT} in flight, unwound in {elapsed:.2f} s"
            f" ({ops.cancelled} handlers cancelled)"
        )
        line = await _read_line(proc, buf)
        kinds, count = line.rsplit(b" ", 1)
        assert int(count) == IN_FLIGHT
        assert set(kinds.split()) <= {b"EINTR", b"ENOTCONN", b"ECONNABORTED"}, line
    finally:
        await _stop(proc)
    assert not is_mountpoint(str(path))
    await no_ring_threads()
    await trio.sleep(0.1)
    leftover = {t for t in threading.enumerate() if t.ident not in threads_before}
    # trio's thread cache keeps idle workers around; anything else is a leak.
    assert all(t.name.startswith("Trio thread") for t in leftover), leftover
    assert open_fds() - fds_before == set()


# ---- io-uring registration refused half-way through setup -------------------------------------


@pytest.fixture
def register_refused(monkeypatch):
    """Make ring payload buffers too small for what INIT negotiated (64 KiB while the
    kernel needs max_write + headers), so the kernel rejects FUSE_IO_URING_CMD_REGISTER
    after INIT chose io-uring and the rings and queue threads exist."""
    require("uring")
    monkeypatch.setattr(_protocol.Negotiated, "payload_size", property(lambda self: 65536))


async def test_register_refused_auto_falls_back(tmp_path, register_refused, caplog):
    path = tmp_path / "m"
    path.mkdir()
    with trio.fail_after(30):
        async with tfu.mount(HelloFS(), path, tfu.Options(transport="auto")) as m:
            assert m.transport == "devfuse", m.transport_reason
            assert "refused ring registration" in m.transport_reason
            assert await client(Path(path, "hello").read_bytes) == HELLO_DATA
            assert await client(os.listdir, path) == ["hello"]
            stats = m.stats()
            assert stats["requests"]["devfuse"] > 0
    assert "refused ring registration" in caplog.text and "fall back to /dev/fuse" in caplog.text
    assert not is_mountpoint(str(path))
    await no_ring_threads()


async def test_register_refused_uring_is_a_clear_error(tmp_path, register_refused):
    fds_before = open_fds()
    path = tmp_path / "m"
    path.mkdir()
    with trio.fail_after(30):
        with pytest.raises(tfu.UringUnavailable, match="refused ring registration"):
            async with tfu.mount(HelloFS(), path, tfu.Options(transport="uring")):
                pytest.fail("mounted over io-uring although registration was refused")
    assert not is_mountpoint(str(path))
    await no_ring_threads()
    assert open_fds() - fds_before == set()
