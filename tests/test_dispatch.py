"""The Dispatcher without a kernel: requests built from bytes, replies collected in memory.

A :class:`Recorder` stands in for a transport (it is a ``Replier``). :func:`serve_one`
does what a transport's reader does with one request: ``start`` it inline and, if the
handler blocked, ``finish`` it in the same task under a cancel scope entered first.
"""

from __future__ import annotations

import errno
import gc
import logging
import stat
import struct
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

from trio_fuse_uring import _protocol as P
from trio_fuse_uring._dispatch import Blocked, Dispatcher
from trio_fuse_uring.ops import (
    DirEntry,
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
    RequestContext,
    SetattrFields,
)

HDR = "<IIQQIIIHH"  # fuse_in_header, from fuse.h
LOGGER = "trio_fuse_uring"

# opcodes from fuse.h
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, MKDIR, RENAME, OPEN, READ, WRITE = (
    1, 2, 3, 4, 5, 9, 12, 14, 15, 16,
)  # fmt: skip
STATFS, GETXATTR, LISTXATTR, OPENDIR, READDIR, INTERRUPT = 17, 22, 23, 27, 28, 36
BATCH_FORGET, READDIRPLUS, RENAME2, STATX = 42, 44, 45, 52

Reply = tuple[int, int, bytes | None]


