"""Backing files (``FileInfo.backing_fd``) and kernel passthrough, through the kernel.

The filesystem here has one regular file whose data lives in a backing file; its
``read``/``write`` handlers fail loudly, so a test that reads the right bytes proves the
framework served them (in C) without entering the handler layer. Every test runs on
both transports.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import trio
from helpers import REPO, MountOps, client, open_fds

import trio_fuse_uring as tfu
from trio_fuse_uring._mountlib import is_mountpoint

FILE_INO = 2
SIZE = 256 * 1024


class BackedFS(tfu.Operations):
    """``/f`` (inode 2) is backed by ``path``; handles are numbered from 10."""

    def __init__(self, path: Path, *, direct_io: bool = False, handler_io: bool = False) -> None:
        self.path = path
        self.direct_io = direct_io
        self.handler_io = handler_io  # read/write answer b"H"... instead of failing
        self.backing: tfu.BackingFiles | None = None
        self.next_fh = 10
        self.handler_reads = 0
        self.handler_writes = 0
        self.released: list[int] = []
        self.close_own_fd = False
        self.fds: dict[int, int] = {}

    async def init(self, info: tfu.InitInfo) -> None:
        self.backing = info.backing

    def _attr(self) -> tfu.EntryAttributes:
        st = self.path.stat()
        return tfu.EntryAttributes(
            st_ino=FILE_INO, st_mode=stat.S_IFREG | 0o644, st_size=st.st_size,
            st_blocks=st.st_blocks, st_mtime_ns=st.st_mtime_ns, st_ctime_ns=st.st_ctime_ns,
            attr_timeout=0, entry_timeout=0,
        )  # fmt: skip

    async def getattr(self, inode: int, ctx: tfu.RequestContext) -> tfu.EntryAttributes:
        if inode == tfu.ROOT_INODE:
            return tfu.EntryAttributes(st_ino=1, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        if inode == FILE_INO:
            return self._attr()
        raise tfu.FUSEError(errno.ENOENT)

    async def lookup(
        self, parent: int, name: bytes, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        if parent == tfu.ROOT_INODE and name == b"f":
            return self._attr()
        raise tfu.FUSEError(errno.ENOENT)

    async def setattr(self, inode, attr, fh, ctx):  # type: ignore[no-untyped-def]
        if attr.st_size is not None:
            os.truncate(self.path, attr.st_size)
        return self._attr()

    async def open(self, inode: int, flags: int, ctx: tfu.RequestContext) -> tfu.FileInfo:
        fh = self.next_fh
        self.next_fh += 1
        fd = os.open(self.path, os.O_RDWR)
        if self.close_own_fd:
            # Attach, then close our fd at once: the framework keeps its own.
            assert self.backing is not None
            self.backing.attach(fh, fd)
            os.close(fd)
            return tfu.FileInfo(fh=fh, direct_io=self.direct_io)
        self.fds[fh] = fd
        return tfu.FileInfo(fh=fh, direct_io=self.direct_io, backing_fd=fd)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        self.handler_reads += 1
        if self.handler_io:
            return b"H" * size
        raise AssertionError("read() reached the handler")

    async def write(self, fh: int, off: int, data: memoryview) -> int:
        self.handler_writes += 1
        raise AssertionError("write() reached the handler")

    async def release(self, fh: int) -> None:
        fd = self.fds.pop(fh, None)
        if fd is not None:
            os.close(fd)
        self.released.append(fh)


def _backing_served(m: tfu.Mount) -> tuple[int, int]:
    """(reads, writes) the framework answered from backing files in C."""
    s = m.stats()
    b = s["backing"]
    reads, writes = b.get("devfuse_reads", 0), b.get("devfuse_writes", 0)
    for q in s.get("ring", {}).get("queues", []):
        reads += q["backing"]["reads"]
        writes += q["backing"]["writes"]
    return reads, writes


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    p = tmp_path / "backing"
    p.write_bytes(os.urandom(SIZE))
    return p


@pytest.mark.parametrize("direct_io", [False, True], ids=["cached", "direct_io"])
async def test_reads_and_writes_come_from_the_backing_file(
    mount_ops: MountOps, data_file: Path, direct_io: bool
) -> None:
    ops = BackedFS(data_file, direct_io=direct_io)
    m = await mount_ops(ops)
    f = Path(m.mountpoint, "f")
    assert await client(f.read_bytes) == data_file.read_bytes()

    def write_some() -> None:
        with open(f, "r+b", buffering=0) as fp:
            fp.seek(4096)
            fp.write(b"x" * 10000)
            fp.seek(SIZE)
            fp.write(b"tail")  # past the end: the file grows
            os.fsync(fp.fileno())

    await client(write_some)
    want = bytearray(data_file.read_bytes())
    assert want[4096 : 4096 + 10000] == b"x" * 10000
    assert want.endswith(b"tail") and len(want) == SIZE + 4
    assert await client(f.read_bytes) == bytes(want)
    reads, writes = _backing_served(m)
    assert reads > 0 and writes > 0
    assert ops.handler_reads == ops.handler_writes == 0
    with trio.fail_after(10):
        while len(ops.released) < ops.next_fh - 10:  # release comes after close returns
            await trio.sleep(0.01)
    assert len(m.backing) == 0


# In a process of its own: a page fault on our own mount from the serving process can
# deadlock it or fail with SIGBUS (the fault holds the address space's lock while the
# serving thread may need it).
_MMAP = """
import mmap, sys
with open(sys.argv[1], "r+b") as fp, mmap.mmap(fp.fileno(), int(sys.argv[2])) as mm:
    sys.stdout.buffer.write(mm[:])
    if sys.argv[3] == "write":
        mm[100:105] = b"hello"
        mm.flush()
