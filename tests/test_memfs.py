"""examples/memfs.py through the real kernel, on every transport.

Every filesystem call runs in a worker thread (``client``) or another process; the test's
trio thread only serves the mount.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import REPO, client
from memfs import CHUNK, MemFS, build_options

import trio_fuse_uring as tfu

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_EMPTY_PATH = -100, 0x1000
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # root's venv python may live where nobody can read it


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def renameat2(old: Path, new: Path, flags: int) -> None:
    _check(libc.renameat2(AT_FDCWD, bytes(old), AT_FDCWD, bytes(new), flags))


def fallocate(fd: int, mode: int, off: int, length: int) -> None:
    _check(libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)))


def link_fd(fd: int, new: Path) -> None:
    """linkat(fd, "", ..., AT_EMPTY_PATH): give an O_TMPFILE file a name."""
    _check(libc.linkat(fd, b"", AT_FDCWD, bytes(new), AT_EMPTY_PATH))


async def mount_memfs(mount_ops: Any, **options: Any) -> tuple[MemFS, Path]:
    fs = MemFS(
        capacity=options.pop("capacity", 4 << 30), max_inodes=options.pop("max_inodes", 1_000_000)
    )
    m = await mount_ops(fs, **options)
    return fs, Path(m.mountpoint)


@pytest.fixture
async def memfs(mount_ops: Any) -> tuple[MemFS, Path]:
    return await mount_memfs(mount_ops)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (checked on the trio thread) until it holds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def drop_caches() -> None:
    """Make the kernel forget every unused dentry and inode (it sends FORGETs)."""
    Path("/proc/sys/vm/drop_caches").write_text("2\n")


# ---- regular files ---------------------------------------------------------------------------


async def test_files_sparse_and_truncate(memfs):
    fs, mnt = memfs
    f = mnt / "f"

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with open(f, "wb") as fp:
            fp.write(b"hello")
            fp.seek(3 * CHUNK + 10)
            fp.write(b"world")
        out["size"] = os.stat(f).st_size
        data = f.read_bytes()
        out["ok"] = (
            data[:5] == b"hello" and data[-5:] == b"world" and data[5:-5] == bytes(len(data) - 10)
        )
        out["blocks"] = os.stat(f).st_blocks
        # A large sparse file: 1 TiB with a few bytes at the end costs nothing.
        with open(mnt / "big", "wb") as fp:
            fp.seek(1 << 40)
            fp.write(b"end")
        st = os.stat(mnt / "big")
        out["big"] = (st.st_size, st.st_blocks)
        with open(mnt / "big", "rb") as fp:
            fp.seek((1 << 40) - 2)
            out["big_tail"] = fp.read()
        os.truncate(f, 4)
        out["trunc_down"] = f.read_bytes()
        os.truncate(f, CHUNK * 2)
        out["trunc_up"] = f.read_bytes() == b"hell" + bytes(CHUNK * 2 - 4)
        with open(f, "r+b") as fp:
            fp.truncate(2)
        out["ftrunc"] = f.read_bytes()
        f.write_bytes(b"x" * 100)  # open(O_TRUNC) truncates atomically
        f.write_bytes(b"y" * 10)
        out["otrunc"] = f.read_bytes()
        return out

    out = await client(work)
    assert out["size"] == 3 * CHUNK + 15 and out["ok"]
    assert out["blocks"] == 2 * 4096 // 512  # two chunks, one page each
    assert out["big"] == ((1 << 40) + 3, 8)
    assert out["big_tail"] == b"\0\0end"
    assert out["trunc_down"] == b"hell"
    assert out["trunc_up"]
    assert out["ftrunc"] == b"he"
    assert out["otrunc"] == b"y" * 10
    fs.check_invariants()


async def test_fallocate_punch_hole_keep_size(memfs):
    fs, mnt = memfs

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.posix_fallocate(fd, 0, 4 * CHUNK)
            st = os.fstat(fd)
            out["alloc"] = (st.st_size, st.st_blocks)
            os.pwrite(fd, b"A" * (4 * CHUNK), 0)
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, CHUNK, 2 * CHUNK)
            st = os.fstat(fd)
            out["punched"] = (st.st_size, st.st_blocks)
            data = os.pread(fd, 4 * CHUNK, 0)
            out["content"] = data == b"A" * CHUNK + bytes(2 * CHUNK) + b"A" * CHUNK
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20)  # inside a chunk
            out["partial"] = os.pread(fd, 40, 0) == b"A" * 10 + bytes(20) + b"A" * 10
            fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * CHUNK, CHUNK)  # beyond EOF
            st = os.fstat(fd)
            out["keep_size"] = (st.st_size, st.st_blocks)
            try:
                fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10)  # punch needs KEEP_SIZE
            except OSError as exc:
                out["punch_alone"] = exc.errno
        finally:
            os.close(fd)
        return out

    out = await client(work)
    assert out["alloc"] == (4 * CHUNK, 4 * CHUNK // 512)
    assert out["punched"] == (4 * CHUNK, 2 * CHUNK // 512)
    assert out["content"] and out["partial"]
    assert out["keep_size"] == (4 * CHUNK, 3 * CHUNK // 512)
    assert out["punch_alone"] == errno.EOPNOTSUPP
    fs.check_invariants()


async def test_seek_data_and_hole(memfs):
    _, mnt = memfs

    def work() -> list[Any]:
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.pwrite(fd, b"a", 0)
            os.pwrite(fd, b"b", 10 * CHUNK + 5)
            res: list[Any] = [
                os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE),
                os.lseek(fd, CHUNK, os.SEEK_DATA), os.lseek(fd, 10 * CHUNK + 1, os.SEEK_HOLE),
            ]  # fmt: skip
            try:
                os.lseek(fd, 11 * CHUNK, os.SEEK_DATA)
            except OSError as exc:
                res.append(exc.errno)
            return res
        finally:
            os.close(fd)

    # Page granularity, as tmpfs: the hole starts at the first page without data.
    assert await client(work) == [0, 4096, 10 * CHUNK, 10 * CHUNK + 6, errno.ENXIO]


async def test_seek_data_sees_cached_writes(mount_ops):
    """With writeback_cache the kernel sends LSEEK without writing back what it caches:
    a handler's answer would call freshly written data a hole (ENXIO here)."""
    _, mnt = await mount_memfs(mount_ops, writeback_cache=True)

    def work() -> tuple[int, int]:
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.ftruncate(fd, 4 << 20)
            os.fsync(fd)
            os.pwrite(fd, b"X" * 10, 3 << 20)  # only in the kernel's cache
            return os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 3 << 20, os.SEEK_HOLE)
        finally:
            os.close(fd)

    data, hole = await client(work)
    assert data <= 3 << 20
    assert hole >= (3 << 20) + 10