class Recorder:
    """A scripted in-memory transport: every reply, in order."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.slots: list[Any] = []
        self.released: list[int] = []  # requests that take no reply (FORGET...)

    def reply(self, slot: Any, unique: int, error: int, body: Any) -> None:
        self.slots.append(slot)
        self.replies.append((unique, error, None if body is None else bytes(body)))

    def no_reply(self, slot: Any, unique: int) -> None:
        self.released.append(unique)

    def reply_buffer(self, slot: Any, size: int) -> memoryview:
        return memoryview(bytearray(size))


def request(
    opcode: int, arg: bytes = b"", payload: bytes = b"", *, unique: int = 1, nodeid: int = 1
) -> P.Request:
    body = arg + payload
    buf = struct.pack(HDR, 40 + len(body), opcode, unique, nodeid, 1000, 100, 4242, 0, 0) + body
    return P.decode_devfuse(memoryview(buf), P.Negotiated())


def read_arg(size: int, offset: int = 0, fh: int = 0) -> bytes:
    return struct.pack("<QQIIQII", fh, offset, size, 0, 0, 0, 0)


async def serve_one(d: Dispatcher, req: P.Request, rec: Recorder, slot: Any = None) -> bool:
    """Returns True if the handler blocked (and was finished here)."""
    with trio.CancelScope() as scope:
        blocked = d.start(req, rec, slot)
        if blocked is None:
            return False
        await d.finish(blocked, scope)
    return True


async def run(ops: Operations, req: P.Request, **kw: Any) -> Reply:
    rec = Recorder()
    await serve_one(Dispatcher(ops, **kw), req, rec)
    assert len(rec.replies) == 1, rec.replies
    return rec.replies[0]


def attrs(ino: int = 5, mode: int = stat.S_IFREG | 0o644) -> EntryAttributes:
    return EntryAttributes(st_ino=ino, st_mode=mode)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "req",
    [
        request(LOOKUP, payload=b"x\0"),
        request(GETATTR, struct.pack("<IIQ", 0, 0, 0)),
        request(READLINK),
        request(READ, read_arg(10)),
        request(READDIR, read_arg(4096)),
        request(STATX, b"\0" * 24),  # decoded as Unsupported
    ],
    ids=lambda r: type(r).__name__,
)
async def test_enosys_for_unimplemented(req: P.Request) -> None:
    assert await run(Operations(), req) == (req.unique, -errno.ENOSYS, None)


async def test_fuse_error_becomes_negative_errno(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
            raise FUSEError(errno.ENOENT)

    d = Dispatcher(Ops())
    rec = Recorder()
    await serve_one(d, request(LOOKUP, payload=b"nope\0", unique=3), rec, slot="S")
    assert rec.replies == [(3, -errno.ENOENT, None)]
    assert rec.slots == ["S"]  # the transport's slot comes back with the reply
    assert d.stats.errors == 1 and d.stats.handler_failures == 0
    assert not records(caplog, logging.ERROR)


async def test_exception_becomes_eio_with_one_log_record(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
            raise RuntimeError("boom")

    d = Dispatcher(Ops())
    rec = Recorder()
    await serve_one(d, request(LOOKUP, payload=b"victim\0", unique=17), rec)
    assert rec.replies == [(17, -errno.EIO, None)]
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1
    msg = errors[0].getMessage()
    assert "lookup()" in msg and "17" in msg and "LOOKUP" in msg and "victim" in msg
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError
    assert "boom" in caplog.text  # the traceback is in the log
    assert d.stats.handler_failures == 1


async def test_wrong_return_type_is_eio_naming_handler(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            return {"st_ino": inode}  # type: ignore[return-value]

    reply = await run(Ops(), request(GETATTR, struct.pack("<IIQ", 0, 0, 0), unique=4))
    assert reply == (4, -errno.EIO, None)
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1
    msg = errors[0].getMessage()
    assert "getattr()" in msg and "EntryAttributes" in msg and "dict" in msg


async def test_read_returning_too_much_is_eio(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def read(self, fh: int, off: int, size: int) -> bytes:
            return b"x" * (size + 1)

    assert await run(Ops(), request(READ, read_arg(8), unique=5)) == (5, -errno.EIO, None)
    msg = records(caplog, logging.ERROR)[0].getMessage()
    assert "read()" in msg and "at most 8 bytes" in msg


async def test_read_accepts_any_buffer() -> None:
    class Ops(Operations):
        async def read(self, fh: int, off: int, size: int) -> bytes:
            return memoryview(bytearray(b"abc"))  # type: ignore[return-value]

    assert await run(Ops(), request(READ, read_arg(8), unique=5)) == (5, 0, b"abc")


async def test_write_gets_the_data_view() -> None:
    seen = []

    class Ops(Operations):
        async def write(self, fh: int, off: int, buf: memoryview) -> int:
            seen.append((fh, off, bytes(buf)))
            return len(buf)

    arg = struct.pack("<QQIIQII", 3, 100, 5, 0, 0, 0, 0)
    assert await run(Ops(), request(WRITE, arg, b"hello")) == (1, 0, struct.pack("<II", 5, 0))
    assert seen == [(3, 100, b"hello")]


async def test_successful_lookup_encodes_entry() -> None:
    class Ops(Operations):
        async def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
            assert (parent, name) == (1, b"f")
            assert (ctx.uid, ctx.gid, ctx.pid, ctx.umask) == (1000, 100, 4242, 0)
            return attrs(77)

    unique, error, body = await run(
        Ops(), request(LOOKUP, payload=b"f\0"), entry_timeout=2.5, attr_timeout=0
    )
    assert (unique, error) == (1, 0)
    assert body is not None and len(body) == 128
    assert struct.unpack_from("<QQQQII", body) == (77, 0, 2, 0, 500_000_000, 0)


async def test_mkdir_passes_umask_in_context() -> None:
    seen: list[RequestContext] = []

    class Ops(Operations):
        async def mkdir(
            self, parent: int, name: bytes, mode: int, ctx: RequestContext
        ) -> EntryAttributes:
            seen.append(ctx)
            return attrs(9, stat.S_IFDIR | mode)

    _, error, _ = await run(Ops(), request(MKDIR, struct.pack("<II", 0o755, 0o027), b"d\0"))
    assert error == 0 and seen[0].umask == 0o027


async def test_defaults_statfs_and_opendir() -> None:
    _, error, body = await run(Operations(), request(STATFS))
    assert error == 0 and body is not None and len(body) == 80
    assert struct.unpack_from("<I", body, 44)[0] == 255  # namelen
    assert await run(Operations(), request(OPENDIR, struct.pack("<II", 0, 0))) == (
        1, 0, struct.pack("<QIi", 0, 0, 0),
    )  # fmt: skip


async def test_open_flags_from_fileinfo() -> None:
    class Ops(Operations):
        async def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
            return FileInfo(fh=42, direct_io=True, keep_cache=True, noflush=True)

    _, error, body = await run(Ops(), request(OPEN, struct.pack("<II", 2, 0)))
    assert (error, body) == (0, struct.pack("<QIi", 42, 1 | 2 | 32, 0))


# --- xattrs ----------------------------------------------------------------------------------


class XattrOps(Operations):
    async def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        return b"value!"

    async def listxattr(self, inode: int, ctx: RequestContext) -> Sequence[bytes]:
        return [b"user.a", b"user.bb"]


def getxattr(size: int) -> P.Request:
    return request(GETXATTR, struct.pack("<II", size, 0), b"user.a\0")


def listxattr(size: int) -> P.Request:
    return request(LISTXATTR, struct.pack("<II", size, 0))


async def test_getxattr_size_probe_and_erange() -> None:
    assert await run(XattrOps(), getxattr(0)) == (1, 0, struct.pack("<II", 6, 0))
    assert await run(XattrOps(), getxattr(5)) == (1, -errno.ERANGE, None)
    assert await run(XattrOps(), getxattr(6)) == (1, 0, b"value!")
    assert await run(XattrOps(), getxattr(4096)) == (1, 0, b"value!")


async def test_listxattr_size_probe_and_erange() -> None:
    names = b"user.a\0user.bb\0"
    assert await run(XattrOps(), listxattr(0)) == (1, 0, struct.pack("<II", len(names), 0))
    assert await run(XattrOps(), listxattr(len(names) - 1)) == (1, -errno.ERANGE, None)
    assert await run(XattrOps(), listxattr(len(names))) == (1, 0, names)


async def test_listxattr_wrong_type(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def listxattr(self, inode: int, ctx: RequestContext) -> Sequence[bytes]:
            return b"user.a\0"

    assert await run(Ops(), listxattr(100)) == (1, -errno.EIO, None)
    assert "listxattr()" in records(caplog, logging.ERROR)[0].getMessage()


# --- rename and setattr ------------------------------------------------------------------------


class RenameOps(Operations):
    def __init__(self) -> None:
        self.calls: list[tuple[int, bytes, int, bytes, int]] = []

    async def rename(
        self,
        old_parent: int,
        old: bytes,
        new_parent: int,
        new: bytes,
        flags: int,
        ctx: RequestContext,
    ) -> None:
        self.calls.append((old_parent, old, new_parent, new, flags))


@pytest.mark.parametrize("flags", [8, 1 << 31, 12])  # junk, junk, junk with RENAME_WHITEOUT
async def test_rename_unsupported_flags_einval(flags: int) -> None:
    ops = RenameOps()
    req = request(RENAME2, struct.pack("<QII", 9, flags, 0), b"a\0b\0", nodeid=3)
    assert await run(ops, req) == (1, -errno.EINVAL, None)
    assert ops.calls == []


# none, RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (alone and with NOREPLACE)
@pytest.mark.parametrize("flags", [0, 1, 2, 4, 5])
async def test_rename_supported_flags(flags: int) -> None:
    ops = RenameOps()
    req = request(RENAME2, struct.pack("<QII", 9, flags, 0), b"a\0b\0", nodeid=3)
    assert await run(ops, req) == (1, 0, None)
    assert ops.calls == [(3, b"a", 9, b"b", flags)]
    ops.calls.clear()
    assert await run(ops, request(RENAME, struct.pack("<Q", 9), b"a\0b\0", nodeid=3)) == (
        1,
        0,
        None,
    )
    assert ops.calls == [(3, b"a", 9, b"b", 0)]


class SetattrOps(Operations):
    def __init__(self) -> None:
        self.calls: list[tuple[SetattrFields, int | None]] = []

    async def setattr(
        self, inode: int, attr: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        self.calls.append((attr, fh))
        return attrs(inode)


def setattr_req(valid: int, **kw: int) -> P.Request:
    f = {
        "fh": 0, "size": 0, "lock_owner": 0, "atime": 0, "mtime": 0, "ctime": 0,
        "atimensec": 0, "mtimensec": 0, "ctimensec": 0, "mode": 0, "uid": 0, "gid": 0,
    } | kw  # fmt: skip
    arg = struct.pack(
        "<IIQQQQQQIIIIIIII", valid, 0, f["fh"], f["size"], f["lock_owner"], f["atime"],
        f["mtime"], f["ctime"], f["atimensec"], f["mtimensec"], f["ctimensec"], f["mode"], 0,
        f["uid"], f["gid"], 0,
    )  # fmt: skip
    return request(SETATTR, arg, nodeid=5)


MODE, UID, GID, SIZE, ATIME, MTIME, FH = 1, 2, 4, 8, 16, 32, 64
ATIME_NOW, MTIME_NOW, LOCKOWNER, CTIME, KILL_SUIDGID = 128, 256, 512, 1024, 2048


@pytest.mark.parametrize(
    ("valid", "fields", "expected", "fh"),
    [
        (0, {}, SetattrFields(), None),
        (MODE | UID | GID, {"mode": 0o100600, "uid": 7, "gid": 8},
         SetattrFields(st_mode=0o100600, st_uid=7, st_gid=8), None),
        (SIZE | FH | LOCKOWNER, {"size": 10, "fh": 33, "lock_owner": 9},
         SetattrFields(st_size=10), 33),
        (ATIME | MTIME | CTIME,
         {"atime": 1, "atimensec": 2, "mtime": 3, "mtimensec": 4, "ctime": 5, "ctimensec": 6},
         SetattrFields(st_atime_ns=1_000_000_002, st_mtime_ns=3_000_000_004,
                       st_ctime_ns=5_000_000_006), None),
        (ATIME_NOW | MTIME_NOW, {}, SetattrFields(atime_now=True, mtime_now=True), None),
        # The kernel sets ATIME together with ATIME_NOW: "now" wins, no timestamp.
        (ATIME | ATIME_NOW | MTIME | MTIME_NOW, {"atime": 9, "mtime": 9},
         SetattrFields(atime_now=True, mtime_now=True), None),
        (SIZE | KILL_SUIDGID, {"size": 0}, SetattrFields(st_size=0, kill_suidgid=True), None),
        # Fields without their valid bit are ignored.
        (0, {"mode": 0o777, "size": 5, "uid": 1, "atime": 1}, SetattrFields(), None),
    ],
)  # fmt: skip
async def test_setattr_fields(
    valid: int, fields: dict[str, int], expected: SetattrFields, fh: int | None
) -> None:
    ops = SetattrOps()
    _, error, body = await run(ops, setattr_req(valid, **fields))
    assert error == 0 and body is not None and len(body) == 104
    assert ops.calls == [(expected, fh)]


# --- readdir -----------------------------------------------------------------------------------

DIR = stat.S_IFDIR | 0o755


class DirOps(Operations):
    """Five entries: '.', '..', then a, b, c; logs what the generator saw."""

    NAMES: ClassVar[list[bytes]] = [b".", b"..", b"a", b"b", b"c"]

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    async def readdir(self, fh: int, start_id: int, ctx: RequestContext) -> AsyncIterator[DirEntry]:  # type: ignore[override]
        self.log.append(("start", start_id))
        try:
            for i in range(start_id, len(self.NAMES)):
                name = self.NAMES[i]
                mode = DIR if i < 2 else stat.S_IFREG | 0o644
                sent = yield DirEntry(name, EntryAttributes(st_ino=100 + i, st_mode=mode), i + 1)
                self.log.append(("accepted", name, sent))
            self.log.append(("exhausted",))
        finally:
            self.log.append(("closed",))


def parse(body: bytes, plus: bool) -> list[tuple[bytes, int, int]]:
    out, pos = [], 0
    while pos < len(body):
        if plus:
            pos += 128
        ino, off, namelen, _typ = struct.unpack_from("<QQII", body, pos)
        out.append((body[pos + 24 : pos + 24 + namelen], ino, off))
        pos += (24 + namelen + 7) & ~7
    return out


async def test_readdir_fills_buffer_and_stops() -> None:
    ops = DirOps()
    # Every record is 24 + namelen rounded up to 8 = 32 bytes: room for exactly three.
    _, error, body = await run(ops, request(READDIR, read_arg(96)))
    assert error == 0 and body is not None
    assert parse(body, plus=False) == [(b".", 100, 1), (b"..", 101, 2), (b"a", 102, 3)]
    # Plain readdir sends False for everything. The code after the yield of the last
    # accepted entry ran; the entry that did not fit ('b') was never accepted.
    assert ops.log == [
        ("start", 0),
        ("accepted", b".", False),
        ("accepted", b"..", False),
        ("accepted", b"a", False),
        ("closed",),
    ]


async def test_readdir_resumes_at_offset() -> None:
    ops = DirOps()
    _, error, body = await run(ops, request(READDIR, read_arg(96, offset=3)))
    assert error == 0 and body is not None
    assert parse(body, plus=False) == [(b"b", 103, 4), (b"c", 104, 5)]
    assert ops.log == [
        ("start", 3),
        ("accepted", b"b", False),
        ("accepted", b"c", False),
        ("exhausted",),
        ("closed",),
    ]


async def test_readdirplus_sends_lookup_counted() -> None:
    ops = DirOps()
    # 160 bytes per entry (128-byte entry_out + 32): room for four of five.
    _, error, body = await run(ops, request(READDIRPLUS, read_arg(4 * 160 + 100)))
    assert error == 0 and body is not None
    assert [n for n, _, _ in parse(body, plus=True)] == [b".", b"..", b"a", b"b"]
    assert ops.log == [
        ("start", 0),
        ("accepted", b".", False),
        ("accepted", b"..", False),
        ("accepted", b"a", True),
        ("accepted", b"b", True),
        ("closed",),
    ]
    # '.' and '..' carry a zeroed entry_out, the others a real one.
    assert body[:128] == bytes(128)
    assert struct.unpack_from("<Q", body, 2 * 160)[0] == 102


async def test_readdir_nothing_fits() -> None:
    ops = DirOps()
    assert await run(ops, request(READDIRPLUS, read_arg(100))) == (1, 0, b"")
    assert ops.log == [("start", 0), ("closed",)]


async def test_readdir_plain_async_iterator() -> None:
    class Iter:
        def __init__(self) -> None:
            self.items = [DirEntry(b"x", attrs(3), 1), DirEntry(b"y", attrs(4), 2)]

        def __aiter__(self) -> Iter:
            return self

        async def __anext__(self) -> DirEntry:
            if not self.items:
                raise StopAsyncIteration
            return self.items.pop(0)

    class Ops(Operations):
        def readdir(self, fh: int, start_id: int, ctx: RequestContext) -> AsyncIterator[DirEntry]:
            return Iter()

    _, error, body = await run(Ops(), request(READDIR, read_arg(4096)))
    assert error == 0 and body is not None
    assert parse(body, plus=False) == [(b"x", 3, 1), (b"y", 4, 2)]


async def test_readdir_bad_entry_is_eio(caplog: pytest.LogCaptureFixture) -> None:
    closed = []

    class Ops(Operations):
        async def readdir(
            self, fh: int, start_id: int, ctx: RequestContext
        ) -> AsyncIterator[DirEntry]:  # type: ignore[override]
            try:
                yield DirEntry(b"bad/name", attrs(), 1)
            finally:
                closed.append(True)

    assert await run(Ops(), request(READDIR, read_arg(4096))) == (1, -errno.EIO, None)
    assert closed == [True]
    assert "readdir()" in records(caplog, logging.ERROR)[0].getMessage()


async def test_readdir_not_an_iterator(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        def readdir(self, fh: int, start_id: int, ctx: RequestContext) -> AsyncIterator[DirEntry]:
            return [DirEntry(b"a", attrs(), 1)]  # type: ignore[return-value]

    assert await run(Ops(), request(READDIR, read_arg(4096))) == (1, -errno.EIO, None)
    msg = records(caplog, logging.ERROR)[0].getMessage()
    assert "readdir()" in msg and "async iterator" in msg


async def test_readdir_coroutine_instead_of_generator_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Log records would keep the traceback (and with it the coroutine) alive.
    monkeypatch.setattr(logging.getLogger(LOGGER), "disabled", True)

    class Ops(Operations):
        async def readdir(self, fh: int, start_id: int, ctx: RequestContext) -> list[DirEntry]:  # type: ignore[override]
            return [DirEntry(b"a", attrs(), 1)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await run(Ops(), request(READDIR, read_arg(4096))) == (1, -errno.EIO, None)
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


# --- the inline fast path ----------------------------------------------------------------------


async def test_handler_that_does_not_await_runs_inline() -> None:
    class Ops(Operations):
        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            return attrs(inode)

    d, rec = Dispatcher(Ops()), Recorder()
    assert d.start(request(GETATTR, struct.pack("<IIQ", 0, 0, 0), nodeid=8), rec, None) is None
    # Replied synchronously, without a checkpoint or a task.
    assert [(u, e) for u, e, _ in rec.replies] == [(1, 0)]
    assert d.stats.blocked == 0


async def test_blocking_handler_finishes_in_the_same_task() -> None:
    tasks = []

    class Ops(Operations):
        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            tasks.append(trio.lowlevel.current_task())
            await trio.sleep(0)
            tasks.append(trio.lowlevel.current_task())
            return attrs(inode)

    d, rec = Dispatcher(Ops()), Recorder()
    with trio.CancelScope() as scope:
        blocked = d.start(request(GETATTR, struct.pack("<IIQ", 0, 0, 0), unique=9), rec, None)
        assert isinstance(blocked, Blocked) and blocked.unique == 9
        assert rec.replies == []  # not done yet
        await d.finish(blocked, scope)
    assert [(u, e) for u, e, _ in rec.replies] == [(9, 0)]
    me = trio.lowlevel.current_task()
    assert tasks == [me, me]
    assert d.stats.blocked == 1
    assert d._active == {}


# --- interrupts --------------------------------------------------------------------------------


class SlowOps(Operations):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
        self.events.append("started")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.events.append("cancelled")
            raise
        raise AssertionError("unreachable")


def interrupt(target: int, unique: int = 1001) -> P.Request:
    return request(INTERRUPT, struct.pack("<Q", target), unique=unique, nodeid=0)


def getattr_req(unique: int) -> P.Request:
    return request(GETATTR, struct.pack("<IIQ", 0, 0, 0), unique=unique)


async def test_interrupt_cancels_blocked_handler() -> None:
    ops = SlowOps()
    d, rec = Dispatcher(ops), Recorder()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one, d, getattr_req(10), rec)
        nursery.start_soon(serve_one, d, getattr_req(12), rec)
        await trio.testing.wait_all_tasks_blocked()
        assert set(d._active) == {10, 12}
        assert await serve_one(d, interrupt(10), rec) is False  # INTERRUPT itself is inline
        await trio.testing.wait_all_tasks_blocked()
        assert rec.replies == [(10, -errno.EINTR, None)]  # no reply to the INTERRUPT
        d._active[12].cancel()  # what shutting down does to the others
    assert rec.replies == [(10, -errno.EINTR, None), (12, -errno.EINTR, None)]
    assert ops.events == ["started", "started", "cancelled", "cancelled"]
    assert d.stats.interrupts == 2
    assert d._active == {}


async def test_early_interrupt_cancels_when_target_blocks() -> None:
    ops = SlowOps()
    d, rec = Dispatcher(ops), Recorder()
    # The INTERRUPT overtakes its target (ring requests and interrupts travel apart).
    await serve_one(d, interrupt(20), rec)
    with trio.fail_after(5):
        assert await serve_one(d, getattr_req(20), rec) is True
    assert rec.replies == [(20, -errno.EINTR, None)]
    assert ops.events == ["started", "cancelled"]


async def test_interrupt_for_another_request_does_not_cancel() -> None:
    ops = SlowOps()
    d, rec = Dispatcher(ops), Recorder()
    await serve_one(d, interrupt(21), rec)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one, d, getattr_req(22), rec)
        await trio.testing.wait_all_tasks_blocked()
        assert rec.replies == [] and ops.events == ["started"]
        await serve_one(d, interrupt(22), rec)
    assert rec.replies == [(22, -errno.EINTR, None)]


async def test_interrupt_reaches_through_inner_scopes() -> None:
    class Ops(Operations):
        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            with trio.move_on_after(10):  # an inner scope: the interrupt is not caught here
                await trio.sleep_forever()
            return attrs()

    d, rec = Dispatcher(Ops()), Recorder()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one, d, getattr_req(30), rec)
        await trio.testing.wait_all_tasks_blocked()
        await serve_one(d, interrupt(30), rec)
    assert rec.replies == [(30, -errno.EINTR, None)]


async def test_request_budget_reaches_through_inner_scopes() -> None:
    class Ops(Operations):
        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            with trio.move_on_after(10):  # an inner scope, entered in the first step
                await trio.sleep_forever()
            return attrs()

    d, rec = Dispatcher(Ops()), Recorder()
    d.set_request_budget(0.05, "a test deadline")
    await serve_one(d, getattr_req(31), rec)
    assert rec.replies == [(31, -errno.ETIMEDOUT, None)]
    assert d.stats.timed_out == 1 and d.stats.interrupts == 0


# --- forget ------------------------------------------------------------------------------------


async def test_forget_and_batch_forget_have_no_reply() -> None:
    seen: list[list[tuple[int, int]]] = []

    class Ops(Operations):
        async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
            seen.append([tuple(p) for p in inode_list])  # type: ignore[misc]

    d, rec = Dispatcher(Ops()), Recorder()
    await serve_one(d, request(FORGET, struct.pack("<Q", 3), nodeid=7), rec)
    batch = struct.pack("<II", 2, 0)
    payload = struct.pack("<QQQQ", 8, 1, 9, 2)
    await serve_one(d, request(BATCH_FORGET, batch, payload, nodeid=0), rec)
    assert rec.replies == []
    assert seen == [[(7, 3)], [(8, 1), (9, 2)]]


async def test_forget_exception_is_logged_not_replied(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
            raise KeyError("lost")

    d, rec = Dispatcher(Ops()), Recorder()
    await serve_one(d, request(FORGET, struct.pack("<Q", 1), nodeid=7), rec)
    assert rec.replies == []
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1 and "forget()" in errors[0].getMessage() and errors[0].exc_info


# --- debug tracing -------------------------------------------------------------------------------


async def test_debug_trace_lines(caplog: pytest.LogCaptureFixture) -> None:
    class Ops(Operations):
        async def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
            if name == b"missing":
                raise FUSEError(errno.ENOENT)
            return attrs()

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    d, rec = Dispatcher(Ops(), debug=True), Recorder()
    await serve_one(d, request(LOOKUP, payload=b"there\0", unique=5), rec)
    await serve_one(d, request(LOOKUP, payload=b"missing\0", unique=6), rec)
    await serve_one(d, request(FORGET, struct.pack("<Q", 1), unique=7), rec)
    lines = [r.getMessage() for r in records(caplog, logging.DEBUG)]
    assert lines[0] == "rx 5: LOOKUP n1 name=b'there'"
    assert lines[1].startswith("tx 5: OK 128 bytes (") and lines[1].endswith(" ms)")
    assert lines[2] == "rx 6: LOOKUP n1 name=b'missing'"
    assert lines[3].startswith("tx 6: ENOENT (")
    assert lines[4] == "rx 7: FORGET n1 nlookup=1"
    assert len(lines) == 5  # no tx line for a request without reply


async def test_no_debug_lines_when_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    await run(Operations(), request(READLINK))
    assert records(caplog, logging.DEBUG) == []
