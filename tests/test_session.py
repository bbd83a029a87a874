"""The core through the real kernel: mounting, errors, interrupts, notifications, cleanup."""

from __future__ import annotations

import errno
import logging
import mmap
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import trio
from hello import HELLO_DATA, HelloFS
from helpers import client, open_fds

import trio_fuse_uring as tfu
from trio_fuse_uring import _mountlib

ROOT = tfu.ROOT_INODE


def _root_attr() -> tfu.EntryAttributes:
    return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)


def _file_attr(ino: int, size: int = 0, timeout: float = 0.0) -> tfu.EntryAttributes:
    return tfu.EntryAttributes(
        st_ino=ino, st_mode=stat.S_IFREG | 0o644, st_size=size,
        entry_timeout=timeout, attr_timeout=timeout,
    )  # fmt: skip


async def test_hello_read_and_list(mount_ops, transport):
    m = await mount_ops(HelloFS())
    assert m.transport == transport
    path = Path(m.mountpoint)
    assert await client((path / "hello").read_bytes) == HELLO_DATA
    assert await client(os.listdir, path) == ["hello"]
    st = await client(os.stat, path / "hello")
    assert stat.S_ISREG(st.st_mode) and st.st_size == len(HELLO_DATA)
    with pytest.raises(FileNotFoundError):
        await client(os.stat, path / "nope")
    with pytest.raises(PermissionError):
        await client(open, path / "hello", "wb")
    counts = m.stats()["requests"]
    assert counts[transport] > 0


class FaultyFS(tfu.Operations):
    """Each file name picks a way for a handler to misbehave."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()

    async def getattr(self, inode, ctx):
        return _root_attr() if inode == ROOT else _file_attr(inode, 10)

    async def lookup(self, parent_inode, name, ctx):
        if name == b"raises":
            raise RuntimeError("boom")
        if name == b"wrongtype":
            return {"st_ino": 5}
        if name == b"eacces":
            raise tfu.FUSEError(errno.EACCES)
        if name == b"blocks":
            return _file_attr(7, 10)
        raise tfu.FUSEError(errno.ENOENT)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def read(self, fh, off, size):
        if fh == 7:
            self.started.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                self.cancelled.set()
                raise
        return b"x" * size


async def test_handler_errors_map_to_errno(mount_ops, caplog):
    m = await mount_ops(FaultyFS())
    path = Path(m.mountpoint)
    with caplog.at_level(logging.ERROR, logger="trio_fuse_uring"):
        with pytest.raises(OSError) as exc:
            await client(os.stat, path / "raises")
        assert exc.value.errno == errno.EIO
        with pytest.raises(OSError) as exc:
            await client(os.stat, path / "wrongtype")
        assert exc.value.errno == errno.EIO
    text = caplog.text
    assert "lookup()" in text and "boom" in text and "Traceback" in text
    assert "returned dict" in text and "EntryAttributes" in text
    with pytest.raises(PermissionError):
        await client(os.stat, path / "eacces")
    # A missing handler answers ENOSYS: mkdir is not implemented.
    with pytest.raises(OSError) as exc:
        await client(os.mkdir, path / "d")
    assert exc.value.errno == errno.ENOSYS
    # The filesystem keeps serving after all that.
    assert (await client(os.stat, path)).st_ino == ROOT
    assert m.stats()["handler_failures"] == 2


# Reads with libc's read() so that the errno of the syscall itself is seen (Python's
# os.read would retry after EINTR). The no-op SIGUSR1 handler has no SA_RESTART.
_BLOCKING_READER = """
import ctypes, errno, os, signal, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
buf = ctypes.create_string_buffer(10)
n = libc.read(fd, buf, 10)
print("EINTR" if n < 0 and ctypes.get_errno() == errno.EINTR else f"read {n} {ctypes.get_errno()}")
"""


async def test_interrupt_cancels_blocked_handler(mount_ops):
    """A signalled client interrupts a handler that waits forever: the handler is
    cancelled and the client's read fails with EINTR."""
    ops = FaultyFS()
    m = await mount_ops(ops)
    target = os.path.join(m.mountpoint, "blocks")
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", _BLOCKING_READER, target], stdout=subprocess.PIPE
    )
    try:
        with trio.fail_after(20):
            await ops.started.wait()
            proc.send_signal(signal.SIGUSR1)
            await ops.cancelled.wait()
            await proc.wait()
            assert proc.stdout is not None
            out = await proc.stdout.receive_some()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert out.strip() == b"EINTR"
    assert m.stats()["interrupted"] >= 1