async def test_copy_file_range(memfs):
    fs, mnt = memfs

    def work() -> tuple[int, bytes, int]:
        (mnt / "src").write_bytes(b"0123456789" * 20000)
        with open(mnt / "src", "rb") as src, open(mnt / "dst", "wb") as dst:
            n = os.copy_file_range(src.fileno(), dst.fileno(), 150000, 7, 3)
        data = (mnt / "dst").read_bytes()
        return n, data, os.stat(mnt / "dst").st_size

    n, data, size = await client(work)
    assert n == 150000 and size == 150003
    assert data == bytes(3) + (b"0123456789" * 20000)[7 : 7 + 150000]
    fs.check_invariants()


async def test_write_large_and_unaligned(memfs):
    _, mnt = memfs
    payload = os.urandom(3 * 1024 * 1024 + 123)

    def work() -> bytes:
        with open(mnt / "f", "wb") as fp:
            fp.write(b"x" * 7)
            fp.write(payload)
        return (mnt / "f").read_bytes()

    assert await client(work) == b"x" * 7 + payload


# ---- names -------------------------------------------------------------------------------------


async def test_directories_and_nlink(memfs):
    fs, mnt = memfs

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        os.mkdir(mnt / "d")
        out["empty"] = os.stat(mnt / "d").st_nlink
        for name in ("a", "b", "c"):
            os.mkdir(mnt / "d" / name)
        (mnt / "d" / "file").write_bytes(b"")
        out["three"] = os.stat(mnt / "d").st_nlink
        out["root"] = os.stat(mnt).st_nlink
        out["list"] = sorted(os.listdir(mnt / "d"))
        try:
            os.rmdir(mnt / "d")
        except OSError as exc:
            out["notempty"] = exc.errno
        os.rmdir(mnt / "d" / "b")
        out["two"] = os.stat(mnt / "d").st_nlink
        os.rename(mnt / "d" / "a", mnt / "a")
        out["moved"] = (os.stat(mnt / "d").st_nlink, os.stat(mnt).st_nlink)
        out["dotdot"] = os.stat(mnt / "a" / "..").st_ino == os.stat(mnt).st_ino
        try:
            os.rename(mnt / "d", mnt / "d" / "c" / "inside")
        except OSError as exc:
            out["into_self"] = exc.errno
        return out

    out = await client(work)
    assert out["empty"] == 2 and out["three"] == 5 and out["root"] == 3
    assert out["list"] == ["a", "b", "c", "file"]
    assert out["notempty"] == errno.ENOTEMPTY
    assert out["two"] == 4 and out["moved"] == (3, 4) and out["dotdot"]
    assert out["into_self"] == errno.EINVAL
    fs.check_invariants()


async def test_symlinks_and_hard_links(memfs):
    fs, mnt = memfs

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        (mnt / "f").write_bytes(b"data")
        os.symlink("f", mnt / "s")
        os.symlink("/nowhere/at/all", mnt / "dangling")
        out["readlink"] = os.readlink(mnt / "s")
        out["follow"] = (mnt / "s").read_bytes()
        st = os.lstat(mnt / "dangling")
        out["lstat"] = (stat.S_IMODE(st.st_mode), st.st_size, stat.S_ISLNK(st.st_mode))
        os.link(mnt / "f", mnt / "h")
        out["nlink"] = (
            os.stat(mnt / "f").st_nlink,
            os.stat(mnt / "f").st_ino == os.stat(mnt / "h").st_ino,
        )
        os.unlink(mnt / "f")
        out["after_unlink"] = (os.stat(mnt / "h").st_nlink, (mnt / "h").read_bytes())
        try:
            os.link(mnt, mnt / "dirlink")
        except OSError as exc:
            out["dirlink"] = exc.errno
        return out

    out = await client(work)
    assert out["readlink"] == "f" and out["follow"] == b"data"
    assert out["lstat"] == (0o777, len("/nowhere/at/all"), True)
    assert out["nlink"] == (2, True)
    assert out["after_unlink"] == (1, b"data")
    assert out["dirlink"] == errno.EPERM
    fs.check_invariants()


