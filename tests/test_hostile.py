"""Hostile input, over both transports: handlers that reply wrongly, and names that
could smuggle in more than one path component.

Replies: every kind of handler returns something of the wrong type or out of range; the
caller must get EIO, the log must name the handler, the mount must keep serving, and
nothing past a reply buffer may be written (concurrent reads of another file check
that no neighbouring reply is corrupted). Names: ``/``, NUL, over 255 (and 1024) bytes,
non-UTF-8, through examples/memfs.

(The protocol decoder's fuzz harness is tests/test_protocol_fuzz.py; FUZZ_LONG=1 runs it
long.)
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import client
from memfs import MemFS

import trio_fuse_uring as tfu

ROOT = tfu.ROOT_INODE
GOOD = bytes((i * 7) % 251 for i in range(1 << 16))  # 64 KiB served by `good`
S = 4096  # size of every hostile regular file


def _attr(ino: int, mode: int = stat.S_IFREG | 0o666, **kw: Any) -> tfu.EntryAttributes:
    kw.setdefault("st_size", len(GOOD) if ino == 2 else S)
    return tfu.EntryAttributes(st_ino=ino, st_mode=mode, entry_timeout=0, attr_timeout=0, **kw)


def _bad_timeout() -> tfu.EntryAttributes:
    a = _attr(64)
    a.attr_timeout = -5.0  # mutated after validation
    return a


# name -> (inode, file type); the hostile behaviour is keyed by the name or inode.
FILES: dict[bytes, int] = {
    b"good": 2,
    b"read-too-much": 3,
    b"read-str": 4,
    b"read-int": 5,
    b"write-negative": 6,
    b"write-huge": 7,
    b"write-str": 8,
    b"lseek-negative": 9,
    b"lseek-huge": 10,
    b"cfr-negative": 11,
    b"cfr-too-much": 12,
    b"getattr-none": 13,
    b"getattr-negsize": 14,
    b"setattr-str": 15,
    b"open-int": 16,
    b"xattr-bad": 17,
    b"link": 18,
}
DIRS: dict[bytes, int] = {
    b"rd-tuple": 40,
    b"rd-strname": 41,
    b"rd-slash": 42,
    b"rd-nul": 43,
    b"rd-empty": 44,
    b"rd-list": 45,
    b"rd-negsize": 46,
    b"rd-negid": 47,
    b"opendir-str": 48,
}
# lookups that return garbage instead of attributes
BAD_LOOKUPS: dict[bytes, Callable[[], Any]] = {
    b"lookup-dict": lambda: {"st_ino": 5},
    b"lookup-none": lambda: None,
    b"lookup-negsize": lambda: _attr(60, st_size=-1),
    b"lookup-hugeino": lambda: _attr(2**64),
    b"lookup-hugemode": lambda: _attr(61, mode=stat.S_IFREG | (1 << 40)),
    b"lookup-negnlink": lambda: _attr(62, st_nlink=-1),
}
# Not errors: a timeout made invalid after validation is clamped to 0 (no caching).
FINE_LOOKUPS: dict[bytes, Callable[[], Any]] = {b"lookup-badtimeout": _bad_timeout}
# Seconds beyond the kernel's signed 64-bit range.
HUGE_TIME = {b"lookup-hugetime": lambda: _attr(63, st_mtime_ns=10**30)}


class HostileFS(tfu.Operations):
    def __init__(self) -> None:
        self.statfs_reply: Any = tfu.StatvfsData()

    async def getattr(self, inode, ctx):
        if inode == ROOT:
            return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o777, st_nlink=2)
        if inode == 13:
            return None
        if inode == 14:
            return _attr(14, st_size=-1)
        if inode in DIRS.values():
            return _attr(inode, stat.S_IFDIR | 0o777, st_nlink=2)
        return _attr(inode, stat.S_IFLNK | 0o777 if inode == 18 else stat.S_IFREG | 0o666)

    async def lookup(self, parent_inode, name, ctx):
        for table in (BAD_LOOKUPS, FINE_LOOKUPS, HUGE_TIME):
            if name in table:
                return table[name]()
        if name in FILES:
            ino = FILES[name]
            return _attr(ino, stat.S_IFLNK | 0o777 if ino == 18 else stat.S_IFREG | 0o666)
        if name in DIRS:
            return _attr(DIRS[name], stat.S_IFDIR | 0o777, st_nlink=2)
        raise tfu.FUSEError(errno.ENOENT)

    async def setattr(self, inode, attr, fh, ctx):
        return "not attributes"

    async def readlink(self, inode, ctx):
        return "a str, not bytes"

    async def mkdir(self, parent_inode, name, mode, ctx):
        return None

    async def create(self, parent_inode, name, mode, flags, ctx):
        if name == b"create-reversed":
            return (_attr(70), tfu.FileInfo(fh=70))
        return tfu.FileInfo(fh=70)

    async def open(self, inode, flags, ctx):
        if inode == 16:
            return 16
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def opendir(self, inode, ctx):
        return "a str" if inode == 48 else inode

    async def read(self, fh, off, size):
        if fh == 2:
            return GOOD[off : off + size]
        if fh == 3:
            return b"X" * (size + 1)
        if fh == 4:
            return "a str"
        if fh == 5:
            return size
        return bytes(min(size, max(0, S - off)))

    async def write(self, fh, off, buf):
        return {6: -1, 7: 1 << 40, 8: "4096"}.get(fh, len(buf))

    async def lseek(self, fh, offset, whence):
        return {9: -5, 10: 1 << 64}.get(fh, offset)

    async def copy_file_range(self, fh_in, off_in, fh_out, off_out, length, flags):
        return -1 if fh_in == 11 else length + 1

    async def getxattr(self, inode, name, ctx):
        return 42 if name == b"user.int" else "a str"

    async def listxattr(self, inode, ctx):
        return "user.a" if inode == 17 else ["user.a"]

    async def statfs(self, ctx):
        return self.statfs_reply

    def readdir(self, fh, start_id, ctx):
        if fh == 45:
            return [tfu.DirEntry(b"x", _attr(82), 1)]  # a list, not an async iterator
        return self._readdir(fh, start_id)

    async def _readdir(self, fh, start_id):
        if start_id:
            return
        a = _attr(fh, stat.S_IFREG | 0o644)
        bad = {
            40: ("name", a, 1),
            41: tfu.DirEntry("a str", a, 1),  # type: ignore[arg-type]
            42: tfu.DirEntry(b"a/b", a, 1),
            43: tfu.DirEntry(b"a\0b", a, 1),
            44: tfu.DirEntry(b"", a, 1),
            46: tfu.DirEntry(b"neg", _attr(80, st_size=-1), 1),
            47: tfu.DirEntry(b"negid", a, -1),
        }[fh]
        yield tfu.DirEntry(b"fine", _attr(81), 100)
        yield bad


def _open_rw(path: str) -> int:
    return os.open(path, os.O_RDWR)


def _cases(mnt: str) -> list[tuple[str, str, Callable[[], Any]]]:
    """(what, handler named in the log, blocking call that must fail with EIO)."""
    p = lambda name: os.path.join(mnt, name)  # noqa: E731

    def pread(name: str) -> Callable[[], Any]:
        def f() -> Any:
            fd = os.open(p(name), os.O_RDONLY)
            try:
                return os.pread(fd, S, 0)
            finally:
                os.close(fd)

        return f

    def pwrite(name: str) -> Callable[[], Any]:
        def f() -> Any:
            fd = _open_rw(p(name))
            try:
                return os.pwrite(fd, b"w" * S, 0)
            finally:
                os.close(fd)

        return f

    def seek(name: str) -> Callable[[], Any]:
        def f() -> Any:
            fd = os.open(p(name), os.O_RDONLY)
            try:
                return os.lseek(fd, 0, os.SEEK_DATA)
            finally:
                os.close(fd)

        return f

    def cfr(name: str) -> Callable[[], Any]:
        def f() -> Any:
            a, b = os.open(p(name), os.O_RDONLY), _open_rw(p("good"))
            try:
                return os.copy_file_range(a, b, 100, 0, 0)
            finally:
                os.close(a)
                os.close(b)

        return f

    cases: list[tuple[str, str, Callable[[], Any]]] = [
        (f"lookup returns {n.decode()[7:]}", "lookup", lambda n=n: os.stat(p(n.decode())))
        for n in BAD_LOOKUPS
    ]
    cases += [
        ("getattr returns None", "getattr", lambda: os.stat(p("getattr-none"))),
        ("getattr returns st_size -1", "getattr", lambda: os.stat(p("getattr-negsize"))),
        ("setattr returns str", "setattr", lambda: os.chmod(p("setattr-str"), 0o600)),
        ("readlink returns str", "readlink", lambda: os.readlink(p("link"))),
        ("mkdir returns None", "mkdir", lambda: os.mkdir(p("newdir"))),
        ("create returns FileInfo", "create", lambda: os.open(p("create-x"), os.O_CREAT)),
        (
            "create returns (attr, FileInfo)",
            "create",
            lambda: os.open(p("create-reversed"), os.O_CREAT | os.O_RDWR),
        ),
        ("open returns int", "open", lambda: os.open(p("open-int"), os.O_RDONLY)),
        ("opendir returns str", "opendir", lambda: os.listdir(p("opendir-str"))),
        ("read returns size+1 bytes", "read", pread("read-too-much")),
        ("read returns str", "read", pread("read-str")),
        ("read returns int", "read", pread("read-int")),
        ("write returns -1", "write", pwrite("write-negative")),
        ("write returns 2**40", "write", pwrite("write-huge")),
        ("write returns str", "write", pwrite("write-str")),
        ("lseek returns -5", "lseek", seek("lseek-negative")),
        ("lseek returns 2**64", "lseek", seek("lseek-huge")),
        ("copy_file_range returns -1", "copy_file_range", cfr("cfr-negative")),
        ("copy_file_range returns length+1", "copy_file_range", cfr("cfr-too-much")),
        ("getxattr returns int", "getxattr", lambda: os.getxattr(p("good"), "user.int")),
        ("getxattr returns str", "getxattr", lambda: os.getxattr(p("good"), "user.str")),
        ("listxattr returns str", "listxattr", lambda: os.listxattr(p("xattr-bad"))),
        ("listxattr returns [str]", "listxattr", lambda: os.listxattr(p("good"))),
    ]
    cases += [
        (f"readdir {d.decode()}", "readdir", lambda d=d: os.listdir(p(d.decode())))
        for d in DIRS
        if d != b"opendir-str"
    ]
    return cases


def _reader(path: str, stop: threading.Event, tally: dict[str, int]) -> None:
    """Read ``good`` in 64 KiB direct reads until stopped, checking every byte."""
    fd = os.open(path, os.O_RDONLY)
    try:
        while not stop.is_set():
            data = os.pread(fd, len(GOOD), 0)
            tally["ok" if data == GOOD else "corrupt"] += 1
    finally:
        os.close(fd)


async def test_wrong_replies_answer_eio_and_name_the_handler(mount_ops, transport, caplog):
    ops = HostileFS()
    m = await mount_ops(ops)
    good = os.path.join(m.mountpoint, "good")
    stop = threading.Event()
    tally = {"ok": 0, "corrupt": 0}
    results: dict[str, str] = {}
    async with trio.open_nursery() as nursery:
        # Readers of a well-behaved file run throughout: no rejected reply may bleed
        # into theirs (over io-uring each reply is written into a shared ring buffer).
        for _ in range(2):
            nursery.start_soon(functools.partial(client, _reader, good, stop, tally, timeout=120))
        with caplog.at_level(logging.ERROR, logger="trio_fuse_uring"):
            for what, handler, call in _cases(m.mountpoint):
                before = len(caplog.records)
                try:
                    await client(call)
                except OSError as exc:
                    results[what] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                else:
                    results[what] = "no error"
                logged = [r.getMessage() for r in caplog.records[before:]]
                if not any(f"handler {handler}()" in msg for msg in logged):
                    results[what] += f" (log does not name {handler}(): {logged})"
            # statfs is per mount: switch its reply.
            for bad in [(1, 2, 3), None]:
                ops.statfs_reply = bad
                try:
                    await client(os.statvfs, m.mountpoint)
                    results[f"statfs returns {bad!r}"] = "no error"
                except OSError as exc:
                    results[f"statfs returns {bad!r}"] = errno.errorcode[exc.errno or 0]
            ops.statfs_reply = tfu.StatvfsData()
            # A burst of too-long reads, concurrent with the readers.
            too_much = os.path.join(m.mountpoint, "read-too-much")

            def burst() -> int:
                n = 0
                fd = os.open(too_much, os.O_RDONLY)
                for _ in range(500):
                    try:
                        os.pread(fd, S, 0)
                    except OSError as exc:
                        assert exc.errno == errno.EIO
                        n += 1
                os.close(fd)
                return n

            assert await client(burst) == 500
        stop.set()
    unexpected = {w: r for w, r in results.items() if r != "EIO"}
    assert unexpected == {}, unexpected
    assert tally["corrupt"] == 0 and tally["ok"] > 0, tally
    # Still serving, and the counters saw every rejected reply.
    assert await client(Path(good).read_bytes) == GOOD
    assert (await client(os.stat, m.mountpoint)).st_ino == ROOT
    assert m.stats()["handler_failures"] >= len(results) + 500
    assert "Traceback" not in "".join(
        r.getMessage() for r in caplog.records if "returned" in r.getMessage()
    )
    # A timeout made invalid after validation is clamped to 0 rather than sent.
    assert (await client(os.stat, os.path.join(m.mountpoint, "lookup-badtimeout"))).st_ino == 64


async def test_out_of_range_timestamp_is_rejected(mount_ops, caplog):
    m = await mount_ops(HostileFS())
    with (
        caplog.at_level(logging.ERROR, logger="trio_fuse_uring"),
        pytest.raises(OSError) as exc,
    ):
        st = await client(os.stat, os.path.join(m.mountpoint, "lookup-hugetime"))
        print("st_mtime_ns", st.st_mtime_ns, "asked", 10**30)
    assert exc.value.errno == errno.EIO
    assert "handler lookup()" in caplog.text


# ---- names ----------------------------------------------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)


def _libc_creat(path: bytes) -> tuple[int, int]:
    fd = _libc.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    err = ctypes.get_errno()
    if fd >= 0:
        os.close(fd)
    return fd, err


async def test_hostile_names_through_memfs(mount_ops):
    m = await mount_ops(MemFS())
    mnt = os.fsencode(m.mountpoint)
    j = lambda name: mnt + b"/" + name  # noqa: E731

    # '/' separates components: "sub/x" is x in sub, never a name with a slash.
    with pytest.raises(FileNotFoundError):
        await client(os.open, j(b"nodir/x"), os.O_CREAT | os.O_WRONLY)
    await client(os.mkdir, j(b"sub"))
    await client(lambda: os.close(os.open(j(b"sub/x"), os.O_CREAT | os.O_WRONLY)))
    assert await client(os.listdir, j(b"sub")) == [b"x"]
    assert b"sub/x" not in await client(os.listdir, mnt)

    # NUL cannot be passed: Python refuses, and C strings end at the NUL.
    with pytest.raises(ValueError, match="null"):
        await client(os.open, j(b"a\0b"), os.O_CREAT | os.O_WRONLY)
    fd, err = await client(_libc_creat, j(b"nul\0tail"))
    assert fd >= 0, os.strerror(err)
    names = await client(os.listdir, mnt)
    assert b"nul" in names and not any(b"\0" in n or b"tail" in n for n in names)

    # 255 bytes is NAME_MAX; 256 is refused by memfs, over 1024 by the kernel (FUSE);
    # a path over PATH_MAX by the VFS.
    longest = b"n" * 255
    await client(lambda: os.close(os.open(j(longest), os.O_CREAT | os.O_WRONLY)))
    assert (await client(os.stat, j(longest))).st_size == 0
    for name in (b"n" * 256, b"n" * 1025, b"n" * 5000):
        for call in (os.stat, os.mkdir, lambda p: os.open(p, os.O_CREAT | os.O_WRONLY)):
            with pytest.raises(OSError) as exc:
                await client(call, j(name))
            assert exc.value.errno == errno.ENAMETOOLONG, (len(name), call)
    with pytest.raises(OSError) as exc:
        await client(os.rename, j(longest), j(b"r" * 256))
    assert exc.value.errno == errno.ENAMETOOLONG

    # Non-UTF-8 names round-trip byte for byte.
    weird = [
        b"\xff\xfe",
        b"caf\xe9",
        os.fsencode("sur\udcc3rogate"),
        b"\x80" * 255,
        b"\x01\x1b[31m",
    ]
    for i, name in enumerate(weird):
        await client(lambda n=name, i=i: Path(os.fsdecode(j(n))).write_bytes(b"%d" % i))
    listed = set(await client(os.listdir, mnt))
    assert set(weird) <= listed
    listed_str = set(await client(os.listdir, m.mountpoint))
    assert {os.fsdecode(n) for n in weird} <= listed_str
    for i, name in enumerate(weird):
        assert await client(Path(os.fsdecode(j(name))).read_bytes) == b"%d" % i
        st = await client(os.stat, j(name))
        assert st.st_size == len(b"%d" % i)
        await client(os.setxattr, j(name), b"user.k", name[:64])
        assert await client(os.getxattr, j(name), b"user.k") == name[:64]
        new = (name + b"\xfe")[-255:]
        await client(os.rename, j(name), j(new))
        assert new in await client(os.listdir, mnt)
        await client(os.unlink, j(new))
    assert not set(weird) & set(await client(os.listdir, mnt))


class NulXattrFS(HostileFS):
    async def listxattr(self, inode, ctx):
        return [b"user.a\0user.injected"]


async def test_listxattr_name_with_nul_is_rejected(mount_ops):
    m = await mount_ops(NulXattrFS())
    with pytest.raises(OSError) as exc:
        names = await client(os.listxattr, os.path.join(m.mountpoint, "good"))
        print("caller saw", names)
    assert exc.value.errno == errno.EIO