async def test_cleanup_leaves_nothing(tmp_path, transport):
    from helpers import require

    require(transport)
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = open_fds()
    path = tmp_path / "m"
    path.mkdir()
    async with tfu.mount(HelloFS(), path, tfu.Options(transport=transport)) as m:
        assert (await client((path / "hello").read_bytes)) == HELLO_DATA
        assert _is_mounted(path)
    assert not _is_mounted(path)
    assert m.stats()["requests"][transport] > 0
    await trio.sleep(0.1)
    leftover = {t for t in threading.enumerate() if t.ident not in threads_before}
    # trio's thread cache keeps idle workers around; anything else is a leak.
    assert all(t.name.startswith("Trio thread") for t in leftover), leftover
    assert open_fds() - fds_before == set()


async def test_cancellation_unmounts(tmp_path, transport):
    from helpers import require

    require(transport)
    path = tmp_path / "m"
    path.mkdir()
    with trio.move_on_after(1):
        async with tfu.mount(HelloFS(), path, tfu.Options(transport=transport)):
            await trio.sleep_forever()
    assert not _is_mounted(path)


async def test_external_unmount_ends_session(tmp_path, transport):
    from helpers import require

    require(transport)
    path = tmp_path / "m"
    path.mkdir()
    async with tfu.mount(HelloFS(), path, tfu.Options(transport=transport)) as m:
        await client(subprocess.run, ["umount", "-l", str(path)])
        with trio.fail_after(10):
            await m.wait_unmounted()
    assert "unmounted" in repr(m)


async def test_two_mounts_in_one_process(mount_ops):
    a = await mount_ops(HelloFS())
    b = await mount_ops(HelloFS())
    assert a.mountpoint != b.mountpoint
    for m in (a, b):
        assert await client(Path(m.mountpoint, "hello").read_bytes) == HELLO_DATA


class NotifyFS(tfu.Operations):
    """One file whose name and content change behind the kernel's back."""

    def __init__(self) -> None:
        self.data = b"old"
        self.name = b"f"
        self.mount: tfu.Mount | None = None

    async def getattr(self, inode, ctx):
        if inode == ROOT:
            return _root_attr()
        return tfu.EntryAttributes(
            st_ino=2, st_mode=stat.S_IFREG | 0o644, st_size=len(self.data),
            entry_timeout=300, attr_timeout=300,
        )  # fmt: skip

    async def lookup(self, parent_inode, name, ctx):
        if name != self.name:
            raise tfu.FUSEError(errno.ENOENT)
        return await self.getattr(2, ctx)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=2, keep_cache=True)

    async def read(self, fh, off, size):
        # Invalidate from inside a handler: must neither block the
        # loop nor deadlock.
        assert self.mount is not None
        self.mount.invalidate_inode(ROOT, attr_only=True)
        return self.data[off : off + size]


async def test_notifications_invalidate_cache(mount_ops):
    ops = NotifyFS()
    m = await mount_ops(ops)
    ops.mount = m
    f = Path(m.mountpoint, "f")
    # Open descriptors pin the dentries and the inode: otherwise memory pressure (or
    # someone's drop_caches) may evict them, and a fresh LOOKUP would make every
    # "still cached" check below fail.
    pins = [await client(os.open, f, os.O_RDONLY)]
    try:
        assert (await client(os.stat, f)).st_size == 3
        ops.data = b"new data"
        # Attributes are cached for 300 s: the kernel still believes the old size.
        # (No read before this check: a read invalidates the cached atime.)
        assert (await client(os.stat, f)).st_size == 3
        m.invalidate_inode(2)
        await _settle(m)
        assert (await client(os.stat, f)).st_size == 8
        assert await client(f.read_bytes) == b"new data"
        # Store pushes data into the page cache; retrieve reads it back. (Clean pages
        # may be evicted in between, even of an open file: then store again.)
        for _ in range(5):
            m.notify_store(2, 0, b"NEW")
            await _settle(m)
            if (got := await m.retrieve(2, 0, 3)) == b"NEW":
                break
        assert got == b"NEW"
        # The name is cached for 300 s until the entry is invalidated.
        ops.name = b"g"
        assert (await client(os.stat, f)).st_ino == 2
        m.invalidate_entry(ROOT, b"f")
        await _settle(m)
        with pytest.raises(FileNotFoundError):
            await client(os.stat, f)
        # notify_delete drops a cached name that still looks valid for 300 s.
        g = Path(m.mountpoint, "g")
        pins.append(await client(os.open, g, os.O_RDONLY))
        assert (await client(os.stat, g)).st_ino == 2
        ops.name = b"h"
        assert (await client(os.stat, g)).st_ino == 2
        m.notify_delete(ROOT, 2, b"g")
        await _settle(m)
        with pytest.raises(FileNotFoundError):
            await client(os.stat, g)
    finally:
        for fd in pins:
            await client(os.close, fd)
    with pytest.raises(tfu.FUSEError):
        await m.retrieve(12345, 0, 10)