async def test_mknod_fifo_socket_device(memfs):
    _, mnt = memfs

    def work() -> list[Any]:
        os.mkfifo(mnt / "fifo", 0o640)
        os.mknod(mnt / "sock", stat.S_IFSOCK | 0o600)
        os.mknod(mnt / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(mnt / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
        res = []
        for name in ("fifo", "sock", "null", "blk"):
            st = os.lstat(mnt / name)
            res.append((stat.S_IFMT(st.st_mode), st.st_rdev))
        return res

    old = os.umask(0)
    try:
        res = await client(work)
    finally:
        os.umask(old)
    assert res == [
        (stat.S_IFIFO, 0), (stat.S_IFSOCK, 0),
        (stat.S_IFCHR, os.makedev(1, 3)), (stat.S_IFBLK, os.makedev(7, 0)),
    ]  # fmt: skip


async def test_fifo_passes_data(memfs):
    """A fifo on memfs is a real pipe (the kernel handles it; memfs only stores the node)."""
    _, mnt = memfs
    await client(os.mkfifo, mnt / "p")

    def work() -> bytes:
        w = subprocess.Popen(["sh", "-c", f"echo through > {mnt / 'p'}"])
        data = (mnt / "p").read_bytes()
        w.wait(10)
        return data

    assert await client(work) == b"through\n"


async def test_tmpfile(memfs):
    fs, mnt = memfs

    def work() -> tuple[bytes, int, int]:
        fd = os.open(mnt, os.O_TMPFILE | os.O_RDWR, 0o600)
        try:
            os.write(fd, b"anonymous")
            nlink_before = os.fstat(fd).st_nlink
            link_fd(fd, mnt / "named")
            nlink_after = os.fstat(fd).st_nlink
        finally:
            os.close(fd)
        return (mnt / "named").read_bytes(), nlink_before, nlink_after

    assert await client(work) == (b"anonymous", 0, 1)
    fs.check_invariants()


async def test_tmpfile_unlinked_is_freed(memfs):
    fs, mnt = memfs
    before = len(fs.inodes)

    def work() -> None:
        fd = os.open(mnt, os.O_TMPFILE | os.O_RDWR, 0o600)
        os.write(fd, b"x" * 100000)
        os.close(fd)

    await client(work)
    await wait_for(lambda: len(fs.inodes) == before and fs.used == 0)


async def test_unlink_while_open(memfs):
    fs, mnt = memfs

    def work() -> tuple[bytes, int]:
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.write(fd, b"before")
            os.unlink(mnt / "f")
            os.write(fd, b" after")
            nlink = os.fstat(fd).st_nlink
            return os.pread(fd, 100, 0), nlink
        finally:
            os.close(fd)

    assert await client(work) == (b"before after", 0)
    # Closed, unlinked and (after FORGET) unreferenced: the inode and its data are gone.
    await wait_for(lambda: len(fs.inodes) == 1 and fs.used == 0)
    fs.check_invariants()


async def test_name_too_long(memfs):
    _, mnt = memfs

    def work() -> list[int | None]:
        res: list[int | None] = []
        for fn in (
            lambda: (mnt / ("x" * 256)).write_bytes(b""),
            lambda: os.mkdir(mnt / ("y" * 256)),
            lambda: os.stat(mnt / ("z" * 256)),
            lambda: os.symlink("t", mnt / ("s" * 256)),
        ):
            try:
                fn()
                res.append(None)
            except OSError as exc:
                res.append(exc.errno)
        (mnt / ("x" * 255)).write_bytes(b"ok")
        return res

    assert await client(work) == [errno.ENAMETOOLONG] * 4


async def test_rename_flags(memfs):
    fs, mnt = memfs

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        (mnt / "a").write_bytes(b"A")
        (mnt / "b").write_bytes(b"B")
        os.mkdir(mnt / "d")
        (mnt / "d" / "inner").write_bytes(b"I")
        try:
            renameat2(mnt / "a", mnt / "b", RENAME_NOREPLACE)
        except OSError as exc:
            out["noreplace"] = exc.errno
        renameat2(mnt / "a", mnt / "c", RENAME_NOREPLACE)
        out["moved"] = sorted(os.listdir(mnt))
        renameat2(mnt / "c", mnt / "b", RENAME_EXCHANGE)
        out["exchanged"] = ((mnt / "b").read_bytes(), (mnt / "c").read_bytes())
        renameat2(mnt / "b", mnt / "d", RENAME_EXCHANGE)  # a file and a directory
        out["file_dir"] = (stat.S_ISDIR(os.stat(mnt / "b").st_mode), (mnt / "d").read_bytes())
        out["inner"] = (mnt / "b" / "inner").read_bytes()
        try:
            renameat2(mnt / "c", mnt / "nothere", RENAME_EXCHANGE)
        except OSError as exc:
            out["exchange_missing"] = exc.errno
        os.rename(mnt / "c", mnt / "d")  # plain rename replaces
        out["replaced"] = (sorted(os.listdir(mnt)), (mnt / "d").read_bytes())
        os.mkdir(mnt / "e")
        for src, target in ((mnt / "d", mnt / "b"), (mnt / "e", mnt / "d"), (mnt / "e", mnt / "b")):
            try:
                os.rename(src, target)
            except OSError as exc:
                out.setdefault("type_errors", []).append(exc.errno)
        return out

    out = await client(work)
    assert out["noreplace"] == errno.EEXIST
    assert out["moved"] == ["b", "c", "d"]
    assert out["exchanged"] == (b"A", b"B")
    assert out["file_dir"] == (True, b"A")
    assert out["inner"] == b"I"
    assert out["exchange_missing"] == errno.ENOENT
    assert out["replaced"] == (["b", "d"], b"B")
    assert out["type_errors"] == [errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY]
    fs.check_invariants()


# ---- extended attributes -----------------------------------------------------------------------


async def test_xattrs(memfs):
    _, mnt = memfs
    f = mnt / "f"

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:
            return errno.errorcode[exc.errno]

    def work() -> list[Any]:
        f.write_bytes(b"")
        return [
            attempt(os.setxattr, f, "user.a", b"1"),
            attempt(os.getxattr, f, "user.a"),
            attempt(os.setxattr, f, "user.a", b"2", os.XATTR_CREATE),
            attempt(os.setxattr, f, "user.b", b"2", os.XATTR_REPLACE),
            attempt(os.setxattr, f, "user.a", b"3", os.XATTR_REPLACE),
            attempt(os.setxattr, f, "user.b", b"", os.XATTR_CREATE),
            attempt(os.getxattr, f, "user.a"),
            attempt(os.getxattr, f, "user.b"),
            attempt(os.getxattr, f, "user.none"),
            attempt(os.setxattr, f, "trusted.t", b"T"),
            attempt(os.setxattr, f, "security.s", b"S"),
            attempt(os.setxattr, f, "bogus.x", b"?"),
            sorted(os.listxattr(f)),
            attempt(os.removexattr, f, "user.a"),
            attempt(os.removexattr, f, "user.a"),
            sorted(os.listxattr(f)),
            attempt(os.setxattr, f, "user.big", b"v" * 65536),
            len(os.getxattr(f, "user.big")),
        ]

    assert await client(work) == [
        None, b"1", "EEXIST", "ENODATA", None, None, b"3", b"", "ENODATA", None, None,
        errno.errorcode[errno.EOPNOTSUPP], ["security.s", "trusted.t", "user.a", "user.b"], None, "ENODATA",
        ["security.s", "trusted.t", "user.b"], None, 65536,
    ]  # fmt: skip


# ---- locks -----------------------------------------------------------------------------------------

_LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)       # bytes 0..9
fcntl.lockf(fd, fcntl.LOCK_SH, 10, 100)     # bytes 100..109
print("locked", flush=True)
sys.stdin.readline()
"""

_LOCK_PROBE = """
import fcntl, os, signal, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
def probe(start, typ):
    fl = struct.pack("hhqqi", typ, 0, start, 1, 0)
    t, _, s, l, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, fl))
    return "unlocked" if t == fcntl.F_UNLCK else f"held {s} {l} {pid}"
