"""Property tests for the protocol layer (hypothesis).

1. Arbitrary bytes never make the decoders raise anything but ``ProtocolError``.
2. Well-formed requests, built by an encoder written here from fuse.h, decode to the
   fields they were built from (over /dev/fuse and in the ring's split layout).
3. Encoders either write exactly the values given or raise ``struct.error`` /
   ``ValueError``: they never write wrong bytes.

Runs are bounded by default (200 examples, no deadline). ``FUZZ_LONG=1`` switches to the
``long`` profile registered below for a long run on demand; the profile can also be
chosen with ``--hypothesis-profile=long`` for every hypothesis test.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_fuse_uring import _protocol as P
from trio_fuse_uring.ops import EntryAttributes, StatvfsData

settings.register_profile(
    "long",
    max_examples=50_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
if os.environ.get("FUZZ_LONG") == "1":
    FUZZ = settings(settings.get_profile("long"))
else:
    FUZZ = settings(max_examples=200, deadline=None)

u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
s64 = st.integers(-(2**63), 2**63 - 1)
#: Names as the kernel sends them: any bytes but NUL (may be empty).
names = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"_"))

HDR = struct.Struct("<IIQQIIIHH")  # fuse_in_header, written from fuse.h

# ---------------------------------------------------------------------------------------------
# 1. arbitrary bytes
# ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512), st.booleans())
def test_random_bytes_only_protocol_errors(data: bytes, ext: bool) -> None:
    neg = P.Negotiated(flags=(1 << 29) if ext else 0)
    with contextlib.suppress(P.ProtocolError):
        P.decode_devfuse(memoryview(data), neg)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A correct header (length matches) over a random body: reaches every decoder."""
    opcode = draw(st.one_of(st.integers(0, 60), st.sampled_from([4096, 2**32 - 1])))
    body = draw(st.binary(max_size=300))
    extlen = draw(st.one_of(st.just(0), u16, st.integers(0, len(body) // 8 + 1)))
    header = HDR.pack(
        HDR.size + len(body), opcode, draw(u64), draw(u64), draw(u32), draw(u32), draw(u32),
        extlen, draw(u16),
    )  # fmt: skip
    return header + body


@FUZZ
@given(framed_garbage(), st.booleans())
def test_framed_garbage_only_protocol_errors(data: bytes, ext: bool) -> None:
    neg = P.Negotiated(flags=(1 << 29) if ext else 0)
    with contextlib.suppress(P.ProtocolError):
        P.decode_devfuse(memoryview(data), neg)


@FUZZ
@given(framed_garbage(), st.binary(max_size=128), st.binary(max_size=300), st.booleans())
def test_ring_pieces_only_protocol_errors(
    head: bytes, arg: bytes, payload: bytes, ext: bool
) -> None:
    neg = P.Negotiated(flags=(1 << 29) if ext else 0)
    with contextlib.suppress(P.ProtocolError):
        P.decode_request(memoryview(head[:128]), memoryview(arg), memoryview(payload), neg)


# ---------------------------------------------------------------------------------------------
# 2. well-formed requests round-trip
# ---------------------------------------------------------------------------------------------

# Each builder draws field values and returns (arg struct bytes, payload, expected fields,
# expected class). Formats and opcode numbers are copied from fuse.h, not from _abi.
Built = tuple[bytes, bytes, dict[str, Any], type]
Builder = Callable[[st.DrawFn, int], Built]
BUILDERS: dict[int, tuple[Builder, int]] = {}  # opcode -> (builder, size of op struct)


def builder(*opcodes: int, size: int) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        for op in opcodes:
            BUILDERS[op] = (fn, size)
        return fn

    return deco


@builder(1, 10, 11, 24, size=0)  # LOOKUP UNLINK RMDIR REMOVEXATTR
def _name_only(draw: st.DrawFn, op: int) -> Built:
    name = draw(names)
    cls = {1: P.Lookup, 10: P.Unlink, 11: P.Rmdir, 24: P.Removexattr}[op]
    return b"", name + b"\0", {"name": name}, cls


@builder(2, size=8)
def _forget(draw: st.DrawFn, op: int) -> Built:
    n = draw(u64)
    return struct.pack("<Q", n), b"", {"nlookup": n}, P.Forget


@builder(42, size=8)
def _batch_forget(draw: st.DrawFn, op: int) -> Built:
    pairs = draw(st.lists(st.tuples(u64, u64), max_size=8))
    payload = b"".join(struct.pack("<QQ", a, b) for a, b in pairs)
    return struct.pack("<II", len(pairs), draw(u32)), payload, {"forgets": pairs}, P.BatchForget


@builder(3, size=16)
def _getattr(draw: st.DrawFn, op: int) -> Built:
    flags, fh = draw(u32), draw(u64)
    arg = struct.pack("<IIQ", flags, draw(u32), fh)
    return arg, b"", {"fh": fh if flags & 1 else None}, P.Getattr


@builder(4, size=88)
def _setattr(draw: st.DrawFn, op: int) -> Built:
    # The seconds are signed (time64_t): pre-1970 times are negative.
    valid, fh, size, lo, at, mt, ct = (draw(x) for x in (u32, u64, u64, u64, s64, s64, s64))
    an, mn, cn, mode, uid, gid = (draw(u32) for _ in range(6))
    arg = struct.pack(
        "<IIQQQqqqIIIIIIII", valid, draw(u32), fh, size, lo, at, mt, ct, an, mn, cn, mode,
        draw(u32), uid, gid, draw(u32),
    )  # fmt: skip
    exp = {
        "valid": valid, "fh": fh if valid & (1 << 6) else None, "size": size,
        "lock_owner": lo, "atime": at, "mtime": mt, "ctime": ct, "atimensec": an,
        "mtimensec": mn, "ctimensec": cn, "mode": mode, "setattr_uid": uid, "setattr_gid": gid,
    }  # fmt: skip
    return arg, b"", exp, P.Setattr


@builder(5, 17, 38, size=0)  # READLINK STATFS DESTROY
def _noarg(draw: st.DrawFn, op: int) -> Built:
    return b"", b"", {}, {5: P.Readlink, 17: P.Statfs, 38: P.Destroy}[op]


@builder(50, size=8)
def _syncfs(draw: st.DrawFn, op: int) -> Built:
    return struct.pack("<Q", draw(u64)), b"", {}, P.Syncfs


@builder(6, size=0)
def _symlink(draw: st.DrawFn, op: int) -> Built:
    name, target = draw(names), draw(names)
    return b"", name + b"\0" + target + b"\0", {"name": name, "target": target}, P.Symlink


@builder(8, size=16)
def _mknod(draw: st.DrawFn, op: int) -> Built:
    mode, rdev, umask, name = draw(u32), draw(u32), draw(u32), draw(names)
    arg = struct.pack("<IIII", mode, rdev, umask, draw(u32))
    return arg, name + b"\0", {"name": name, "mode": mode, "rdev": rdev, "umask": umask}, P.Mknod


@builder(9, size=8)
def _mkdir(draw: st.DrawFn, op: int) -> Built:
    mode, umask, name = draw(u32), draw(u32), draw(names)
    arg = struct.pack("<II", mode, umask)
    return arg, name + b"\0", {"name": name, "mode": mode, "umask": umask}, P.Mkdir


@builder(12, size=8)
def _rename(draw: st.DrawFn, op: int) -> Built:
    newdir, a, b = draw(u64), draw(names), draw(names)
    exp = {"name": a, "newdir": newdir, "newname": b, "flags": 0}
    return struct.pack("<Q", newdir), a + b"\0" + b + b"\0", exp, P.Rename


@builder(45, size=16)
def _rename2(draw: st.DrawFn, op: int) -> Built:
    newdir, flags, a, b = draw(u64), draw(u32), draw(names), draw(names)
    exp = {"name": a, "newdir": newdir, "newname": b, "flags": flags}
    return struct.pack("<QII", newdir, flags, draw(u32)), a + b"\0" + b + b"\0", exp, P.Rename


@builder(13, size=8)
def _link(draw: st.DrawFn, op: int) -> Built:
    old, name = draw(u64), draw(names)
    return struct.pack("<Q", old), name + b"\0", {"oldnodeid": old, "newname": name}, P.Link


@builder(14, 27, size=8)
def _open(draw: st.DrawFn, op: int) -> Built:
    flags, oflags = draw(u32), draw(u32)
    return struct.pack("<II", flags, oflags), b"", {"flags": flags, "open_flags": oflags}, P.Open


@builder(35, 51, size=16)
def _create(draw: st.DrawFn, op: int) -> Built:
    flags, mode, umask, oflags = (draw(u32) for _ in range(4))
    name = draw(names) if op == 35 else b""
    payload = name + b"\0" if op == 35 else b""
    exp = {"name": name, "flags": flags, "mode": mode, "umask": umask, "open_flags": oflags}
    return struct.pack("<IIII", flags, mode, umask, oflags), payload, exp, P.Create


@builder(15, 28, 44, size=40)
def _read(draw: st.DrawFn, op: int) -> Built:
    fh, off, size, rf, lo, fl = draw(u64), draw(u64), draw(u32), draw(u32), draw(u64), draw(u32)
    arg = struct.pack("<QQIIQII", fh, off, size, rf, lo, fl, draw(u32))
    exp = {"fh": fh, "offset": off, "size": size, "read_flags": rf, "lock_owner": lo, "flags": fl}
    return arg, b"", exp, P.Read


@builder(16, size=40)
def _write(draw: st.DrawFn, op: int) -> Built:
    fh, off, wf, lo, fl = draw(u64), draw(u64), draw(u32), draw(u64), draw(u32)
    data = draw(st.binary(max_size=200))
    arg = struct.pack("<QQIIQII", fh, off, len(data), wf, lo, fl, draw(u32))
    exp = {
        "fh": fh, "offset": off, "size": len(data), "write_flags": wf, "lock_owner": lo,
        "flags": fl, "data": data,
    }  # fmt: skip
    return arg, data, exp, P.Write


@builder(18, 29, size=24)
def _release(draw: st.DrawFn, op: int) -> Built:
    fh, fl, rf, lo = draw(u64), draw(u32), draw(u32), draw(u64)
    exp = {"fh": fh, "flags": fl, "release_flags": rf, "lock_owner": lo}
    return struct.pack("<QIIQ", fh, fl, rf, lo), b"", exp, P.Release


@builder(25, size=24)
def _flush(draw: st.DrawFn, op: int) -> Built:
    fh, lo = draw(u64), draw(u64)
    return (
        struct.pack("<QIIQ", fh, draw(u32), draw(u32), lo),
        b"",
        {"fh": fh, "lock_owner": lo},
        P.Flush,
    )


@builder(20, 30, size=16)
def _fsync(draw: st.DrawFn, op: int) -> Built:
    fh, fl = draw(u64), draw(u32)
    return (
        struct.pack("<QII", fh, fl, draw(u32)),
        b"",
        {"fh": fh, "datasync": bool(fl & 1)},
        P.Fsync,
    )


@builder(22, size=8)
def _getxattr(draw: st.DrawFn, op: int) -> Built:
    size, name = draw(u32), draw(names)
    return (
        struct.pack("<II", size, draw(u32)),
        name + b"\0",
        {"name": name, "size": size},
        P.Getxattr,
    )


@builder(23, size=8)
def _listxattr(draw: st.DrawFn, op: int) -> Built:
    size = draw(u32)
    return struct.pack("<II", size, draw(u32)), b"", {"size": size}, P.Listxattr


@builder(31, 32, 33, size=48)
def _lk(draw: st.DrawFn, op: int) -> Built:
    fh, owner, start, end, typ, pid, fl = (draw(x) for x in (u64, u64, u64, u64, u32, u32, u32))
    arg = struct.pack("<QQQQIIII", fh, owner, start, end, typ, pid, fl, draw(u32))
    exp = {
        "fh": fh, "owner": owner, "start": start, "end": end, "type": typ, "lock_pid": pid,
        "lk_flags": fl,
    }  # fmt: skip
    return arg, b"", exp, P.Lk


@builder(34, size=8)
def _access(draw: st.DrawFn, op: int) -> Built:
    mask = draw(u32)
    return struct.pack("<II", mask, draw(u32)), b"", {"mask": mask}, P.Access


@builder(36, size=8)
def _interrupt(draw: st.DrawFn, op: int) -> Built:
    t = draw(u64)
    return struct.pack("<Q", t), b"", {"target": t}, P.Interrupt


@builder(37, size=16)
def _bmap(draw: st.DrawFn, op: int) -> Built:
    block, bs = draw(u64), draw(u32)
    return struct.pack("<QII", block, bs, draw(u32)), b"", {"block": block, "blocksize": bs}, P.Bmap


@builder(39, size=32)
def _ioctl(draw: st.DrawFn, op: int) -> Built:
    fh, fl, cmd, arg_, out = draw(u64), draw(u32), draw(u32), draw(u64), draw(u32)
    data = draw(st.binary(max_size=64))
    arg = struct.pack("<QIIQII", fh, fl, cmd, arg_, len(data), out)
    exp = {
        "fh": fh, "flags": fl, "cmd": cmd, "arg": arg_, "in_size": len(data),
        "out_size": out, "data": data,
    }  # fmt: skip
    return arg, data, exp, P.Ioctl


@builder(40, size=24)
def _poll(draw: st.DrawFn, op: int) -> Built:
    fh, kh, fl, ev = draw(u64), draw(u64), draw(u32), draw(u32)
    return (
        struct.pack("<QQII", fh, kh, fl, ev),
        b"",
        {"fh": fh, "kh": kh, "flags": fl, "events": ev},
        P.Poll,
    )


@builder(41, size=40)
def _notify_reply(draw: st.DrawFn, op: int) -> Built:
    off, data = draw(u64), draw(st.binary(max_size=100))
    arg = struct.pack("<QQIIQQ", draw(u64), off, len(data), draw(u32), draw(u64), draw(u64))
    return arg, data, {"offset": off, "data": data}, P.NotifyReply


@builder(43, size=32)
def _fallocate(draw: st.DrawFn, op: int) -> Built:
    fh, off, ln, mode = draw(u64), draw(u64), draw(u64), draw(u32)
    arg = struct.pack("<QQQII", fh, off, ln, mode, draw(u32))
    return arg, b"", {"fh": fh, "offset": off, "length": ln, "mode": mode}, P.Fallocate


@builder(46, size=24)
def _lseek(draw: st.DrawFn, op: int) -> Built:
    fh, off, wh = draw(u64), draw(u64), draw(u32)
    return (
        struct.pack("<QQII", fh, off, wh, draw(u32)),
        b"",
        {"fh": fh, "offset": off, "whence": wh},
        P.Lseek,
    )


@builder(47, 53, size=56)
def _copy_file_range(draw: st.DrawFn, op: int) -> Built:
    vals = [draw(u64) for _ in range(7)]
    keys = ["fh_in", "off_in", "nodeid_out", "fh_out", "off_out", "length", "flags"]
    exp = dict(zip(keys, vals, strict=True)) | {"wide": op == 53}
    return struct.pack("<7Q", *vals), b"", exp, P.CopyFileRange


@builder(52, size=24)  # STATX
def _statx(draw: st.DrawFn, op: int) -> Built:
    flags, fh, sx_flags, sx_mask = draw(u32), draw(u64), draw(u32), draw(u32)
    arg = struct.pack("<IIQII", flags, draw(u32), fh, sx_flags, sx_mask)
    exp = {"fh": fh if flags & 1 else None, "sx_flags": sx_flags, "sx_mask": sx_mask}
    return arg, b"", exp, P.Statx


@builder(26, size=64)
def _init(draw: st.DrawFn, op: int) -> Built:
    major, minor, ra = draw(u32), draw(u32), draw(u32)
    flags, flags2 = draw(u32), draw(u32)
    arg = struct.pack("<IIIII44x", major, minor, ra, flags, flags2)
    full = flags | (flags2 << 32) if flags & (1 << 30) else flags
    return arg, b"", {"major": major, "minor": minor, "max_readahead": ra, "flags": full}, P.Init


# SETXATTR (21) has its own test: its struct size depends on SETXATTR_EXT.
ROUND_TRIP_OPCODES = sorted(BUILDERS)


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[int, int, dict[str, Any], type, bytes, bytes, bytes]:
    op = draw(st.sampled_from(ROUND_TRIP_OPCODES))
    build, size = BUILDERS[op]
    arg, payload, exp, cls = build(draw, op)
    assert len(arg) == size
    # Optional request extensions, opaque to us: any bytes, a multiple of 8.
    ext = draw(st.binary(max_size=3).map(lambda b: b * 8))
    common = {
        "opcode": op, "unique": draw(u64), "nodeid": draw(u64), "uid": draw(u32),
        "gid": draw(u32), "pid": draw(u32),
    }  # fmt: skip
    body = arg + payload + ext
    header = HDR.pack(
        HDR.size + len(body), op, common["unique"], common["nodeid"], common["uid"],
        common["gid"], common["pid"], len(ext) // 8, 0,
    )  # fmt: skip
    return op, size, common | exp, cls, header, arg, payload + ext


def check_fields(req: P.Request, exp: dict[str, Any], cls: type) -> None:
    assert type(req) is cls
    for key, value in exp.items():
        got = getattr(req, key)
        if key == "forgets":
            got = [tuple(p) for p in got]
        if isinstance(got, memoryview):
            got = bytes(got)
        assert got == value, key


@FUZZ
@given(well_formed())
def test_round_trip_devfuse(
    case: tuple[int, int, dict[str, Any], type, bytes, bytes, bytes],
) -> None:
    _op, _size, exp, cls, header, arg, rest = case
    req = P.decode_devfuse(memoryview(header + arg + rest), P.Negotiated())
    check_fields(req, exp, cls)


@FUZZ
@given(well_formed(), st.binary(min_size=128, max_size=128), st.binary(min_size=88, max_size=88))
def test_round_trip_ring(
    case: tuple[int, int, dict[str, Any], type, bytes, bytes, bytes], junk: bytes, hjunk: bytes
) -> None:
    """The ring's op_in is always 128 bytes, with stale bytes past the struct."""
    _op, size, exp, cls, header, arg, rest = case
    op_in = arg + junk[size:]
    req = P.decode_request(
        memoryview(header + hjunk), memoryview(op_in), memoryview(rest), P.Negotiated()
    )
    check_fields(req, exp, cls)


@FUZZ
@given(st.booleans(), u32, u32, names, st.binary(max_size=64), st.binary(max_size=16))
def test_setxattr_round_trip(
    ext: bool, flags: int, sflags: int, name: bytes, value: bytes, junk: bytes
) -> None:
    if ext:
        arg = struct.pack("<IIII", len(value), flags, sflags, 0)
        neg = P.Negotiated(flags=1 << 29)
    else:
        arg, sflags = struct.pack("<II", len(value), flags), 0
        neg = P.Negotiated()
    payload = name + b"\0" + value + junk  # bytes past the value are ignored
    body = arg + payload
    header = HDR.pack(HDR.size + len(body), 21, 1, 2, 3, 4, 5, 0, 0)
    req = P.decode_devfuse(memoryview(header + body), neg)
    check_fields(
        req, {"name": name, "value": value, "flags": flags, "setxattr_flags": sflags}, P.Setxattr
    )


# ---------------------------------------------------------------------------------------------
# 3. encoders: exact bytes or a clean refusal
# ---------------------------------------------------------------------------------------------

wide = st.one_of(u64, st.integers(-(2**70), 2**70))
REFUSALS = (struct.error, ValueError)

ATTR_INT_FIELDS = [
    "st_ino", "generation", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
    "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
]  # fmt: skip
U32_ATTR = {"st_nlink", "st_uid", "st_gid", "st_rdev", "st_blksize"}


@st.composite
def attr_values(draw: st.DrawFn) -> dict[str, int]:
    out = {}
    for f in ATTR_INT_FIELDS:
        if f in U32_ATTR:
            out[f] = draw(st.one_of(u32, wide))
        elif f.endswith("_ns"):
            # Non-negative times only: negative ones are test_protocol.test_pre_epoch_timestamps.
            out[f] = draw(st.one_of(st.integers(0, 2**64 * 10**9 - 1), st.integers(0, 2**80)))
        else:
            out[f] = draw(wide)
    out["st_mode"] = draw(st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK])) | draw(
        st.integers(0, 0o7777)
    )
    return out


def in_range(v: dict[str, int]) -> bool:
    for f, x in v.items():
        if f in U32_ATTR or f == "st_mode":
            limit = 2**32
        elif f.endswith("_ns"):
            # Seconds travel as the kernel's signed 64-bit value (pre-1970 allowed).
            if not -(2**63) <= x // 10**9 < 2**63:
                return False
            continue
        else:
            limit = 2**64
        if not 0 <= x < limit:
            return False
    return True


def check_attr(buf: bytes, off: int, v: dict[str, int]) -> None:
    got = struct.unpack_from("<6Q10I", buf, off)
    exp = (
        v["st_ino"], v["st_size"], v["st_blocks"], v["st_atime_ns"] // 10**9 % 2**64,
        v["st_mtime_ns"] // 10**9 % 2**64, v["st_ctime_ns"] // 10**9 % 2**64,
        v["st_atime_ns"] % 10**9,
        v["st_mtime_ns"] % 10**9, v["st_ctime_ns"] % 10**9, v["st_mode"], v["st_nlink"],
        v["st_uid"], v["st_gid"], v["st_rdev"], v["st_blksize"], 0,
    )  # fmt: skip
    assert got == exp


@FUZZ
@given(attr_values())
def test_encode_entry_and_attr_exact_or_refused(v: dict[str, int]) -> None:
    a = EntryAttributes(**v)
    ok = in_range(v)
    try:
        entry = P.encode_entry(a, 0, 0)
    except REFUSALS:
        assert not ok
    else:
        assert ok and len(entry) == 128
        assert struct.unpack_from("<QQ", entry) == (v["st_ino"], v["generation"])
        check_attr(entry, 40, v)
    try:
        attr = P.encode_attr(a, 0)
    except REFUSALS:
        assert not (ok or in_range({k: x for k, x in v.items() if k != "generation"}))
    else:
        check_attr(attr, 16, v)


timeouts = st.one_of(
    st.floats(min_value=0, max_value=2.0**64, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=False),
    st.integers(0, 2**70),
)


@FUZZ
@given(timeouts)
def test_timeouts_exact_or_refused(t: float) -> None:
    try:
        out = P.encode_attr(EntryAttributes(st_ino=1), attr_timeout=t)
    except REFUSALS:
        assert math.isnan(t) or t >= 2**64
        return
    sec, nsec = struct.unpack_from("<QI", out)
    if not t > 0:  # zero, negative or NaN: no caching
        assert (sec, nsec) == (0, 0)
    elif t >= 2**64 - 1:  # huge or infinite: cache "forever", clamped like libfuse
        assert (sec, nsec) == (2**64 - 1, 0)
    else:
        assert sec == int(t)
        assert 0 <= nsec < 10**9
        assert abs((sec + nsec / 1e9) - t) <= max(1e-6, abs(t) * 1e-12) or t >= 2**53


@FUZZ
@given(
    st.tuples(wide, wide, wide, wide, wide, wide, wide, wide),
)
def test_encode_statfs_exact_or_refused(vals: tuple[int, ...]) -> None:
    blocks, bfree, bavail, files, ffree, bsize, namemax, frsize = vals
    s = StatvfsData(
        f_blocks=blocks, f_bfree=bfree, f_bavail=bavail, f_files=files, f_ffree=ffree,
        f_bsize=bsize, f_namemax=namemax, f_frsize=frsize,
    )  # fmt: skip
    ok = all(0 <= x < 2**64 for x in vals[:5]) and all(0 <= x < 2**32 for x in vals[5:])
    try:
        out = P.encode_statfs(s)
    except REFUSALS:
        assert not ok
    else:
        assert ok and struct.unpack_from("<5Q3I", out) == vals
        assert out[52:] == bytes(28)


@FUZZ
@given(wide, wide, wide, wide, wide, wide)
def test_small_encoders_exact_or_refused(a: int, b: int, c: int, d: int, e: int, f: int) -> None:
    def fits(x: int, bits: int, signed: bool = False) -> bool:
        return -(2 ** (bits - 1)) <= x < 2 ** (bits - 1) if signed else 0 <= x < 2**bits

    cases: list[tuple[Callable[[], bytes], bool, str, tuple[int, ...]]] = [
        (lambda: P.encode_open(a, b), fits(a, 64) and fits(b, 32), "<QIi", (a, b, 0)),
        (lambda: P.encode_write(a), fits(a, 32), "<II", (a, 0)),
        (lambda: P.encode_u64(a), fits(a, 64), "<Q", (a,)),
        (lambda: P.encode_xattr_size(a), fits(a, 32), "<II", (a, 0)),
        (
            lambda: P.encode_lock(a, b, c, d),
            fits(a, 64) and fits(b, 64) and fits(c, 32) and fits(d, 32),
            "<QQII", (a, b, c, d),
        ),
        (lambda: P.encode_poll(a), fits(a, 32), "<II", (a, 0)),
        (lambda: P.out_header(a, b, c), fits(a, 32) and fits(b, 32, True) and fits(c, 64), "<IiQ", (a, b, c)),
        (
            lambda: P.notify_inval_inode(a, b, c)[16:],
            fits(a, 64) and fits(b, 64, True) and fits(c, 64, True),
            "<Qqq", (a, b, c),
        ),
        (
            lambda: P.notify_retrieve(a, b, c, d)[16:],
            fits(a, 64) and fits(b, 64) and fits(c, 64) and fits(d, 32),
            "<QQQII", (a, b, c, d, 0),
        ),
        (lambda: P.notify_poll_wakeup(a)[16:], fits(a, 64), "<Q", (a,)),
        (
            lambda: P.notify_delete(e, f, b"n")[16:40],
            fits(e, 64) and fits(f, 64),
            "<QQII", (e, f, 1, 0),
        ),
    ]  # fmt: skip
    for call, ok, fmt, exp in cases:
        try:
            out = call()
        except REFUSALS:
            assert not ok, fmt
        else:
            assert ok, fmt
            assert struct.unpack_from(fmt, out) == exp


@FUZZ
@given(st.lists(st.tuples(names.filter(lambda n: n and b"/" not in n), u64, u64), max_size=20),
       st.integers(0, 2000), st.booleans())  # fmt: skip
def test_dirent_buffer_never_overflows(
    entries: list[tuple[bytes, int, int]], size: int, plus: bool
) -> None:
    buf = P.DirentBuffer(size, plus)
    kept = []
    for name, ino, off in entries:
        if buf.add(name, EntryAttributes(st_ino=ino), off):
            kept.append((name, ino, off))
        else:
            break
    data = bytes(buf.getvalue())
    assert len(data) <= size and buf.count == len(kept)
    pos = 0
    for name, ino, off in kept:
        if plus:
            pos += 128
        assert struct.unpack_from("<QQI", data, pos) == (ino, off, len(name))
        assert data[pos + 24 : pos + 24 + len(name)] == name
        pos += (24 + len(name) + 7) & ~7
    assert pos == len(data)
