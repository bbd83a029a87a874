"""The FUSE protocol as pure functions over buffers (sans-I/O).

Nothing here does I/O or knows about trio, os or cffi. A transport hands over the raw
pieces of a request and gets typed :class:`Request` values back; handlers' results are
encoded into bytes that the transport writes.

On ``/dev/fuse`` a request is one contiguous buffer: ``fuse_in_header``, the op's fixed
argument struct, then the rest (names, write data, extensions). On the io-uring the
header, the op struct and the rest live in different places. So decoding takes the three
pieces (:func:`decode_request`); :func:`split_devfuse` cuts a ``/dev/fuse`` buffer into
them.

Every function documents its outcomes. Malformed input raises :class:`ProtocolError`;
any other exception escaping from this module is a bug.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from . import _abi
from ._abi import InitFlag, Opcode
from .ops._types import EntryAttributes, StatvfsData


class ProtocolError(Exception):
    """Bytes from the kernel (or a peer pretending to be it) violate the FUSE protocol."""


# ----------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Request:
    """Fields every request has (``fuse_in_header``).

    ``nodeid`` is the inode the request is about (the parent directory for name
    operations). ``uid``/``gid``/``pid`` identify the calling process.
    """

    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int


@dataclass(slots=True, kw_only=True)
class Lookup(Request):
    name: bytes


@dataclass(slots=True, kw_only=True)
class Forget(Request):
    nlookup: int


@dataclass(slots=True, kw_only=True)
class BatchForget(Request):
    #: (nodeid, nlookup) pairs.
    forgets: list[tuple[int, int]]


@dataclass(slots=True, kw_only=True)
class Getattr(Request):
    fh: int | None


@dataclass(slots=True, kw_only=True)
class Setattr(Request):
    valid: int
    fh: int | None
    size: int
    lock_owner: int
    atime: int
    mtime: int
    ctime: int
    atimensec: int
    mtimensec: int
    ctimensec: int
    mode: int
    setattr_uid: int
    setattr_gid: int


@dataclass(slots=True, kw_only=True)
class Readlink(Request):
    pass


@dataclass(slots=True, kw_only=True)
class Symlink(Request):
    name: bytes
    target: bytes


@dataclass(slots=True, kw_only=True)
class Mknod(Request):
    name: bytes
    mode: int
    rdev: int
    umask: int


@dataclass(slots=True, kw_only=True)
class Mkdir(Request):
    name: bytes
    mode: int
    umask: int


@dataclass(slots=True, kw_only=True)
class Unlink(Request):
    name: bytes


@dataclass(slots=True, kw_only=True)
class Rmdir(Request):
    name: bytes


@dataclass(slots=True, kw_only=True)
class Rename(Request):
    """RENAME and RENAME2. ``flags`` holds RENAME_NOREPLACE / RENAME_EXCHANGE / ..."""

    name: bytes
    newdir: int
    newname: bytes
    flags: int


@dataclass(slots=True, kw_only=True)
class Link(Request):
    """``nodeid`` is the new parent; ``oldnodeid`` the inode that gets another name."""

    oldnodeid: int
    newname: bytes


@dataclass(slots=True, kw_only=True)
class Open(Request):
    """OPEN and OPENDIR."""

    flags: int
    open_flags: int


@dataclass(slots=True, kw_only=True)
class Create(Request):
    """CREATE (with ``name``) and TMPFILE (``name`` is empty)."""

    name: bytes
    flags: int
    mode: int
    umask: int
    open_flags: int


@dataclass(slots=True, kw_only=True)
class Read(Request):
    """READ, READDIR and READDIRPLUS."""

    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


@dataclass(slots=True, kw_only=True)
class Write(Request):
    """``data`` views the transport's buffer: valid only until the reply is sent."""

    fh: int
    offset: int
    size: int
    write_flags: int
    lock_owner: int
    flags: int
    data: memoryview


@dataclass(slots=True, kw_only=True)
class Statfs(Request):
    pass


@dataclass(slots=True, kw_only=True)
class Release(Request):
    """RELEASE and RELEASEDIR."""

    fh: int
    flags: int
    release_flags: int
    lock_owner: int


@dataclass(slots=True, kw_only=True)
class Flush(Request):
    fh: int
    lock_owner: int


@dataclass(slots=True, kw_only=True)
class Fsync(Request):
    """FSYNC and FSYNCDIR; ``datasync`` for fdatasync."""

    fh: int
    datasync: bool


@dataclass(slots=True, kw_only=True)
class Setxattr(Request):
    name: bytes
    value: bytes
    flags: int
    setxattr_flags: int


@dataclass(slots=True, kw_only=True)
class Getxattr(Request):
    name: bytes
    size: int


@dataclass(slots=True, kw_only=True)
class Listxattr(Request):
    size: int


@dataclass(slots=True, kw_only=True)
class Removexattr(Request):
    name: bytes


@dataclass(slots=True, kw_only=True)
class Init(Request):
    major: int
    minor: int
    max_readahead: int
    flags: int