"""


async def _mmap(path: Path, size: int, write: bool) -> bytes:
    with trio.fail_after(30):
        proc = await trio.run_process(
            [sys.executable, "-c", _MMAP, str(path), str(size), "write" if write else "read"],
            capture_stdout=True,
        )
    return bytes(proc.stdout)


async def test_mmap_reads_and_writes_the_backing_file(mount_ops: MountOps, data_file: Path) -> None:
    ops = BackedFS(data_file)
    m = await mount_ops(ops)
    want = data_file.read_bytes()
    seen = await _mmap(Path(m.mountpoint, "f"), SIZE, write=True)
    assert seen == want
    assert data_file.read_bytes()[100:105] == b"hello"
    assert ops.handler_reads == ops.handler_writes == 0
    assert _backing_served(m)[0] > 0


async def test_handler_may_close_its_fd_at_once(mount_ops: MountOps, data_file: Path) -> None:
    """attach() takes a duplicate: the handler's own fd closed right away changes
    nothing, and the duplicate is closed once the file is released."""
    ops = BackedFS(data_file, direct_io=True)
    ops.close_own_fd = True
    m = await mount_ops(ops)
    before = open_fds()
    f = Path(m.mountpoint, "f")
    for _ in range(3):
        assert await client(f.read_bytes) == data_file.read_bytes()
    with trio.fail_after(10):
        while len(ops.released) < 3 or len(m.backing):
            await trio.sleep(0.01)
    assert open_fds() <= before
    assert ops.handler_reads == 0


async def test_detach_and_replace_race_reads(mount_ops: MountOps, tmp_path: Path) -> None:
    """Backing files swapped and detached while another thread reads: every read
    returns the whole of one of the files (or the handler's answer once detached),
    never an error, a mix or a closed fd's reuse."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"A" * SIZE)
    b.write_bytes(b"B" * SIZE)
    ops = BackedFS(a, direct_io=True, handler_io=True)
    m = await mount_ops(ops)
    f = Path(m.mountpoint, "f")
    stop = threading.Event()
    seen: set[bytes] = set()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with open(f, "rb", buffering=0) as fp:
                while not stop.is_set():
                    chunk = os.pread(fp.fileno(), 65536, 0)
                    kinds = set(chunk)
                    if len(kinds) != 1 or len(chunk) != 65536:
                        raise AssertionError(f"mixed or short read: {sorted(kinds)} {len(chunk)}")
                    seen.add(bytes([chunk[0]]))
        except BaseException as exc:
            errors.append(exc)

    fds_before = open_fds()
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        fda, fdb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
        try:
            with trio.fail_after(30):
                while len(m.backing) == 0:  # the reader's open attached "a"
                    await trio.sleep(0.001)
                fh = 10  # the reader's handle
                for i in range(300):
                    if i % 3 == 0:
                        m.backing.attach(fh, fdb)
                    elif i % 3 == 1:
                        m.backing.attach(fh, fda)
                    else:
                        m.backing.detach(fh)
                    await trio.sleep(0.0005)
                m.backing.attach(fh, fda)
                await trio.sleep(0.05)
        finally:
            os.close(fda)
            os.close(fdb)
    finally:
        stop.set()
        await trio.to_thread.run_sync(thread.join)
    assert not errors, errors[0]
    # Which of the three a loaded machine lets the reader see varies; at least two.
    assert seen <= {b"A", b"B", b"H"} and len(seen) >= 2, seen
    with trio.fail_after(10):
        while len(m.backing):
            await trio.sleep(0.01)
    assert open_fds() <= fds_before


async def test_passthrough(mount_ops: MountOps, data_file: Path) -> None:
    """As root, kernel passthrough: reads, writes and mmap never reach the daemon."""
    if os.geteuid() != 0:
        pytest.skip("kernel passthrough needs CAP_SYS_ADMIN")
    ops = BackedFS(data_file)
    m = await mount_ops(ops, passthrough=True)
    assert m.backing.passthrough, m.backing.passthrough_reason
    f = Path(m.mountpoint, "f")
    assert await client(f.read_bytes) == data_file.read_bytes()

    def write() -> None:
        with open(f, "r+b", buffering=0) as fp:
            fp.seek(10)
            fp.write(b"passthrough")

    await client(write)
    assert data_file.read_bytes()[10:21] == b"passthrough"
    seen = await _mmap(f, SIZE, write=True)
    assert seen[10:21] == b"passthrough"
    assert data_file.read_bytes()[100:105] == b"hello"
    assert _backing_served(m) == (0, 0)
    assert ops.handler_reads == ops.handler_writes == 0
    assert m.stats()["backing"]["passthrough_handles"] == 0 or ops.released


async def test_passthrough_falls_back_and_says_why(
    mount_ops: MountOps, data_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """writeback_cache rules kernel passthrough out: the framework serves the backing
    file in C instead, and the log says why once."""
    ops = BackedFS(data_file)
    m = await mount_ops(ops, passthrough=True, writeback_cache=True)
    assert not m.backing.passthrough
    assert "writeback_cache" in m.backing.passthrough_reason
    assert any("writeback_cache" in r.getMessage() for r in caplog.records)
    f = Path(m.mountpoint, "f")
    assert await client(f.read_bytes) == data_file.read_bytes()
    assert _backing_served(m)[0] > 0


def test_passthrough_reasons() -> None:
    """Each reason kernel passthrough is not asked for at INIT, in words."""
    from trio_fuse_uring._abi import InitFlag
    from trio_fuse_uring._session import passthrough_unavailable

    on = tfu.Options(passthrough=True)
    pt = int(InitFlag.PASSTHROUGH)
    assert passthrough_unavailable(pt, on, True) is None
    assert "Options.passthrough" in str(passthrough_unavailable(pt, tfu.Options(), True))
    assert "does not offer" in str(passthrough_unavailable(0, on, True))
    assert "CAP_SYS_ADMIN" in str(passthrough_unavailable(pt, on, False))
    wb = tfu.Options(passthrough=True, writeback_cache=True)
    assert "writeback_cache" in str(passthrough_unavailable(pt, wb, True))


def test_backing_table_owns_duplicates(tmp_path: Path) -> None:
    """attach() duplicates, replace and detach close the duplicates, close() the rest."""
    p = tmp_path / "x"
    p.write_bytes(b"x")
    before = open_fds()
    bf = tfu.BackingFiles()
    fd = os.open(p, os.O_RDONLY)
    try:
        bf.attach(5, fd)
        bf.attach(5, fd)  # replaces
        bf.attach(6, fd)
        assert len(bf) == 2 and 5 in bf and 7 not in bf
        assert bf.detach(5) and not bf.detach(5)
        with pytest.raises(OSError):
            bf.attach(8, 10_000)  # not an open fd
        with pytest.raises(ValueError):
            bf.attach(-1, fd)
    finally:
        os.close(fd)
    bf.close()
    assert open_fds() == before


NOBODY = 65534


async def test_unprivileged_daemon_serves_backing_files_itself(transport: str) -> None:
    """examples/passthrough.py asks for kernel passthrough by default; as another user,
    without CAP_SYS_ADMIN, it says why once and serves the backing files in C."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("fusermount3"):
        pytest.skip("needs root (to become another uid), setpriv and fusermount3")
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="tfu-", dir="/tmp"))  # tmp_path is private to root
    src, mnt = base / "src", base / "mnt"
    data = os.urandom(300_000)
    try:
        os.chmod(base, 0o755)
        for d in (src, mnt):
            d.mkdir()
            os.chown(d, NOBODY, NOBODY)
        (src / "f").write_bytes(data)
        os.chown(src / "f", NOBODY, NOBODY)
        out, err = base / "out", base / "err"
        cmd = [*as_nobody, sys.executable, str(REPO / "examples/passthrough.py"), str(src),
               str(mnt), "--transport", transport]  # fmt: skip
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        try:
            with trio.fail_after(20):
                while not is_mountpoint(str(mnt)):  # root may not stat it
                    assert proc.poll() is None, err.read_text()
                    await trio.sleep(0.02)
                cat = await trio.run_process([*as_nobody, "cat", f"{mnt}/f"], capture_stdout=True)
                assert cat.stdout == data
                await trio.run_process([*as_nobody, "fusermount3", "-u", str(mnt)])
                while proc.poll() is None:
                    await trio.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if is_mountpoint(str(mnt)):
                subprocess.run(["umount", "-l", str(mnt)], check=False)
        log = err.read_text()
        assert proc.returncode == 0, log
        assert log.count("CAP_SYS_ADMIN") == 1, log
        stats = json.loads(out.read_text().strip().splitlines()[-1])
        reads = stats["backing"].get("devfuse_reads", 0) + sum(
            q["backing"]["reads"] for q in stats.get("ring", {}).get("queues", [])
        )
        assert reads > 0, stats
    finally:
        shutil.rmtree(base, ignore_errors=True)
