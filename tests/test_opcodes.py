"""The opcode table: one record per opcode, and every part of the framework agrees with it.

Decoding, the dispatcher's handlers, error messages and the INIT flags are all derived from
``_protocol.OPCODES``; these tests check each derived behaviour against the record.
"""

from __future__ import annotations

import inspect
import struct
from typing import Any

import pytest
import trio

from trio_fuse_uring import _protocol as P
from trio_fuse_uring._abi import InitFlag, Opcode
from trio_fuse_uring._dispatch import Dispatcher, _handler_name, capabilities
from trio_fuse_uring.ops import Operations

HDR = struct.Struct("<IIQQIIIHH")  # fuse_in_header, from fuse.h
# A payload every decoder accepts with a zeroed struct: two NUL-terminated names (SYMLINK,
# RENAME), which also serve as a name and a value (SETXATTR).
PAYLOAD = b"a\0b\0"
NEG = P.Negotiated(flags=int(InitFlag.SETXATTR_EXT))


def minimal_request(info: P.OpcodeInfo, unique: int = 9) -> P.Request:
    body = bytes(info.arg_size) + PAYLOAD
    if info.opcode == Opcode.INIT:
        body = struct.pack("<II", 7, 45) + bytes(info.arg_size - 8)
    buf = HDR.pack(HDR.size + len(body), info.opcode, unique, 1, 0, 0, 0, 0, 0) + body
    return P.decode_devfuse(memoryview(buf), NEG)


RECORDS = sorted(P.OPCODES.values(), key=lambda i: i.opcode)


def test_every_opcode_has_exactly_one_record() -> None:
    assert sorted(P.OPCODES) == sorted(int(op) for op in Opcode)
    for key, info in P.OPCODES.items():
        assert key == info.opcode and isinstance(info.opcode, Opcode)


@pytest.mark.parametrize("info", RECORDS, ids=lambda i: i.opcode.name)
def test_decoder_makes_the_records_request_type(info: P.OpcodeInfo) -> None:
    req = minimal_request(info)
    assert type(req) is info.request
    assert (req.opcode, req.unique) == (info.opcode, 9)


@pytest.mark.parametrize("info", RECORDS, ids=lambda i: i.opcode.name)
def test_arg_size_is_the_split_point(info: P.OpcodeInfo) -> None:
    # One byte less than the struct is refused (INIT alone accepts old, shorter structs).
    if info.arg_size == 0 or info.opcode == Opcode.INIT:
        return
    buf = HDR.pack(HDR.size + info.arg_size - 1, info.opcode, 1, 1, 0, 0, 0, 0, 0)
    with pytest.raises(P.ProtocolError):
        P.decode_devfuse(memoryview(buf + bytes(info.arg_size - 1)), NEG)


@pytest.mark.parametrize("info", RECORDS, ids=lambda i: i.opcode.name)
def test_handler_and_dispatch_name_real_methods(info: P.OpcodeInfo) -> None:
    if info.handler is not None:
        assert callable(getattr(Operations, info.handler, None)), info.handler
    if info.dispatch is not None:
        assert inspect.iscoroutinefunction(getattr(Dispatcher, "_" + info.dispatch, None))
    assert _handler_name(info.opcode) == (info.handler or info.opcode.name.lower())


def test_no_reply_opcodes() -> None:
    no_reply = {i.opcode for i in RECORDS if not i.replies}
    assert no_reply == {
        Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT, Opcode.NOTIFY_REPLY,
    }  # fmt: skip


class _Recorder:
    def __init__(self) -> None:
        self.replied: list[int] = []
        self.released: list[int] = []

    def reply(self, slot: Any, unique: int, error: int, body: Any) -> None:
        self.replied.append(unique)

    def no_reply(self, slot: Any, unique: int) -> None:
        self.released.append(unique)

    def reply_buffer(self, slot: Any, size: int) -> memoryview:
        return memoryview(bytearray(size))


@pytest.mark.parametrize("info", RECORDS, ids=lambda i: i.opcode.name)
async def test_dispatcher_replies_exactly_when_the_record_says(info: P.OpcodeInfo) -> None:
    # With the default Operations every request that takes a reply gets one (mostly
    # ENOSYS), and the others release their slot without a reply.
    rec = _Recorder()
    d = Dispatcher(Operations())
    with trio.CancelScope() as scope:
        blocked = d.start(minimal_request(info), rec, None)
        if blocked is not None:
            await d.finish(blocked, scope)
    if info.replies:
        assert (rec.replied, rec.released) == ([9], [])
    else:
        assert (rec.replied, rec.released) == ([], [9])


def test_capabilities_come_from_the_table() -> None:
    class Locks(Operations):
        async def getlk(self, *a: Any) -> Any: ...
        async def setlk(self, *a: Any) -> Any: ...
        async def flock(self, *a: Any) -> Any: ...
        async def tmpfile(self, *a: Any) -> Any: ...

    assert capabilities(Locks()) == {"getlk", "setlk", "flock", "tmpfile"}
    assert capabilities(Operations()) == set()