async def _settle(m: tfu.Mount) -> None:
    """Wait until every queued notification has reached the kernel."""
    # Not "until the queue is empty": the notifier takes a message off the queue before
    # its worker thread writes it, and a fixed sleep after that was a race under load.
    notifier = m._s.notifier
    with trio.fail_after(10):
        while notifier.sent < notifier.queued:
            await trio.sleep(0.005)


def _is_mounted(path: Path) -> bool:
    from trio_fuse_uring._mountlib import is_mountpoint

    return is_mountpoint(str(path))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fsname": "a,allow_other"},
        {"fsname": "x=y"},
        {"subtype": "a\0b"},
        {"extra": ("allow_other,dev",)},
        {"extra": ("max_read=1,user_id=0",)},
        {"max_write": 10},
        {"transport": "carrier-pigeon"},
        {"ring_depth": 0},
        {"ring_depth": 8, "ring_max_depth": 4},
        {"ring_max_depth": 5000},
    ],
)
def test_unsafe_options_rejected(kwargs):
    with pytest.raises(tfu.OptionError):
        tfu.Options(**kwargs)


@pytest.mark.parametrize(
    "text, message",
    [
        ("user_id=1001", "user_id= is not accepted"),
        ("group_id=0", "group_id= is not accepted"),
        ("fd=3", "fd= is not accepted"),
        ("rootmode=100644", "rootmode= is not accepted"),
        ("noatime,user_id=0", "user_id= is not accepted"),
        ("subtype=x/y", "contains '/'"),
    ],
)
def test_options_the_library_owns_are_refused(text, message):
    """They would override what the library writes into the mount data (mountinfo then
    shows another owner; fd= serves another connection), or make ``fuse.x/y``."""
    with pytest.raises(tfu.OptionError, match=message):
        tfu.Options.parse(text)
    key = text.split(",")[-1]
    with pytest.raises(tfu.OptionError, match=message):
        tfu.Options(extra=(key,))
    tfu.Options(fsname="/srv/data")  # a path as the source stays fine (passthrough's)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_write": 10}, "max_write must be between 4096 and 16 MiB, not 10"),
        ({"max_pages": 0}, "max_pages must be between 1 and 65535, not 0"),
        ({"max_background": 70000}, "max_background must be between 0 and 65535, not 70000"),
        ({"poll_us": -1}, "poll_us must be >= 0, not -1"),
        ({"time_gran": 0}, "time_gran must be between 1 and 10**9 ns, not 0"),
        ({"entry_timeout": float("nan")}, "entry_timeout must be >= 0, not nan"),
        ({"attr_timeout": -0.5}, "attr_timeout must be >= 0, not -0.5"),
        ({"ring_depth": 8, "ring_max_depth": 4},
         "ring_max_depth must be between ring_depth (8) and 4096, not 4"),
    ],
)  # fmt: skip
def test_option_range_errors_say_the_value(kwargs, message):
    with pytest.raises(tfu.OptionError) as info:
        tfu.Options(**kwargs)
    assert str(info.value) == message


def test_mount_objects_cannot_be_constructed():
    with pytest.raises(TypeError, match="come from `async with mount"):
        tfu.Mount(None)


class _PlainDefs(tfu.Operations):
    def getattr(self, inode, ctx):
        return tfu.EntryAttributes(st_ino=inode)

    def lookup(self, parent, name, ctx):
        raise tfu.FUSEError(errno.ENOENT)

    def readdir(self, fh, start_id, ctx):  # a generator, but not an async one
        yield tfu.DirEntry(b"x", tfu.EntryAttributes(st_ino=2), 1)

    def helper(self):  # not a handler: not checked
        return 1