results = [probe(5, fcntl.F_WRLCK), probe(105, fcntl.F_RDLCK), probe(105, fcntl.F_WRLCK), probe(50, fcntl.F_WRLCK)]
for start, kind in ((5, fcntl.LOCK_EX), (105, fcntl.LOCK_SH), (105, fcntl.LOCK_EX)):
    try:
        fcntl.lockf(fd, kind | fcntl.LOCK_NB, 1, start)
        results.append("got")
    except OSError as exc:
        results.append(exc.errno)
class Alarm(Exception):
    pass
def on_alarm(*a):
    raise Alarm
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, 5)   # blocks until interrupted
    results.append("got")
except Alarm:
    results.append("interrupted")
print(results, flush=True)
print("waiting", flush=True)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 5)       # blocks until the holder exits
print("acquired", flush=True)
"""


async def test_posix_locks_between_processes(memfs):
    fs, mnt = memfs
    f = mnt / "f"
    await client(f.write_bytes, b"x" * 200)

    def work() -> tuple[str, str, str, int]:
        holder = subprocess.Popen(
            [sys.executable, "-c", _LOCK_HOLDER, str(f)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        probe = None
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            probe = subprocess.Popen(
                [sys.executable, "-c", _LOCK_PROBE, str(f)], stdout=subprocess.PIPE, text=True
            )
            assert probe.stdout is not None
            results = probe.stdout.readline().strip()
            waiting = probe.stdout.readline().strip()
            time.sleep(0.3)
            still_blocked = probe.poll() is None
            holder.stdin.write("go\n")
            holder.stdin.flush()
            holder.wait(10)
            acquired = probe.stdout.readline().strip()
            probe.wait(10)
            return results, waiting, acquired, still_blocked
        finally:
            for p in (holder, probe):
                if p is not None:
                    if p.poll() is None:
                        p.kill()
                    p.communicate()  # waits and closes the pipes

    results, waiting, acquired, still_blocked = await client(work)
    pid = "[0-9]+"
    assert re.fullmatch(
        rf"\['held 0 10 {pid}', 'unlocked', 'held 100 10 {pid}', 'unlocked', "
        rf"{errno.EAGAIN}, 'got', {errno.EAGAIN}, 'interrupted'\]",
        results,
    ), results
    assert waiting == "waiting" and still_blocked and acquired == "acquired"
    # Everyone is gone: no locks are left behind.
    await wait_for(lambda: not any(i.plocks for i in fs.inodes.values()))


_LOCK_WAITER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print("waiting", flush=True)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("acquired", flush=True)
except OSError as exc:
    print(exc.errno, flush=True)
"""