@dataclass(slots=True, kw_only=True)
class Lk(Request):
    """GETLK, SETLK and SETLKW; ``lk_flags & LK_FLOCK`` marks flock(2) requests."""

    fh: int
    owner: int
    start: int
    end: int
    type: int
    lock_pid: int
    lk_flags: int


@dataclass(slots=True, kw_only=True)
class Access(Request):
    mask: int


@dataclass(slots=True, kw_only=True)
class Interrupt(Request):
    target: int


@dataclass(slots=True, kw_only=True)
class Bmap(Request):
    block: int
    blocksize: int


@dataclass(slots=True, kw_only=True)
class Destroy(Request):
    pass


@dataclass(slots=True, kw_only=True)
class Ioctl(Request):
    fh: int
    flags: int
    cmd: int
    arg: int
    in_size: int
    out_size: int
    data: bytes


@dataclass(slots=True, kw_only=True)
class Poll(Request):
    fh: int
    kh: int
    flags: int
    events: int


@dataclass(slots=True, kw_only=True)
class NotifyReply(Request):
    """The kernel's answer to a RETRIEVE notification; ``unique`` is the notify's id."""

    offset: int
    data: bytes


@dataclass(slots=True, kw_only=True)
class Fallocate(Request):
    fh: int
    offset: int
    length: int
    mode: int


@dataclass(slots=True, kw_only=True)
class Lseek(Request):
    fh: int
    offset: int
    whence: int


@dataclass(slots=True, kw_only=True)
class CopyFileRange(Request):
    """COPY_FILE_RANGE (reply is 32-bit) and COPY_FILE_RANGE_64 (``wide``)."""

    fh_in: int
    off_in: int
    nodeid_out: int
    fh_out: int
    off_out: int
    length: int
    flags: int
    wide: bool


@dataclass(slots=True, kw_only=True)
class Syncfs(Request):
    pass


@dataclass(slots=True, kw_only=True)
class Unsupported(Request):
    """An opcode we decode only far enough to answer ENOSYS (STATX, DAX mappings, ...)."""


# ----------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------

_IN = _abi.FUSE_IN_HEADER


@dataclass(slots=True)
class Negotiated:
    """Connection parameters that change how requests are laid out or replies sized."""

    minor: int = _abi.KERNEL_MINOR_VERSION
    flags: int = 0
    max_write: int = 128 * 1024
    max_pages: int = 32
    max_readahead: int = 128 * 1024

    @property
    def setxattr_ext(self) -> bool:
        return bool(self.flags & InitFlag.SETXATTR_EXT)

    @property
    def payload_size(self) -> int:
        """Bytes a ring payload buffer must hold (the kernel's ``max_payload_sz``)."""
        return max(_abi.MIN_READ_BUFFER, self.max_write, self.max_pages * _abi.PAGE_SIZE)


def _arg_size(opcode: int, neg: Negotiated) -> int:
    if opcode == Opcode.SETXATTR:
        return _abi.FUSE_SETXATTR_IN.size if neg.setxattr_ext else _abi.COMPAT_SETXATTR_IN_SIZE
    return _ARG_SIZES.get(opcode, 0)


def split_devfuse(buf: memoryview, neg: Negotiated) -> tuple[memoryview, memoryview, memoryview]:
    """Cut one ``/dev/fuse`` request into (in header, op struct, rest).

    Returns views into ``buf``. Raises :class:`ProtocolError` if ``buf`` is shorter than
    its header claims or than the op struct; an INIT from an old kernel (shorter struct)
    is accepted.
    """
    if len(buf) < _IN.size:
        raise ProtocolError(f"request of {len(buf)} bytes is shorter than fuse_in_header")
    length, opcode = struct.unpack_from("<II", buf)
    if length != len(buf):
        raise ProtocolError(f"header says {length} bytes but {len(buf)} were read")
    argsz = _arg_size(opcode, neg)
    if opcode == Opcode.INIT:
        argsz = min(argsz, length - _IN.size)
    end = _IN.size + argsz
    if end > length:
        raise ProtocolError(
            f"{_opname(opcode)}: {length} bytes cannot hold its {argsz}-byte struct"
        )
    return buf[: _IN.size], buf[_IN.size : end], buf[end:]


def _opname(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode}"


def _cstr(data: bytes, start: int = 0) -> tuple[bytes, int]:
    """Return the NUL-terminated string at ``start`` and the index after its NUL."""
    end = data.find(b"\0", start)
    if end < 0:
        raise ProtocolError("name is not NUL-terminated")
    return data[start:end], end + 1