async def test_plain_def_handlers_refused_at_mount(tmp_path):
    with pytest.raises(TypeError) as info:
        async with tfu.mount(_PlainDefs(), tmp_path):
            pytest.fail("mounted")
    assert str(info.value) == (
        "_PlainDefs: lookup() must be async def; getattr() must be async def; "
        "readdir() must be an async generator (async def with yield) or an async def "
        "returning a DirListing"
    )
    assert not _is_mounted(tmp_path)


def test_ring_entries_max_defaults_to_64_or_ring_depth():
    assert tfu.Options().ring_entries_max == 64
    assert tfu.Options(ring_depth=256).ring_entries_max == 256
    assert tfu.Options(ring_depth=4, ring_max_depth=4).ring_entries_max == 4
    assert tfu.Options.parse("ring_max_depth=16").ring_max_depth == 16


async def test_parsed_options_are_accepted_and_a_tuple_is_refused_clearly(tmp_path):
    opts = tfu.Options.parse("fsname=x,noatime")
    assert isinstance(opts, tfu.Options) and opts.extra == ("noatime",)
    pair = tfu.Options.parse_with_own("fsname=x,size=1", own={"size"})
    with pytest.raises(TypeError, match=r"pass its first item"):
        async with tfu.mount(tfu.Operations(), tmp_path, pair):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match=r"options must be a trio_fuse_uring.Options, not tuple"):
        tfu.run(tfu.Operations(), tmp_path, pair)  # type: ignore[arg-type]


def test_options_format():
    o = tfu.Options(fsname="memfs", allow_other=True, extra=("noatime", "max_read=65536"))
    flags, data = _mountlib._split_flags(o)
    assert flags == _mountlib.MS_NOSUID | _mountlib.MS_NODEV | _mountlib.MS_NOATIME
    assert _mountlib._mount_data(o, 5, data) == (
        f"fd=5,rootmode=40000,user_id={os.geteuid()},group_id={os.getegid()},"
        "default_permissions,allow_other,max_read=65536"
    )
    assert o.fusermount_options() == (
        "fsname=memfs,nosuid,nodev,rw,default_permissions,allow_other,noatime,max_read=65536"
    )
    assert "allow_other" not in tfu.Options().fusermount_options()


async def test_debug_trace(mount_ops, caplog):
    m = await mount_ops(HelloFS(), debug=True)
    with caplog.at_level(logging.DEBUG, logger="trio_fuse_uring"):
        await client(os.stat, Path(m.mountpoint, "hello"))
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("rx ") and "LOOKUP n1 name=b'hello'" in line for line in lines)
    assert any(line.startswith("tx ") and " OK " in line and "ms)" in line for line in lines)


class ReadIntoFS(tfu.Operations):
    """A 1 MiB file whose bytes are ``offset % 251``, produced straight into the reply
    buffer (the opt-in zero-copy form of read)."""

    SIZE = 1 << 20

    async def getattr(self, inode, ctx):
        return _root_attr() if inode == ROOT else _file_attr(2, self.SIZE, timeout=60)

    async def lookup(self, parent_inode, name, ctx):
        if name == b"bad":
            return _file_attr(3, 10, timeout=60)
        if name != b"f":
            raise tfu.FUSEError(errno.ENOENT)
        return _file_attr(2, self.SIZE, timeout=60)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def read_into(self, fh, off, buf):
        if fh == 3:
            return len(buf) + 1  # more than asked for: rejected
        n = max(0, min(len(buf), self.SIZE - off))
        buf[:n] = bytes((off + i) % 251 for i in range(n))
        return n


async def test_read_into_fills_the_reply_buffer(mount_ops):
    m = await mount_ops(ReadIntoFS())
    data = await client(Path(m.mountpoint, "f").read_bytes)
    assert len(data) == ReadIntoFS.SIZE
    assert data == bytes(i % 251 for i in range(ReadIntoFS.SIZE))
    with pytest.raises(OSError) as exc:
        await client(Path(m.mountpoint, "bad").read_bytes)
    assert exc.value.errno == errno.EIO