async def test_lock_waiter_gets_a_real_errno_when_the_mount_shuts_down(transport, tmp_path):
    """A shutdown cancels waiting handlers; they used to answer EINTR as if
    interrupted, and the kernel turned that into its internal ERESTARTSYS for a lock
    wait: the waiter failed with errno 512 ("Unknown error 512")."""
    path = tmp_path / "m"
    path.mkdir()
    f = path / "f"
    procs: list[trio.Process] = []
    try:
        with trio.CancelScope() as scope:
            async with tfu.mount(MemFS(), path, tfu.Options(transport=transport)) as m:
                await client(f.write_bytes, b"x")
                holder = await trio.lowlevel.open_process(
                    [sys.executable, "-c", _LOCK_HOLDER, str(f)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                )  # fmt: skip
                procs.append(holder)
                assert holder.stdout is not None
                with trio.fail_after(10):
                    assert (await holder.stdout.receive_some()).strip() == b"locked"
                waiter = await trio.lowlevel.open_process(
                    [sys.executable, "-c", _LOCK_WAITER, str(f)], stdout=subprocess.PIPE
                )
                procs.append(waiter)
                with trio.fail_after(10):  # its SETLKW handler is waiting for the lock
                    while m.stats()["blocked_handlers"] == 0:
                        await trio.sleep(0.01)
                scope.cancel()
        assert waiter.stdout is not None
        with trio.fail_after(10):
            out = b""
            while chunk := await waiter.stdout.receive_some():
                out += chunk
        # ENOTCONN from the handler, or ECONNABORTED if the abort of the busy mount
        # reached the kernel before that reply: never 512, never EINTR.
        gone = {str(errno.ENOTCONN).encode(), str(errno.ECONNABORTED).encode()}
        waiting, got = out.split()
        assert waiting == b"waiting" and got in gone, out
    finally:
        for p in procs:
            p.kill()
            await p.wait()
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    await stream.aclose()


class FlockServedMemFS(MemFS):
    """memfs with BSD locks served by the filesystem (FUSE_FLOCK_LOCKS) rather than
    kept by the kernel: what a network filesystem would do. Exercises the framework's
    FLOCK path and FUSE_RELEASE_FLOCK_UNLOCK."""

    def __init__(self) -> None:
        super().__init__()
        self.flocks: dict[int, dict[int, int]] = {}  # inode -> owner -> LOCK_SH/LOCK_EX
        self.flock_changed = trio.Event()

    async def flock(self, fh: int, owner: int, operation: int, wait: bool) -> None:
        held = self.flocks.setdefault(self.handles[fh].inode.ino, {})
        if held.pop(owner, None) is not None:  # a conversion first drops the lock held
            self.flock_changed.set()
            self.flock_changed = trio.Event()
        if operation == fcntl.LOCK_UN:
            return
        while any(o != owner and fcntl.LOCK_EX in (operation, m) for o, m in held.items()):
            if not wait:
                raise tfu.FUSEError(errno.EWOULDBLOCK)
            await self.flock_changed.wait()
        held[owner] = operation


@pytest.mark.parametrize("served", [False, True], ids=["kernel", "daemon"])
async def test_flock(mount_ops, served):
    fs = FlockServedMemFS() if served else MemFS()
    mnt = Path((await mount_ops(fs)).mountpoint)
    f = mnt / "f"

    def work() -> list[Any]:
        f.write_bytes(b"")
        res: list[Any] = []
        a, b = os.open(f, os.O_RDONLY), os.open(f, os.O_RDONLY)  # two open files: two owners
        try:
            fcntl.flock(a, fcntl.LOCK_SH)
            fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
            res.append("shared twice")
            try:
                fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                res.append("ex blocked")
            fcntl.flock(a, fcntl.LOCK_UN)
            fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
            res.append("ex after unlock")
            try:
                fcntl.flock(a, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                res.append("sh blocked")
        finally:
            os.close(b)  # closing drops b's lock
        try:
            fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
            res.append("ex after close")
        finally:
            os.close(a)
        return res

    assert await client(work) == [
        "shared twice",
        "ex blocked",
        "ex after unlock",
        "sh blocked",
        "ex after close",
    ]
    if served:
        await wait_for(lambda: not any(fs.flocks.values()))


# ---- metadata ----------------------------------------------------------------------------------


async def test_owner_umask_and_setgid_directory(memfs):
    _fs, mnt = memfs

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        old = os.umask(0o027)
        try:
            (mnt / "f").write_bytes(b"")
            os.mkdir(mnt / "d", 0o777)
            out["umask"] = (
                stat.S_IMODE(os.stat(mnt / "f").st_mode),
                stat.S_IMODE(os.stat(mnt / "d").st_mode),
            )
            os.mkdir(mnt / "sg")
            os.chown(mnt / "sg", 0, 1234)
            os.chmod(mnt / "sg", 0o2775)
            (mnt / "sg" / "f").write_bytes(b"")
            os.mkdir(mnt / "sg" / "sub")
            os.mknod(mnt / "sg" / "fifo", stat.S_IFIFO | 0o644)
            for name in ("f", "sub", "fifo"):
                st = os.stat(mnt / "sg" / name)
                out[name] = (st.st_gid, bool(st.st_mode & stat.S_ISGID))
        finally:
            os.umask(old)
        return out

    out = await client(work)
    assert out["umask"] == (0o640, 0o750)
    assert out["f"] == (1234, False) and out["fifo"] == (1234, False)
    assert out["sub"] == (1234, True)


async def test_chown_clears_suid(memfs):
    _, mnt = memfs

    def work() -> list[int]:
        f = mnt / "f"
        f.write_bytes(b"")
        os.chmod(f, 0o6755)
        before = stat.S_IMODE(os.stat(f).st_mode)
        os.chown(f, 1000, 1000)
        after = stat.S_IMODE(os.stat(f).st_mode)
        os.mkdir(mnt / "d")
        os.chmod(mnt / "d", 0o2755)
        os.chown(mnt / "d", 1000, 1000)
        return [before, after, stat.S_IMODE(os.stat(mnt / "d").st_mode)]

    assert await client(work) == [0o6755, 0o755, 0o2755]


async def test_timestamps(memfs):
    _, mnt = memfs

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        f, d = mnt / "f", mnt / "d"
        os.mkdir(d)

        def times(p: Path) -> tuple[int, int, int]:
            st = os.stat(p)
            return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns

        def changed(p: Path, action: Any, moved_to: Path | None = None) -> str:
            before = times(p)
            time.sleep(0.002)
            action()
            after = times(moved_to or p)
            return "".join(k for k, a, b in zip("amc", before, after, strict=True) if a != b)

        d0 = times(d)
        time.sleep(0.002)
        (d / "f").write_bytes(b"")
        out["create_in_dir"] = "".join(
            k for k, a, b in zip("amc", d0, times(d), strict=True) if a != b
        )
        f.write_bytes(b"x")
        out["write"] = changed(f, lambda: f.write_bytes(b"y"))
        out["chmod"] = changed(f, lambda: os.chmod(f, 0o600))
        out["chown"] = changed(f, lambda: os.chown(f, 0, 0))
        out["link"] = changed(f, lambda: os.link(f, mnt / "h"))
        out["unlink"] = changed(f, lambda: os.unlink(mnt / "h"))
        out["rename"] = changed(f, lambda: os.rename(f, mnt / "g"), mnt / "g")
        out["rename_dir"] = changed(mnt, lambda: os.rename(mnt / "g", mnt / "g2"))
        f = mnt / "g2"
        out["truncate"] = changed(f, lambda: os.truncate(f, 0))
        out["setxattr"] = changed(f, lambda: os.setxattr(f, "user.x", b"1"))
        # relatime: the first read after a write updates atime, the next one does not.
        # (A partial page: the kernel cannot have it cached, so the read reaches memfs.)
        f.write_bytes(b"data")
        out["read1"] = changed(f, f.read_bytes)
        out["read2"] = changed(f, f.read_bytes)
        os.utime(f, ns=(1_234_567_890_123_456_789, 987_654_321_987_654_321))
        st = os.stat(f)
        out["utime"] = (st.st_atime_ns, st.st_mtime_ns)
        return out

    out = await client(work)
    assert out["create_in_dir"] == "mc"
    assert out["write"] == "mc"
    assert out["chmod"] == "c" and out["chown"] == "c"
    assert out["link"] == "c" and out["unlink"] == "c" and out["rename"] == "c"
    assert out["rename_dir"] == "mc"
    assert out["truncate"] == "mc"
    assert out["setxattr"] == "c"
    assert out["read1"] == "a" and out["read2"] == ""
    assert out["utime"] == (1_234_567_890_123_456_789, 987_654_321_987_654_321)


async def test_statfs(mount_ops):
    fs, mnt = await mount_memfs(mount_ops, capacity=64 << 20, max_inodes=100)

    def work() -> tuple[os.statvfs_result, os.statvfs_result, int | None]:
        before = os.statvfs(mnt)
        (mnt / "f").write_bytes(b"x" * (1 << 20))
        for i in range(9):
            (mnt / f"e{i}").write_bytes(b"")
        after = os.statvfs(mnt)
        err = None
        try:
            (mnt / "huge").write_bytes(b"y" * (64 << 20))
        except OSError as exc:
            err = exc.errno
        return before, after, err

    before, after, err = await client(work)
    assert before.f_frsize * before.f_blocks == 64 << 20
    assert before.f_blocks - before.f_bfree == 0
    assert before.f_bfree - after.f_bfree == (1 << 20) // before.f_frsize
    assert (before.f_files, before.f_ffree, after.f_ffree) == (100, 99, 89)
    assert after.f_namemax == 255
    assert err == errno.ENOSPC

    def fill_inodes() -> int:
        try:
            for i in range(200):
                (mnt / f"n{i}").write_bytes(b"")
        except OSError as exc:
            return exc.errno
        return 0

    assert await client(fill_inodes) == errno.ENOSPC
    fs.check_invariants()


async def test_forget_balances_lookups(memfs):
    """readdirplus, lookups, hard links and renames: once the kernel forgets
    everything, every lookup count is back to zero (none negative, none leaked)."""
    fs, mnt = memfs

    def work() -> None:
        for i in range(300):
            (mnt / f"f{i}").write_bytes(b"x")
        os.mkdir(mnt / "d")
        for i in range(0, 300, 3):
            os.link(mnt / f"f{i}", mnt / "d" / f"l{i}")
        for i in range(1, 300, 3):
            os.rename(mnt / f"f{i}", mnt / "d" / f"r{i}")
        for _ in range(2):
            os.listdir(mnt)
            os.listdir(mnt / "d")
        for i in range(2, 300, 3):
            os.unlink(mnt / f"f{i}")
        drop_caches()

    await client(work)
    await wait_for(
        lambda: all(i.lookups == 0 for i in fs.inodes.values() if i.ino != tfu.ROOT_INODE)
    )
    fs.check_invariants()
    assert len(fs.inodes) == 1 + 1 + 200


# ---- permissions for another user ------------------------------------------------------------


@asynccontextmanager
async def public_memfs(
    transport: str, fs: MemFS | None = None, **options: Any
) -> AsyncIterator[tuple[MemFS, Path]]:
    """A memfs mounted with allow_other where an unprivileged user can reach it
    (pytest's tmp_path is in root's private 0700 directory)."""
    base = Path(tempfile.mkdtemp(prefix="memfs-public-"))
    base.chmod(0o755)
    fs = fs if fs is not None else MemFS()
    try:
        async with trio.open_nursery() as nursery:
            m = await nursery.start(
                tfu.serve, fs, base,
                tfu.Options(transport=transport, allow_other=True, **options),
            )  # fmt: skip
            yield fs, Path(m.mountpoint)
            nursery.cancel_scope.cancel()
    finally:
        base.rmdir()


_AS_NOBODY = """
import errno, os, sys
mnt = sys.argv[1]
results = {}
def attempt(name, fn, *args):
    try:
        fn(*args)
        results[name] = "ok"
    except OSError as exc:
        results[name] = errno.errorcode[exc.errno]
p = lambda *parts: os.path.join(mnt, *parts)
attempt("read_private", lambda: open(p("private")).read())
attempt("read_public", lambda: open(p("public")).read())
attempt("write_public", lambda: open(p("public"), "a").write("x"))
attempt("write_world", lambda: open(p("world"), "a").write("x"))
attempt("chmod_other", os.chmod, p("public"), 0o777)
attempt("chown_other", os.chown, p("public"), 65534, 65534)
attempt("create_in_root", lambda: open(p("new"), "w"))
attempt("unlink_in_root", os.unlink, p("public"))
attempt("rename_in_root", os.rename, p("public"), p("renamed"))
attempt("mkdir_in_open", os.mkdir, p("open", "mine"))
attempt("sticky_unlink", os.unlink, p("open", "roots"))
attempt("create_own", lambda: open(p("open", "own"), "w").write("hi"))
attempt("chmod_own", os.chmod, p("open", "own"), 0o4755)
attempt("chown_own_to_root", os.chown, p("open", "own"), 0, 0)
attempt("truncate_suid", os.truncate, p("suid"), 0)
st = os.stat(p("open", "own"))
results["own_owner"] = [st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)]
results["suid_mode"] = oct(os.stat(p("suid")).st_mode & 0o7777)
print(results)
"""


async def test_permissions_for_another_user(transport):
    async with public_memfs(transport) as (_fs, mnt):

        def setup() -> None:
            (mnt / "private").write_text("secret")
            os.chmod(mnt / "private", 0o600)
            (mnt / "public").write_text("hello")
            os.chmod(mnt / "public", 0o644)
            (mnt / "world").write_text("")
            os.chmod(mnt / "world", 0o666)
            (mnt / "suid").write_text("abc")
            os.chmod(mnt / "suid", 0o4777)
            os.mkdir(mnt / "open")
            os.chmod(mnt / "open", 0o1777)  # like /tmp
            (mnt / "open" / "roots").write_text("")

        await client(setup)
        proc = await client(
            lambda: subprocess.run(
                [SYSTEM_PYTHON, "-c", _AS_NOBODY, str(mnt)], user=NOBODY, group=NOBODY,
                capture_output=True, text=True, timeout=30, cwd="/",
            )
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        import ast

        res = ast.literal_eval(proc.stdout)
    assert res == {
        "read_private": "EACCES", "read_public": "ok", "write_public": "EACCES",
        "write_world": "ok", "chmod_other": "EPERM", "chown_other": "EPERM",
        "create_in_root": "EACCES", "unlink_in_root": "EACCES", "rename_in_root": "EACCES",
        "mkdir_in_open": "ok", "sticky_unlink": "EPERM", "create_own": "ok",
        "chmod_own": "ok", "chown_own_to_root": "EPERM", "truncate_suid": "ok",
        "own_owner": [NOBODY, NOBODY, "0o4755"], "suid_mode": "0o777",
    }  # fmt: skip


# ---- the command line ------------------------------------------------------------------------


def _memfs_cmd(mnt: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "examples" / "memfs.py"), str(mnt), *args]


async def test_cli_serves_until_unmount(tmp_path, transport):
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def work() -> tuple[subprocess.CompletedProcess[str], bytes]:
        proc = subprocess.Popen(
            _memfs_cmd(mnt, "--transport", transport, "-o", "fsname=clitest,max_write=65536"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while not any(
                f" {mnt} " in line for line in Path("/proc/mounts").read_text().splitlines()
            ):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "memfs did not mount"
                time.sleep(0.05)
            (mnt / "f").write_bytes(b"via cli")
            data = (mnt / "f").read_bytes()
            subprocess.run(["umount", str(mnt)], check=True)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), data

    res, data = await client(work, timeout=60)
    assert data == b"via cli"
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1
    stats = json.loads(lines[0])
    assert stats["requests"][transport] > 0 and set(stats["requests"]) == {"uring", "devfuse"}
    assert isinstance(stats["errors"], int)
    assert f"serving {mnt} over {transport}" in res.stderr


async def test_cli_sigterm(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def work() -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(
            _memfs_cmd(mnt, "--transport", "devfuse"), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while f" {mnt} " not in Path("/proc/mounts").read_text():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    res = await client(work, timeout=60)
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)) >= {"requests", "errors"}
    assert f" {mnt} " not in Path("/proc/mounts").read_text()


@pytest.mark.parametrize(
    "opt", ["fsname=a\\,b", "fsname=a=b", "subtype=x\\,allow_other", "max_write=lots"]
)
def test_cli_rejects_unsafe_options(tmp_path, opt):
    res = subprocess.run(
        _memfs_cmd(tmp_path, "--transport", "devfuse", "-o", opt),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("memfs: ") and (
        "inject" in res.stderr or "bad value" in res.stderr
    )
    assert res.stdout == ""


def test_options_parse_splits_like_libfuse():
    opts, own = tfu.Options.parse_with_own("noatime,,size=1\\,5", own={"size"})
    assert opts.extra == ("noatime",) and own == {"size": "1,5"}
    with pytest.raises(tfu.OptionError, match="inject"):
        tfu.Options.parse("fsname=x\\,allow_other")


def test_build_options():
    opts, fs_args = build_options(
        ["ro,allow_other,no_default_permissions,fsname=x,max_write=65536,"
         "entry_timeout=0.5,size=1G,nr_inodes=10k,noatime,writeback_cache"],
        "devfuse", False,
    )  # fmt: skip
    assert (opts.read_only, opts.allow_other, opts.default_permissions) == (True, True, False)
    assert (opts.fsname, opts.max_write, opts.entry_timeout) == ("x", 65536, 0.5)
    assert opts.writeback_cache and opts.extra == ("noatime",) and opts.transport == "devfuse"
    assert fs_args == {"capacity": 1 << 30, "max_inodes": 10 << 10}
    with pytest.raises(tfu.OptionError):
        build_options(["max_write=1"], "auto", False)


def test_cli_uring_unavailable_is_reported(tmp_path):
    from helpers import transport_unavailable

    if transport_unavailable("uring") is None:
        pytest.skip("io-uring is available here")
    res = subprocess.run(
        _memfs_cmd(tmp_path, "--transport", "uring"), capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 1
    assert "io-uring" in res.stderr and "Traceback" not in res.stderr
    assert f" {tmp_path} " not in Path("/proc/mounts").read_text()


# ---- scale ---------------------------------------------------------------------------------------

_MANY_FILES = """
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.close(os.open(os.path.join(d, f"file-{i:06d}"), os.O_CREAT | os.O_WRONLY, 0o644))
"""


async def test_scale_large_directory(memfs):
    fs, mnt = memfs
    n = 20_000
    d = mnt / "big"
    await client(os.mkdir, d)
    t0 = time.monotonic()
    cmd = [sys.executable, "-c", _MANY_FILES, str(d), str(n)]
    await client(lambda: subprocess.run(cmd, check=True, timeout=60), timeout=60)
    created = time.monotonic() - t0

    def listing() -> tuple[list[str], list[str]]:
        names = os.listdir(d)
        # Delete every other entry while a directory stream is open, then read on:
        # resumption must neither skip nor repeat the survivors.
        with os.scandir(d) as it:
            first = [next(it).name for _ in range(100)]
            for i in range(0, n, 2):
                os.unlink(d / f"file-{i:06d}")
            rest = [e.name for e in it]
        return names, first + rest

    t0 = time.monotonic()
    names, mixed = await client(listing, timeout=60)
    listed = time.monotonic() - t0
    assert len(names) == n and len(set(names)) == n
    survivors = {f"file-{i:06d}" for i in range(1, n, 2)}
    assert len(mixed) == len(set(mixed))
    assert survivors <= set(mixed) and set(mixed) <= set(names)
    fs.check_invariants()
    await client(drop_caches)
    await wait_for(
        lambda: all(i.lookups == 0 for i in fs.inodes.values() if i.ino != tfu.ROOT_INODE)
    )
    assert len(fs.inodes) == 2 + n // 2
    print(f"created {n} files in {created:.1f}s, listed and deleted half in {listed:.1f}s")


_BIG = """
import os, sys, time
mnt = sys.argv[1]
t0 = time.monotonic()
for d in range(100):
    os.mkdir(os.path.join(mnt, f"d{d}"))
    for i in range(1000):
        os.close(os.open(os.path.join(mnt, f"d{d}", f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
t1 = time.monotonic()
block = os.urandom(1 << 20)
with open(os.path.join(mnt, "data"), "wb") as f:
    for _ in range(1024):
        f.write(block)
open("/proc/sys/vm/drop_caches", "w").write("1")  # read from memfs, not the page cache
t2 = time.monotonic()
n = 0
with open(os.path.join(mnt, "data"), "rb") as f:
    while chunk := f.read(1 << 20):
        n += len(chunk)
t3 = time.monotonic()
k = sum(len(os.listdir(os.path.join(mnt, f"d{d}"))) for d in range(100))
t4 = time.monotonic()
os.stat(os.path.join(mnt, "d50", "f500"))
os.close(os.open(os.path.join(mnt, "d50", "late"), os.O_CREAT | os.O_WRONLY, 0o644))
t5 = time.monotonic()
print(f"{k} {n} create100k={t1-t0:.1f}s write1GiB={t2-t1:.1f}s read1GiB={t3-t2:.1f}s listdir100k={t4-t3:.1f}s one_more_op={1000*(t5-t4):.2f}ms")
"""


@pytest.mark.skipif(
    not os.environ.get("MEMFS_BIG"), reason="set MEMFS_BIG=1: 100k inodes and 1 GiB"
)
async def test_big_100k_inodes_1gib(memfs):
    fs, mnt = memfs
    proc = await client(
        lambda: subprocess.run(
            [sys.executable, "-c", _BIG, str(mnt)], capture_output=True, text=True, timeout=1200
        ),
        timeout=1300,
    )
    assert proc.returncode == 0, proc.stderr
    k, n, *timings = proc.stdout.split()
    assert int(k) == 100_000 and int(n) == 1 << 30
    assert len(fs.inodes) >= 100_000 + 100 and fs.used >= 1 << 30
    fs.check_invariants()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    timings.append(f"max_rss={rss_mib}MiB")
    print(" ".join(timings), file=sys.stderr)
    with open(os.environ.get("MEMFS_BIG_REPORT", os.devnull), "a") as rep:
        print(" ".join(timings), file=rep)


_WRITE_AS_NOBODY = """
import os, sys
mnt = sys.argv[1]
with open(os.path.join(mnt, "w"), "r+b") as f:
    f.write(b"x")
os.close(os.open(os.path.join(mnt, "t"), os.O_WRONLY | os.O_TRUNC))
print(oct(os.stat(os.path.join(mnt, "w")).st_mode & 0o7777), oct(os.stat(os.path.join(mnt, "t")).st_mode & 0o7777))
"""


class KillCountingMemFS(MemFS):
    """Counts setattr calls that carry kill_suidgid (the framework's route for the
    kernel's FUSE_WRITE_KILL_SUIDGID / FUSE_OPEN_KILL_SUIDGID)."""

    kills = 0

    async def setattr(self, inode, attr, fh, ctx):  # type: ignore[no-untyped-def]
        if attr.kill_suidgid:
            self.kills += 1
        return await super().setattr(inode, attr, fh, ctx)


@pytest.mark.parametrize("killpriv_v2", [False, True])
async def test_write_by_other_user_clears_suid(transport, killpriv_v2):
    """tmpfs clears set-user-ID on a write or O_TRUNC open by a user without CAP_FSETID.

    By default the kernel does it (a SETATTR of the mode); with handle_killpriv_v2 the
    filesystem does, and the framework routes the kernel's kill flags to setattr.
    """
    fs = KillCountingMemFS()
    async with public_memfs(transport, fs, handle_killpriv_v2=killpriv_v2) as (_fs, mnt):

        def setup() -> None:
            for name in ("w", "t"):
                (mnt / name).write_text("abc")
                os.chmod(mnt / name, 0o4777)

        await client(setup)
        proc = await client(
            lambda: subprocess.run(
                [SYSTEM_PYTHON, "-c", _WRITE_AS_NOBODY, str(mnt)], user=NOBODY, group=NOBODY,
                capture_output=True, text=True, timeout=30, cwd="/",
            )
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0o777", "0o777"]
    if killpriv_v2:
        assert fs.kills >= 2  # the write and the truncating open