def decode_request(
    header: memoryview, arg: memoryview, payload: memoryview, neg: Negotiated
) -> Request:
    """Turn the pieces of one request into a typed :class:`Request`.

    Args:
        header: at least the 40 bytes of ``fuse_in_header``.
        arg: the op's fixed struct; may be longer than the struct (the ring's ``op_in`` is
            always 128 bytes, with stale bytes past the struct).
        payload: everything after the struct: names, data, then ``total_extlen * 8``
            bytes of request extensions (which are stripped).
        neg: what INIT negotiated (the SETXATTR struct size depends on it).

    Returns:
        The request. ``Write.data`` views ``payload``; everything else is copied.

    Raises:
        ProtocolError: the pieces are too short, a name lacks its NUL, or the opcode is
            unknown.
    """
    if len(header) < _IN.size:
        raise ProtocolError("fuse_in_header is truncated")
    _len, opcode, unique, nodeid, uid, gid, pid, extlen, _pad = _IN.unpack_from(header)
    if extlen:
        ext = extlen * 8
        if ext > len(payload):
            raise ProtocolError(f"{ext} bytes of extensions do not fit in the payload")
        payload = payload[: len(payload) - ext]
    decoder = _DECODERS.get(opcode)
    if decoder is None:
        raise ProtocolError(f"unknown opcode {opcode}")
    argsz = _arg_size(opcode, neg)
    if len(arg) < argsz and opcode != Opcode.INIT:
        raise ProtocolError(f"{_opname(opcode)}: argument struct truncated")
    common = (opcode, unique, nodeid, uid, gid, pid)
    try:
        return decoder(common, arg, payload, neg)
    except struct.error as exc:
        raise ProtocolError(f"{_opname(opcode)}: {exc}") from None


def decode_devfuse(buf: memoryview, neg: Negotiated) -> Request:
    """Decode one request exactly as read from ``/dev/fuse``. See :func:`decode_request`."""
    header, arg, payload = split_devfuse(buf, neg)
    return decode_request(header, arg, payload, neg)


_RING_PAYLOAD_SZ = struct.Struct("<I")
_RING_PAYLOAD_SZ_AT = _abi.URING_ENT_IN_OUT_OFFSET + 16


def decode_ring(header: memoryview, payload: memoryview, neg: Negotiated) -> Request:
    """Decode the request in one io-uring entry.

    Args:
        header: the entry's 288-byte ``fuse_uring_req_header``.
        payload: the entry's whole payload buffer; ``ring_ent_in_out.payload_sz`` says
            how much of it the request uses.

    The op struct normally sits in ``op_in``. For some requests (NOTIFY_REPLY, seen on
    6.18) the kernel puts it at the start of the payload instead; the classic total
    length in the in header (``40 + payload_sz`` then) tells the two apart.

    Raises:
        ProtocolError: as :func:`decode_request`, or if ``payload_sz`` exceeds the buffer.
    """
    if len(header) < _abi.FUSE_URING_REQ_HEADER_SZ:
        raise ProtocolError("ring header truncated")
    (size,) = _RING_PAYLOAD_SZ.unpack_from(header, _RING_PAYLOAD_SZ_AT)
    if size > len(payload):
        raise ProtocolError(f"payload_sz {size} exceeds the {len(payload)}-byte buffer")
    length, opcode = struct.unpack_from("<II", header)
    argsz = _arg_size(opcode, neg)
    body = payload[:size]
    if argsz and length == _IN.size + size and size >= argsz:
        return decode_request(header, body[:argsz], body[argsz:], neg)
    op_in = header[_abi.URING_OP_IN_OFFSET : _abi.URING_ENT_IN_OUT_OFFSET]
    return decode_request(header, op_in, body, neg)


_Common = tuple[int, int, int, int, int, int]
_Decoder = Callable[[_Common, memoryview, memoryview, Negotiated], Request]


def _base(c: _Common) -> dict[str, int]:
    return {"opcode": c[0], "unique": c[1], "nodeid": c[2], "uid": c[3], "gid": c[4], "pid": c[5]}