def _page_offset(buf: memoryview) -> int:
    from trio_fuse_uring._ring_cffi import ffi  # type: ignore[import-not-found]

    return int(ffi.cast("uintptr_t", ffi.from_buffer(buf))) % mmap.PAGESIZE


class AlignmentFS(tfu.Operations):
    """One file ``f`` that records where the buffers its handlers get start."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.write_offsets: list[int] = []
        self.read_offsets: list[int] = []

    async def getattr(self, inode, ctx):
        return _root_attr() if inode == ROOT else _file_attr(2, len(self.data))

    async def lookup(self, parent_inode, name, ctx):
        if name != b"f":
            raise tfu.FUSEError(errno.ENOENT)
        return _file_attr(2, len(self.data))

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=2, direct_io=True)

    async def write(self, fh, off, buf):
        self.write_offsets.append(_page_offset(buf))
        self.data[off : off + len(buf)] = buf
        return len(buf)

    async def read_into(self, fh, off, buf):
        self.read_offsets.append(_page_offset(buf))
        chunk = self.data[off : off + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)


async def test_write_data_and_read_buffers_are_page_aligned(mount_ops):
    # So that handlers can pass them to files opened with O_DIRECT, which most
    # filesystems refuse (EINVAL) for unaligned memory. The ring's buffers always were;
    # /dev/fuse's were bytearrays, and a passthrough over ext4 failed every O_DIRECT
    # read and write there.
    fs = AlignmentFS()
    m = await mount_ops(fs)
    data = os.urandom(200_000)

    def write_then_read() -> bytes:
        path = Path(m.mountpoint, "f")
        path.write_bytes(data)
        return path.read_bytes()

    assert await client(write_then_read) == data
    assert fs.write_offsets and fs.read_offsets
    assert set(fs.write_offsets) == {0}
    assert set(fs.read_offsets) == {0}


class FileRangeFS(tfu.Operations):
    """Files served from a backing file with FileRange replies: ``whole`` (read_into),
    ``into`` (read_into: FileRange for 64 KiB and more, its own copy below), ``capped``
    (FileRange with a size: at most 1000 bytes per read), ``closed`` (a closed fd) and
    ``bad`` (a negative offset)."""

    INODES: ClassVar[dict[bytes, int]] = {
        b"whole": 2,
        b"into": 3,
        b"capped": 4,
        b"closed": 5,
        b"bad": 6,
    }

    def __init__(self, backing: str, size: int) -> None:
        self.fd = os.open(backing, os.O_RDONLY)
        self.size = size
        self.small_reads = 0

    async def getattr(self, inode, ctx):
        return _root_attr() if inode == ROOT else _file_attr(inode, self.size, timeout=60)

    async def lookup(self, parent_inode, name, ctx):
        if name not in self.INODES:
            raise tfu.FUSEError(errno.ENOENT)
        return _file_attr(self.INODES[name], self.size, timeout=60)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def read_into(self, fh, off, buf):
        if fh == 2:
            return tfu.FileRange(self.fd, off)
        if fh == 3:
            if len(buf) >= 65536:
                return tfu.FileRange(self.fd, off)
            self.small_reads += 1
            return os.preadv(self.fd, (buf,), off)
        if fh == 4:
            return tfu.FileRange(self.fd, off, 1000)
        if fh == 5:
            return tfu.FileRange(987654, off)  # not an open fd
        return tfu.FileRange(self.fd, -1)


class ReadFileRangeFS(FileRangeFS):
    """The same through ``read`` (read_into is not overridden here)."""

    read_into = tfu.Operations.read_into

    async def read(self, fh, off, size):
        return tfu.FileRange(self.fd, off, 100 if fh == 4 else None)


async def test_read_may_return_a_file_range(mount_ops, tmp_path):
    data = os.urandom((1 << 20) + 7)
    backing = tmp_path / "backing"
    backing.write_bytes(data)
    ops = ReadFileRangeFS(str(backing), len(data))
    m = await mount_ops(ops)
    try:
        assert await client(Path(m.mountpoint, "whole").read_bytes) == data

        def pread(name: str, off: int, n: int) -> bytes:
            fd = os.open(Path(m.mountpoint, name), os.O_RDONLY)
            try:
                return os.pread(fd, n, off)
            finally:
                os.close(fd)

        assert await client(pread, "capped", 10, 4096) == data[10:110]
    finally:
        os.close(ops.fd)


async def test_file_range_replies_read_from_the_file(mount_ops, tmp_path, caplog):
    data = os.urandom((3 << 20) + 12345)  # several full requests, then a short one
    backing = tmp_path / "backing"
    backing.write_bytes(data)
    ops = FileRangeFS(str(backing), len(data))
    m = await mount_ops(ops)
    try:
        mnt = Path(m.mountpoint)
        assert await client((mnt / "whole").read_bytes) == data
        assert await client((mnt / "into").read_bytes) == data

        def small_reads(name: str) -> bytes:
            with open(mnt / name, "rb", buffering=0) as f:
                return b"".join(f.read(4096) for _ in range(8))

        assert await client(small_reads, "into") == data[: 8 * 4096]
        assert ops.small_reads >= 8

        def pread(name: str, off: int, n: int) -> bytes:
            fd = os.open(mnt / name, os.O_RDONLY)
            try:
                return os.pread(fd, n, off)
            finally:
                os.close(fd)

        assert await client(pread, "capped", 5000, 65536) == data[5000:6000]
        assert await client(pread, "whole", len(data) - 10, 4096) == data[-10:]
        assert await client(pread, "whole", len(data) + 10, 4096) == b""
        with pytest.raises(OSError) as exc:
            await client(pread, "closed", 0, 4096)
        assert exc.value.errno == errno.EBADF
        with pytest.raises(OSError) as exc:
            await client(pread, "bad", 0, 4096)
        assert exc.value.errno == errno.EIO
        assert "read_into() returned" in caplog.text and "FileRange" in caplog.text
        if m.transport == "uring":
            reads = [q["file_reads"] for q in m.stats()["ring"]["queues"]]
            # 128 KiB reads: the queue threads take their share of them
            assert sum(r["queue_thread"] for r in reads) > 0, reads
            assert sum(r["trio"] for r in reads) > 0, reads
    finally:
        os.close(ops.fd)


class LazyDirFS(tfu.Operations):
    """A directory of 2000 files whose attributes are computed only when the kernel asks
    (readdirplus); ``gone`` names fail like a file removed meanwhile."""

    N = 2000

    def __init__(self) -> None:
        self.attr_calls = 0
        self.lookups: dict[int, int] = {}
        self.forgotten: dict[int, int] = {}

    def _attr(self, ino: int) -> tfu.EntryAttributes:
        self.attr_calls += 1
        return _file_attr(ino, 1, timeout=60)

    def _gone(self) -> tfu.EntryAttributes:
        raise tfu.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx):
        return _root_attr() if inode == ROOT else _file_attr(inode, 1, timeout=60)

    async def readdir(self, fh, start_id, ctx):
        for i in range(start_id, self.N):
            ino = 100 + i
            attr = self._gone if i == 7 else (lambda ino=ino: self._attr(ino))
            entry = tfu.DirEntry(b"f%d" % i, attr, i + 1, ino=ino, mode=stat.S_IFREG)
            if (yield entry):
                self.lookups[ino] = self.lookups.get(ino, 0) + 1

    async def forget(self, inode_list):
        # Counted apart: the kernel may forget the listing's unused entries at any time.
        for ino, n in inode_list:
            self.forgotten[ino] = self.forgotten.get(ino, 0) + n


async def test_readdir_lazy_attributes(mount_ops):
    ops = LazyDirFS()
    m = await mount_ops(ops)

    def listing() -> list[tuple[str, int, bool]]:
        with os.scandir(m.mountpoint) as it:
            return [(e.name, e.inode(), e.is_file(follow_symlinks=False)) for e in it]

    entries = await client(listing)
    assert sorted(entries) == sorted((f"f{i}", 100 + i, True) for i in range(ops.N))
    # READDIRPLUS_AUTO: only the listing's first call wants attributes; the rest are
    # plain, so most attribute functions were never called.
    assert 0 < ops.attr_calls < ops.N // 4
    # Only entries whose attributes were sent hold a lookup, once each ("f7" raised
    # ENOENT; an entry whose attributes were computed but that did not fit holds none).
    assert 107 not in ops.lookups and set(ops.lookups.values()) == {1}
    assert all(n <= ops.lookups.get(ino, 0) for ino, n in ops.forgotten.items())
    assert ops.attr_calls - 8 <= len(ops.lookups) <= ops.attr_calls