def _d_lookup(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    name, _ = _cstr(p.tobytes())
    op = c[0]
    if op == Opcode.UNLINK:
        return Unlink(**_base(c), name=name)
    if op == Opcode.RMDIR:
        return Rmdir(**_base(c), name=name)
    if op == Opcode.REMOVEXATTR:
        return Removexattr(**_base(c), name=name)
    return Lookup(**_base(c), name=name)


def _d_forget(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (nlookup,) = _abi.FUSE_FORGET_IN.unpack_from(a)
    return Forget(**_base(c), nlookup=nlookup)


def _d_batch_forget(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    count, _ = _abi.FUSE_BATCH_FORGET_IN.unpack_from(a)
    one = _abi.FUSE_FORGET_ONE
    if count * one.size > len(p):
        raise ProtocolError(f"BATCH_FORGET of {count} entries does not fit in {len(p)} bytes")
    forgets = [one.unpack_from(p, i * one.size) for i in range(count)]
    return BatchForget(**_base(c), forgets=forgets)


def _d_getattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, _, fh = _abi.FUSE_GETATTR_IN.unpack_from(a)
    return Getattr(**_base(c), fh=fh if flags & _abi.GETATTR_FH else None)


def _d_setattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (valid, _, fh, size, lock_owner, atime, mtime, ctime, atimensec, mtimensec, ctimensec,
     mode, _u4, uid, gid, _u5) = _abi.FUSE_SETATTR_IN.unpack_from(a)  # fmt: skip
    return Setattr(
        **_base(c), valid=valid, fh=fh if valid & _abi.SetattrValid.FH else None, size=size,
        lock_owner=lock_owner, atime=atime, mtime=mtime, ctime=ctime, atimensec=atimensec,
        mtimensec=mtimensec, ctimensec=ctimensec, mode=mode, setattr_uid=uid, setattr_gid=gid,
    )  # fmt: skip


def _d_noarg(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    cls = _NOARG_CLASSES[c[0]]
    return cls(**_base(c))


def _d_symlink(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    data = p.tobytes()
    name, i = _cstr(data)
    target, _ = _cstr(data, i)
    return Symlink(**_base(c), name=name, target=target)


def _d_mknod(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    mode, rdev, umask, _ = _abi.FUSE_MKNOD_IN.unpack_from(a)
    name, _i = _cstr(p.tobytes())
    return Mknod(**_base(c), name=name, mode=mode, rdev=rdev, umask=umask)


def _d_mkdir(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    mode, umask = _abi.FUSE_MKDIR_IN.unpack_from(a)
    name, _i = _cstr(p.tobytes())
    return Mkdir(**_base(c), name=name, mode=mode, umask=umask)


def _d_rename(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    if c[0] == Opcode.RENAME2:
        newdir, flags, _ = _abi.FUSE_RENAME2_IN.unpack_from(a)
    else:
        (newdir,) = _abi.FUSE_RENAME_IN.unpack_from(a)
        flags = 0
    data = p.tobytes()
    name, i = _cstr(data)
    newname, _ = _cstr(data, i)
    return Rename(**_base(c), name=name, newdir=newdir, newname=newname, flags=flags)


def _d_link(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (old,) = _abi.FUSE_LINK_IN.unpack_from(a)
    name, _ = _cstr(p.tobytes())
    return Link(**_base(c), oldnodeid=old, newname=name)


def _d_open(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, open_flags = _abi.FUSE_OPEN_IN.unpack_from(a)
    return Open(**_base(c), flags=flags, open_flags=open_flags)


def _d_create(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, mode, umask, open_flags = _abi.FUSE_CREATE_IN.unpack_from(a)
    name = _cstr(p.tobytes())[0] if c[0] == Opcode.CREATE else b""
    return Create(**_base(c), name=name, flags=flags, mode=mode, umask=umask, open_flags=open_flags)


def _d_read(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, size, read_flags, lock_owner, flags, _ = _abi.FUSE_READ_IN.unpack_from(a)
    return Read(
        **_base(c), fh=fh, offset=offset, size=size, read_flags=read_flags,
        lock_owner=lock_owner, flags=flags,
    )  # fmt: skip


def _d_write(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, size, write_flags, lock_owner, flags, _ = _abi.FUSE_WRITE_IN.unpack_from(a)
    if size > len(p):
        raise ProtocolError(f"WRITE of {size} bytes carries only {len(p)}")
    return Write(
        **_base(c), fh=fh, offset=offset, size=size, write_flags=write_flags,
        lock_owner=lock_owner, flags=flags, data=p[:size],
    )  # fmt: skip


def _d_release(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, flags, release_flags, lock_owner = _abi.FUSE_RELEASE_IN.unpack_from(a)
    return Release(
        **_base(c), fh=fh, flags=flags, release_flags=release_flags, lock_owner=lock_owner
    )


def _d_flush(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, _, _, lock_owner = _abi.FUSE_FLUSH_IN.unpack_from(a)
    return Flush(**_base(c), fh=fh, lock_owner=lock_owner)


def _d_fsync(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, fsync_flags, _ = _abi.FUSE_FSYNC_IN.unpack_from(a)
    return Fsync(**_base(c), fh=fh, datasync=bool(fsync_flags & _abi.FSYNC_FDATASYNC))


def _d_setxattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    if n.setxattr_ext:
        size, flags, sflags, _ = _abi.FUSE_SETXATTR_IN.unpack_from(a)
    else:
        size, flags = _abi.FUSE_SETXATTR_IN_COMPAT.unpack_from(a)
        sflags = 0
    data = p.tobytes()
    name, i = _cstr(data)
    if i + size > len(data):
        raise ProtocolError(f"SETXATTR value of {size} bytes does not fit")
    value = data[i : i + size]
    return Setxattr(**_base(c), name=name, value=value, flags=flags, setxattr_flags=sflags)


def _d_getxattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    size, _ = _abi.FUSE_GETXATTR_IN.unpack_from(a)
    if c[0] == Opcode.LISTXATTR:
        return Listxattr(**_base(c), size=size)
    name, _i = _cstr(p.tobytes())
    return Getxattr(**_base(c), name=name, size=size)


def _d_init(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    if len(a) < _abi.FUSE_INIT_IN_COMPAT.size:
        raise ProtocolError("INIT argument truncated")
    major, minor, max_readahead, flags = _abi.FUSE_INIT_IN_COMPAT.unpack_from(a)
    if len(a) >= _abi.FUSE_INIT_IN.size and flags & InitFlag.INIT_EXT:
        flags |= _abi.FUSE_INIT_IN.unpack_from(a)[4] << 32
    return Init(**_base(c), major=major, minor=minor, max_readahead=max_readahead, flags=flags)


def _d_lk(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, owner, start, end, typ, pid, lk_flags, _ = _abi.FUSE_LK_IN.unpack_from(a)
    return Lk(
        **_base(c), fh=fh, owner=owner, start=start, end=end, type=typ, lock_pid=pid,
        lk_flags=lk_flags,
    )  # fmt: skip


def _d_access(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    mask, _ = _abi.FUSE_ACCESS_IN.unpack_from(a)
    return Access(**_base(c), mask=mask)


def _d_interrupt(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (target,) = _abi.FUSE_INTERRUPT_IN.unpack_from(a)
    return Interrupt(**_base(c), target=target)


def _d_bmap(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    block, blocksize, _ = _abi.FUSE_BMAP_IN.unpack_from(a)
    return Bmap(**_base(c), block=block, blocksize=blocksize)


def _d_ioctl(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, flags, cmd, arg, in_size, out_size = _abi.FUSE_IOCTL_IN.unpack_from(a)
    return Ioctl(
        **_base(c), fh=fh, flags=flags, cmd=cmd, arg=arg, in_size=in_size,
        out_size=out_size, data=p[:in_size].tobytes(),
    )  # fmt: skip


def _d_poll(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, kh, flags, events = _abi.FUSE_POLL_IN.unpack_from(a)
    return Poll(**_base(c), fh=fh, kh=kh, flags=flags, events=events)


def _d_notify_reply(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    _, offset, size, _, _, _ = _abi.FUSE_NOTIFY_RETRIEVE_IN.unpack_from(a)
    if size > len(p):
        raise ProtocolError(f"NOTIFY_REPLY of {size} bytes carries only {len(p)}")
    return NotifyReply(**_base(c), offset=offset, data=p[:size].tobytes())


def _d_fallocate(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, length, mode, _ = _abi.FUSE_FALLOCATE_IN.unpack_from(a)
    return Fallocate(**_base(c), fh=fh, offset=offset, length=length, mode=mode)


def _d_lseek(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, whence, _ = _abi.FUSE_LSEEK_IN.unpack_from(a)
    return Lseek(**_base(c), fh=fh, offset=offset, whence=whence)


def _d_copy_file_range(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh_in, off_in, nodeid_out, fh_out, off_out, length, flags = (
        _abi.FUSE_COPY_FILE_RANGE_IN.unpack_from(a)
    )
    return CopyFileRange(
        **_base(c), fh_in=fh_in, off_in=off_in, nodeid_out=nodeid_out, fh_out=fh_out,
        off_out=off_out, length=length, flags=flags, wide=c[0] == Opcode.COPY_FILE_RANGE_64,
    )  # fmt: skip


_NOARG_CLASSES: dict[int, type[Request]] = {
    Opcode.READLINK: Readlink,
    Opcode.STATFS: Statfs,
    Opcode.DESTROY: Destroy,
    Opcode.SYNCFS: Syncfs,
    Opcode.STATX: Unsupported,
    Opcode.SETUPMAPPING: Unsupported,
    Opcode.REMOVEMAPPING: Unsupported,
}

# opcode -> (size of its fixed argument struct, decoder). The one table that decoding,
# splitting and debugging read; dispatch has its own table of handlers (ops/_dispatch.py).
_TABLE: dict[int, tuple[int, _Decoder]] = {
    Opcode.LOOKUP: (0, _d_lookup),
    Opcode.FORGET: (_abi.FUSE_FORGET_IN.size, _d_forget),
    Opcode.GETATTR: (_abi.FUSE_GETATTR_IN.size, _d_getattr),
    Opcode.SETATTR: (_abi.FUSE_SETATTR_IN.size, _d_setattr),
    Opcode.READLINK: (0, _d_noarg),
    Opcode.SYMLINK: (0, _d_symlink),
    Opcode.MKNOD: (_abi.FUSE_MKNOD_IN.size, _d_mknod),
    Opcode.MKDIR: (_abi.FUSE_MKDIR_IN.size, _d_mkdir),
    Opcode.UNLINK: (0, _d_lookup),
    Opcode.RMDIR: (0, _d_lookup),
    Opcode.RENAME: (_abi.FUSE_RENAME_IN.size, _d_rename),
    Opcode.LINK: (_abi.FUSE_LINK_IN.size, _d_link),
    Opcode.OPEN: (_abi.FUSE_OPEN_IN.size, _d_open),
    Opcode.READ: (_abi.FUSE_READ_IN.size, _d_read),
    Opcode.WRITE: (_abi.FUSE_WRITE_IN.size, _d_write),
    Opcode.STATFS: (0, _d_noarg),
    Opcode.RELEASE: (_abi.FUSE_RELEASE_IN.size, _d_release),
    Opcode.FSYNC: (_abi.FUSE_FSYNC_IN.size, _d_fsync),
    Opcode.SETXATTR: (_abi.FUSE_SETXATTR_IN.size, _d_setxattr),
    Opcode.GETXATTR: (_abi.FUSE_GETXATTR_IN.size, _d_getxattr),
    Opcode.LISTXATTR: (_abi.FUSE_GETXATTR_IN.size, _d_getxattr),
    Opcode.REMOVEXATTR: (0, _d_lookup),
    Opcode.FLUSH: (_abi.FUSE_FLUSH_IN.size, _d_flush),
    Opcode.INIT: (_abi.FUSE_INIT_IN.size, _d_init),
    Opcode.OPENDIR: (_abi.FUSE_OPEN_IN.size, _d_open),
    Opcode.READDIR: (_abi.FUSE_READ_IN.size, _d_read),
    Opcode.RELEASEDIR: (_abi.FUSE_RELEASE_IN.size, _d_release),
    Opcode.FSYNCDIR: (_abi.FUSE_FSYNC_IN.size, _d_fsync),
    Opcode.GETLK: (_abi.FUSE_LK_IN.size, _d_lk),
    Opcode.SETLK: (_abi.FUSE_LK_IN.size, _d_lk),
    Opcode.SETLKW: (_abi.FUSE_LK_IN.size, _d_lk),
    Opcode.ACCESS: (_abi.FUSE_ACCESS_IN.size, _d_access),
    Opcode.CREATE: (_abi.FUSE_CREATE_IN.size, _d_create),
    Opcode.INTERRUPT: (_abi.FUSE_INTERRUPT_IN.size, _d_interrupt),
    Opcode.BMAP: (_abi.FUSE_BMAP_IN.size, _d_bmap),
    Opcode.DESTROY: (0, _d_noarg),
    Opcode.IOCTL: (_abi.FUSE_IOCTL_IN.size, _d_ioctl),
    Opcode.POLL: (_abi.FUSE_POLL_IN.size, _d_poll),
    Opcode.NOTIFY_REPLY: (_abi.FUSE_NOTIFY_RETRIEVE_IN.size, _d_notify_reply),
    Opcode.BATCH_FORGET: (_abi.FUSE_BATCH_FORGET_IN.size, _d_batch_forget),
    Opcode.FALLOCATE: (_abi.FUSE_FALLOCATE_IN.size, _d_fallocate),
    Opcode.READDIRPLUS: (_abi.FUSE_READ_IN.size, _d_read),
    Opcode.RENAME2: (_abi.FUSE_RENAME2_IN.size, _d_rename),
    Opcode.LSEEK: (_abi.FUSE_LSEEK_IN.size, _d_lseek),
    Opcode.COPY_FILE_RANGE: (_abi.FUSE_COPY_FILE_RANGE_IN.size, _d_copy_file_range),
    Opcode.SETUPMAPPING: (0, _d_noarg),
    Opcode.REMOVEMAPPING: (0, _d_noarg),
    Opcode.SYNCFS: (_abi.FUSE_SYNCFS_IN.size, _d_noarg),
    Opcode.TMPFILE: (_abi.FUSE_CREATE_IN.size, _d_create),
    Opcode.STATX: (_abi.FUSE_STATX_IN.size, _d_noarg),
    Opcode.COPY_FILE_RANGE_64: (_abi.FUSE_COPY_FILE_RANGE_IN.size, _d_copy_file_range),
}
_ARG_SIZES = {op: size for op, (size, _) in _TABLE.items()}
_DECODERS = {op: dec for op, (_, dec) in _TABLE.items()}

#: Requests the kernel expects no reply to.
NO_REPLY = frozenset({Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT})


# ----------------------------------------------------------------------------------------
# Encoding replies
# ----------------------------------------------------------------------------------------


def out_header(length: int, error: int, unique: int) -> bytes:
    """``fuse_out_header``; ``error`` is 0 or a negative errno, ``length`` includes it."""
    return _abi.FUSE_OUT_HEADER.pack(length, error, unique)


_U64 = (1 << 64) - 1


def _split_timeout(t: float) -> tuple[int, int]:
    """Seconds and nanoseconds for the kernel; huge values (and inf) mean "forever"."""
    if not t > 0:  # also NaN
        return 0, 0
    if t >= _U64:
        return _U64, 0
    sec = int(t)
    return sec, min(int((t - sec) * 1e9), 999_999_999)


def _attr_tuple(a: EntryAttributes) -> tuple[int, ...]:
    # The kernel reads the seconds as signed 64-bit: pre-1970 times are two's complement.
    atime, atimens = divmod(a.st_atime_ns, 1_000_000_000)
    mtime, mtimens = divmod(a.st_mtime_ns, 1_000_000_000)
    ctime, ctimens = divmod(a.st_ctime_ns, 1_000_000_000)
    return (
        a.st_ino, a.st_size, a.st_blocks, atime & _U64, mtime & _U64, ctime & _U64, atimens,
        mtimens, ctimens, a.st_mode, a.st_nlink, a.st_uid, a.st_gid, a.st_rdev, a.st_blksize, 0,
    )  # fmt: skip


def encode_entry(
    a: EntryAttributes, entry_timeout: float = 1.0, attr_timeout: float = 1.0
) -> bytes:
    """``fuse_entry_out`` for LOOKUP/MKNOD/MKDIR/SYMLINK/LINK (and CREATE's first half).

    The timeouts apply where ``a``'s own are None.

    Raises:
        struct.error: a field is out of range (negative size, too large ino...).
    """
    ev, evn = _split_timeout(entry_timeout if a.entry_timeout is None else a.entry_timeout)
    av, avn = _split_timeout(attr_timeout if a.attr_timeout is None else a.attr_timeout)
    return _abi.FUSE_ENTRY_OUT.pack(a.st_ino, a.generation, ev, av, evn, avn, *_attr_tuple(a))


def encode_negative_entry(timeout: float) -> bytes:
    """A LOOKUP reply with nodeid 0: "no such name", cached for ``timeout`` seconds."""
    ev, evn = _split_timeout(timeout)
    return _abi.FUSE_ENTRY_OUT.pack(0, 0, ev, 0, evn, 0, *([0] * 16))


def encode_attr(a: EntryAttributes, attr_timeout: float = 1.0) -> bytes:
    """``fuse_attr_out`` for GETATTR/SETATTR; ``attr_timeout`` applies if ``a``'s is None."""
    av, avn = _split_timeout(attr_timeout if a.attr_timeout is None else a.attr_timeout)
    return _abi.FUSE_ATTR_OUT.pack(av, avn, 0, *_attr_tuple(a))


def encode_open(fh: int, open_flags: int) -> bytes:
    """``fuse_open_out`` for OPEN/OPENDIR (and CREATE's second half)."""
    return _abi.FUSE_OPEN_OUT.pack(fh, open_flags, 0)


def encode_write(size: int) -> bytes:
    """``fuse_write_out``: bytes written (WRITE, COPY_FILE_RANGE)."""
    return _abi.FUSE_WRITE_OUT.pack(size, 0)


def encode_u64(value: int) -> bytes:
    """A single u64 reply: LSEEK offset, BMAP block, COPY_FILE_RANGE_64 byte count."""
    return _abi.FUSE_LSEEK_OUT.pack(value)


def encode_statfs(s: StatvfsData) -> bytes:
    """``fuse_statfs_out``."""
    return _abi.FUSE_STATFS_OUT.pack(
        s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_bsize, s.f_namemax,
        s.f_frsize, 0,
    )  # fmt: skip


def encode_xattr_size(size: int) -> bytes:
    """``fuse_getxattr_out``: the size probe answer (request size 0)."""
    return _abi.FUSE_GETXATTR_OUT.pack(size, 0)


def encode_lock(start: int, end: int, typ: int, pid: int) -> bytes:
    """``fuse_lk_out`` for GETLK."""
    return _abi.FUSE_LK_OUT.pack(start, end, typ, pid)


def encode_poll(revents: int) -> bytes:
    return _abi.FUSE_POLL_OUT.pack(revents, 0)


def encode_ioctl(result: int, data: bytes) -> bytes:
    return _abi.FUSE_IOCTL_OUT.pack(result, 0, 0, 0) + data


@dataclass(slots=True)
class InitConfig:
    """What the filesystem asks for at INIT (the kernel grants the intersection)."""

    want: int
    max_write: int = 128 * 1024
    max_pages: int = 32
    max_readahead: int = 128 * 1024
    max_background: int = 64
    congestion_threshold: int = 48
    time_gran: int = 1
    #: The kernel's fs.fuse.max_pages_limit: more pages than this are never used.
    max_pages_limit: int = 256


def negotiate_init(req: Init, cfg: InitConfig) -> tuple[bytes, Negotiated]:
    """Answer INIT: returns the reply body (``fuse_init_out``) and what was agreed.

    Raises:
        ProtocolError: the kernel speaks a major version other than 7, or a minor older
            than we support.
    """
    if req.major != _abi.KERNEL_VERSION:
        raise ProtocolError(f"kernel speaks FUSE {req.major}.{req.minor}, we speak 7.x")
    if req.minor < _abi.MIN_KERNEL_MINOR_VERSION:
        raise ProtocolError(
            f"kernel FUSE 7.{req.minor} is older than 7.{_abi.MIN_KERNEL_MINOR_VERSION}"
        )
    want = cfg.want | InitFlag.INIT_EXT | InitFlag.MAX_PAGES
    flags = req.flags & want
    max_write = max(4096, cfg.max_write)
    max_pages = max(1, min(cfg.max_pages, cfg.max_pages_limit, 0xFFFF))
    neg = Negotiated(
        minor=min(req.minor, _abi.KERNEL_MINOR_VERSION),
        flags=flags,
        max_write=max_write,
        max_pages=max_pages,
        max_readahead=min(cfg.max_readahead, req.max_readahead),
    )
    body = _abi.FUSE_INIT_OUT.pack(
        _abi.KERNEL_VERSION, _abi.KERNEL_MINOR_VERSION, neg.max_readahead,
        flags & 0xFFFFFFFF, cfg.max_background, cfg.congestion_threshold, max_write,
        cfg.time_gran, max_pages, 0, flags >> 32, 0, 0,
    )  # fmt: skip
    return body, neg


# ----------------------------------------------------------------------------------------
# Directory listings
# ----------------------------------------------------------------------------------------


class DirentBuffer:
    """Packs directory entries into a READDIR or READDIRPLUS reply of bounded size.

    ``add`` returns False (and writes nothing) when the entry does not fit, so the caller
    stops; the kernel asks again with the last fitting entry's offset.
    """

    __slots__ = ("_attr_timeout", "_buf", "_entry_timeout", "_plus", "_pos", "count")

    def __init__(
        self, size: int, plus: bool, entry_timeout: float = 1.0, attr_timeout: float = 1.0
    ) -> None:
        self._buf = bytearray(size)
        self._pos = 0
        self._plus = plus
        self._entry_timeout = entry_timeout
        self._attr_timeout = attr_timeout
        self.count = 0

    def add(self, name: bytes, attr: EntryAttributes, offset: int) -> bool:
        """Append one entry. Raises ValueError for an empty name or one with ``/`` or NUL."""
        if not name or b"/" in name or b"\0" in name or len(name) > 1024:
            raise ValueError(f"invalid directory entry name {name!r}")
        namelen = len(name)
        reclen = _abi.FUSE_DIRENT.size + namelen
        padded = (reclen + _abi.DIRENT_ALIGN - 1) & ~(_abi.DIRENT_ALIGN - 1)
        head = _abi.FUSE_ENTRY_OUT.size if self._plus else 0
        end = self._pos + head + padded
        if end > len(self._buf):
            return False
        pos = self._pos
        if self._plus:
            if name in (b".", b".."):
                # No lookup count for these: the kernel ignores their entry part.
                self._buf[pos : pos + head] = bytes(head)
            else:
                self._buf[pos : pos + head] = encode_entry(
                    attr, self._entry_timeout, self._attr_timeout
                )
            pos += head
        _abi.FUSE_DIRENT.pack_into(
            self._buf, pos, attr.st_ino, offset, namelen, (attr.st_mode & 0o170000) >> 12
        )
        pos += _abi.FUSE_DIRENT.size
        self._buf[pos : pos + namelen] = name
        # Padding bytes are already zero (fresh bytearray).
        self._pos = end
        self.count += 1
        return True

    def getvalue(self) -> memoryview:
        return memoryview(self._buf)[: self._pos]


# ----------------------------------------------------------------------------------------
# Notifications (server -> kernel, unique == 0)
# ----------------------------------------------------------------------------------------


def _notify(code: int, body: bytes) -> bytes:
    return out_header(_abi.FUSE_OUT_HEADER.size + len(body), code, 0) + body


def notify_inval_inode(ino: int, offset: int, length: int) -> bytes:
    """Drop cached attributes of ``ino`` and its data in [offset, offset+length).

    ``offset`` < 0 drops attributes only; ``length`` <= 0 means "to the end of the file".
    """
    return _notify(
        _abi.NotifyCode.INVAL_INODE, _abi.FUSE_NOTIFY_INVAL_INODE_OUT.pack(ino, offset, length)
    )


def notify_inval_entry(parent: int, name: bytes, expire_only: bool = False) -> bytes:
    """Drop (or with ``expire_only``, just expire) the cached ``parent/name`` entry."""
    flags = _abi.EXPIRE_ONLY if expire_only else 0
    body = _abi.FUSE_NOTIFY_INVAL_ENTRY_OUT.pack(parent, len(name), flags) + name + b"\0"
    return _notify(_abi.NotifyCode.INVAL_ENTRY, body)


def notify_delete(parent: int, child: int, name: bytes) -> bytes:
    """Tell the kernel ``parent/name`` (inode ``child``) was deleted behind its back."""
    body = _abi.FUSE_NOTIFY_DELETE_OUT.pack(parent, child, len(name), 0) + name + b"\0"
    return _notify(_abi.NotifyCode.DELETE, body)


def notify_store(ino: int, offset: int, data: bytes) -> bytes:
    """Put ``data`` into the kernel's page cache of ``ino`` at ``offset``."""
    body = _abi.FUSE_NOTIFY_STORE_OUT.pack(ino, offset, len(data), 0) + data
    return _notify(_abi.NotifyCode.STORE, body)


def notify_retrieve(notify_unique: int, ino: int, offset: int, size: int) -> bytes:
    """Ask the kernel for cached data of ``ino``; it answers with a NOTIFY_REPLY request."""
    body = _abi.FUSE_NOTIFY_RETRIEVE_OUT.pack(notify_unique, ino, offset, size, 0)
    return _notify(_abi.NotifyCode.RETRIEVE, body)


def notify_poll_wakeup(kh: int) -> bytes:
    """Wake up ``poll`` waiters registered with kernel handle ``kh``."""
    return _notify(_abi.NotifyCode.POLL, _abi.FUSE_NOTIFY_POLL_WAKEUP_OUT.pack(kh))


# ----------------------------------------------------------------------------------------
# Debug formatting
# ----------------------------------------------------------------------------------------


def describe(req: Request) -> str:
    """A one-line trace of a request: ``LOOKUP n1 name=b'foo'`` (for debug logs)."""
    parts = [_opname(req.opcode), f"n{req.nodeid}"]
    for name in type(req).__dataclass_fields__:
        if name in ("opcode", "unique", "nodeid", "uid", "gid", "pid"):
            continue
        value = getattr(req, name)
        if isinstance(value, memoryview):
            value = f"<{len(value)} bytes>"
        elif isinstance(value, bytes) and len(value) > 64:
            value = value[:64] + b"..."
        parts.append(f"{name}={value!r}" if isinstance(value, bytes) else f"{name}={value}")
    return " ".join(parts)
