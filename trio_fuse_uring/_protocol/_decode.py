"""Decoding: the pieces of a request, as the kernel lays them out, into typed requests."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import _abi
from .._abi import InitFlag, Opcode
from ._requests import (
    Access,
    BatchForget,
    Bmap,
    CopyFileRange,
    Create,
    Destroy,
    Fallocate,
    Flush,
    Forget,
    Fsync,
    Getattr,
    Getxattr,
    Init,
    Interrupt,
    Ioctl,
    Link,
    Listxattr,
    Lk,
    Lookup,
    Lseek,
    Mkdir,
    Mknod,
    NotifyReply,
    Open,
    Poll,
    ProtocolError,
    Read,
    Readlink,
    Release,
    Removexattr,
    Rename,
    Request,
    Rmdir,
    Setattr,
    Setxattr,
    Statfs,
    Statx,
    Symlink,
    Syncfs,
    Unlink,
    Unsupported,
    Write,
    _opname,
)

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
    return _decode(_IN.unpack_from(header), arg, payload, neg)


def _decode(h: tuple[int, ...], arg: memoryview, payload: memoryview, neg: Negotiated) -> Request:
    """decode_request, given the unpacked ``fuse_in_header`` fields."""
    _len, opcode, unique, nodeid, uid, gid, pid, extlen, _pad = h
    if extlen:
        ext = extlen * 8
        if ext > len(payload):
            raise ProtocolError(f"{ext} bytes of extensions do not fit in the payload")
        payload = payload[: len(payload) - ext]
    info = OPCODES.get(opcode)
    if info is None:
        raise ProtocolError(f"unknown opcode {opcode}")
    argsz, decoder = info.arg_size, info.decode
    if opcode == Opcode.SETXATTR:
        argsz = _arg_size(opcode, neg)
    if len(arg) < argsz and opcode != Opcode.INIT:
        raise ProtocolError(f"{_opname(opcode)}: argument struct truncated")
    try:
        return decoder((opcode, unique, nodeid, uid, gid, pid), arg, payload, neg)
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
    h = _IN.unpack_from(header)
    (size,) = _RING_PAYLOAD_SZ.unpack_from(header, _RING_PAYLOAD_SZ_AT)
    if size > len(payload):
        raise ProtocolError(f"payload_sz {size} exceeds the {len(payload)}-byte buffer")
    body = payload[:size]
    if h[0] == _IN.size + size and size:  # everything in the payload: is there a struct?
        argsz = _arg_size(h[1], neg)
        if argsz and size >= argsz:
            return _decode(h, body[:argsz], body[argsz:], neg)
    return _decode(h, header[_OP_IN_AT:_ENT_IN_OUT_AT], body, neg)


_OP_IN_AT = _abi.URING_OP_IN_OFFSET
_ENT_IN_OUT_AT = _abi.URING_ENT_IN_OUT_OFFSET


_Common = tuple[int, int, int, int, int, int]
_Decoder = Callable[[_Common, memoryview, memoryview, Negotiated], Request]


def _d_name(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    # LOOKUP, UNLINK, RMDIR and REMOVEXATTR: a name and nothing else.
    name, _ = _cstr(p.tobytes())
    return OPCODES[c[0]].request(*c, name=name)  # type: ignore[call-arg]


def _d_forget(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (nlookup,) = _abi.FUSE_FORGET_IN.unpack_from(a)
    return Forget(*c, nlookup=nlookup)


def _d_batch_forget(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    count, _ = _abi.FUSE_BATCH_FORGET_IN.unpack_from(a)
    one = _abi.FUSE_FORGET_ONE
    if count * one.size > len(p):
        raise ProtocolError(f"BATCH_FORGET of {count} entries does not fit in {len(p)} bytes")
    forgets = [one.unpack_from(p, i * one.size) for i in range(count)]
    return BatchForget(*c, forgets=forgets)


def _d_getattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, _, fh = _abi.FUSE_GETATTR_IN.unpack_from(a)
    return Getattr(*c, fh=fh if flags & _abi.GETATTR_FH else None)


def _d_statx(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, _, fh, sx_flags, sx_mask = _abi.FUSE_STATX_IN.unpack_from(a)
    fh_or_none = fh if flags & _abi.GETATTR_FH else None
    return Statx(*c, fh=fh_or_none, sx_flags=sx_flags, sx_mask=sx_mask)


def _d_setattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (valid, _, fh, size, lock_owner, atime, mtime, ctime, atimensec, mtimensec, ctimensec,
     mode, _u4, uid, gid, _u5) = _abi.FUSE_SETATTR_IN.unpack_from(a)  # fmt: skip
    return Setattr(
        *c, valid=valid, fh=fh if valid & _abi.SetattrValid.FH else None, size=size,
        lock_owner=lock_owner, atime=atime, mtime=mtime, ctime=ctime, atimensec=atimensec,
        mtimensec=mtimensec, ctimensec=ctimensec, mode=mode, setattr_uid=uid, setattr_gid=gid,
    )  # fmt: skip


def _d_noarg(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    return OPCODES[c[0]].request(*c)


def _d_symlink(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    data = p.tobytes()
    name, i = _cstr(data)
    target, _ = _cstr(data, i)
    return Symlink(*c, name=name, target=target)


def _d_mknod(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    mode, rdev, umask, _ = _abi.FUSE_MKNOD_IN.unpack_from(a)
    name, _i = _cstr(p.tobytes())
    return Mknod(*c, name=name, mode=mode, rdev=rdev, umask=umask)


def _d_mkdir(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    mode, umask = _abi.FUSE_MKDIR_IN.unpack_from(a)
    name, _i = _cstr(p.tobytes())
    return Mkdir(*c, name=name, mode=mode, umask=umask)


def _d_rename(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    if c[0] == Opcode.RENAME2:
        newdir, flags, _ = _abi.FUSE_RENAME2_IN.unpack_from(a)
    else:
        (newdir,) = _abi.FUSE_RENAME_IN.unpack_from(a)
        flags = 0
    data = p.tobytes()
    name, i = _cstr(data)
    newname, _ = _cstr(data, i)
    return Rename(*c, name=name, newdir=newdir, newname=newname, flags=flags)


def _d_link(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (old,) = _abi.FUSE_LINK_IN.unpack_from(a)
    name, _ = _cstr(p.tobytes())
    return Link(*c, oldnodeid=old, newname=name)


def _d_open(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, open_flags = _abi.FUSE_OPEN_IN.unpack_from(a)
    return Open(*c, flags=flags, open_flags=open_flags)


def _d_create(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    flags, mode, umask, open_flags = _abi.FUSE_CREATE_IN.unpack_from(a)
    name = _cstr(p.tobytes())[0] if c[0] == Opcode.CREATE else b""
    return Create(*c, name=name, flags=flags, mode=mode, umask=umask, open_flags=open_flags)


def _d_read(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    # Read's fields follow fuse_read_in's order: build it positionally (hot path).
    return Read(*c, *_abi.FUSE_READ_IN.unpack_from(a)[:6])


def _d_write(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, size, write_flags, lock_owner, flags, _ = _abi.FUSE_WRITE_IN.unpack_from(a)
    if size > len(p):
        raise ProtocolError(f"WRITE of {size} bytes carries only {len(p)}")
    return Write(
        *c, fh=fh, offset=offset, size=size, write_flags=write_flags,
        lock_owner=lock_owner, flags=flags, data=p[:size],
    )  # fmt: skip


def _d_release(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, flags, release_flags, lock_owner = _abi.FUSE_RELEASE_IN.unpack_from(a)
    return Release(*c, fh=fh, flags=flags, release_flags=release_flags, lock_owner=lock_owner)


def _d_flush(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, _, _, lock_owner = _abi.FUSE_FLUSH_IN.unpack_from(a)
    return Flush(*c, fh=fh, lock_owner=lock_owner)


def _d_fsync(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, fsync_flags, _ = _abi.FUSE_FSYNC_IN.unpack_from(a)
    return Fsync(*c, fh=fh, datasync=bool(fsync_flags & _abi.FSYNC_FDATASYNC))


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
    return Setxattr(*c, name=name, value=value, flags=flags, setxattr_flags=sflags)


def _d_getxattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    size, _ = _abi.FUSE_GETXATTR_IN.unpack_from(a)
    if c[0] == Opcode.LISTXATTR:
        return Listxattr(*c, size=size)
    name, _i = _cstr(p.tobytes())
    return Getxattr(*c, name=name, size=size)


def _d_init(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    if len(a) < _abi.FUSE_INIT_IN_COMPAT.size:
        raise ProtocolError("INIT argument truncated")
    major, minor, max_readahead, flags = _abi.FUSE_INIT_IN_COMPAT.unpack_from(a)
    if len(a) >= _abi.FUSE_INIT_IN.size and flags & InitFlag.INIT_EXT:
        flags |= _abi.FUSE_INIT_IN.unpack_from(a)[4] << 32
    return Init(*c, major=major, minor=minor, max_readahead=max_readahead, flags=flags)


def _d_lk(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, owner, start, end, typ, pid, lk_flags, _ = _abi.FUSE_LK_IN.unpack_from(a)
    return Lk(
        *c, fh=fh, owner=owner, start=start, end=end, type=typ, lock_pid=pid,
        lk_flags=lk_flags,
    )  # fmt: skip


def _d_access(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    mask, _ = _abi.FUSE_ACCESS_IN.unpack_from(a)
    return Access(*c, mask=mask)


def _d_interrupt(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (target,) = _abi.FUSE_INTERRUPT_IN.unpack_from(a)
    return Interrupt(*c, target=target)


def _d_bmap(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    block, blocksize, _ = _abi.FUSE_BMAP_IN.unpack_from(a)
    return Bmap(*c, block=block, blocksize=blocksize)


def _d_ioctl(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, flags, cmd, arg, in_size, out_size = _abi.FUSE_IOCTL_IN.unpack_from(a)
    return Ioctl(
        *c, fh=fh, flags=flags, cmd=cmd, arg=arg, in_size=in_size,
        out_size=out_size, data=p[:in_size].tobytes(),
    )  # fmt: skip


def _d_poll(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, kh, flags, events = _abi.FUSE_POLL_IN.unpack_from(a)
    return Poll(*c, fh=fh, kh=kh, flags=flags, events=events)


def _d_notify_reply(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    _, offset, size, _, _, _ = _abi.FUSE_NOTIFY_RETRIEVE_IN.unpack_from(a)
    if size > len(p):
        raise ProtocolError(f"NOTIFY_REPLY of {size} bytes carries only {len(p)}")
    return NotifyReply(*c, offset=offset, data=p[:size].tobytes())


def _d_fallocate(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, length, mode, _ = _abi.FUSE_FALLOCATE_IN.unpack_from(a)
    return Fallocate(*c, fh=fh, offset=offset, length=length, mode=mode)


def _d_lseek(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh, offset, whence, _ = _abi.FUSE_LSEEK_IN.unpack_from(a)
    return Lseek(*c, fh=fh, offset=offset, whence=whence)


def _d_copy_file_range(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    fh_in, off_in, nodeid_out, fh_out, off_out, length, flags = (
        _abi.FUSE_COPY_FILE_RANGE_IN.unpack_from(a)
    )
    return CopyFileRange(
        *c, fh_in=fh_in, off_in=off_in, nodeid_out=nodeid_out, fh_out=fh_out,
        off_out=off_out, length=length, flags=flags, wide=c[0] == Opcode.COPY_FILE_RANGE_64,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpcodeInfo:
    """Everything the framework knows about one opcode; :data:`OPCODES` holds one each."""

    opcode: Opcode
    #: The :class:`Request` subclass it decodes to.
    request: type[Request]
    #: Bytes of its fixed argument struct after ``fuse_in_header`` (SETXATTR: the
    #: extended struct; :func:`_arg_size` gives the one the connection uses).
    arg_size: int
    decode: _Decoder
    #: False for the requests the kernel expects no reply to.
    replies: bool
    #: The :class:`Operations` method that answers it; None where the framework does
    #: (INIT, INTERRUPT, NOTIFY_REPLY) or nothing does (ENOSYS).
    handler: str | None
    #: The dispatcher's adapter for it (its method ``_<dispatch>``); None: ENOSYS there
    #: (INIT is answered by the session before any dispatching).
    dispatch: str | None


def _table(
    *rows: tuple[Opcode, type[Request], int, _Decoder, str | None, str | None, bool],
) -> dict[int, OpcodeInfo]:
    return {
        row[0]: OpcodeInfo(row[0], row[1], row[2], row[3], row[6], row[4], row[5]) for row in rows
    }


_R, _NO_REPLY = True, False

# The one table of opcodes (as go-fuse's opcode.go): decoding, splitting, dispatch, error
# messages and the INIT flags read it; nothing else lists opcodes.
# fmt: off
OPCODES: Mapping[int, OpcodeInfo] = _table(
    # opcode                    request        fixed struct size                      decoder             handler            dispatch           replies
    (Opcode.LOOKUP,             Lookup,        0,                                     _d_name,            "lookup",          "lookup",          _R),
    (Opcode.FORGET,             Forget,        _abi.FUSE_FORGET_IN.size,              _d_forget,          "forget",          "forget",          _NO_REPLY),
    (Opcode.GETATTR,            Getattr,       _abi.FUSE_GETATTR_IN.size,             _d_getattr,         "getattr",         "getattr",         _R),
    (Opcode.SETATTR,            Setattr,       _abi.FUSE_SETATTR_IN.size,             _d_setattr,         "setattr",         "setattr",         _R),
    (Opcode.READLINK,           Readlink,      0,                                     _d_noarg,           "readlink",        "readlink",        _R),
    (Opcode.SYMLINK,            Symlink,       0,                                     _d_symlink,         "symlink",         "symlink",         _R),
    (Opcode.MKNOD,              Mknod,         _abi.FUSE_MKNOD_IN.size,               _d_mknod,           "mknod",           "mknod",           _R),
    (Opcode.MKDIR,              Mkdir,         _abi.FUSE_MKDIR_IN.size,               _d_mkdir,           "mkdir",           "mkdir",           _R),
    (Opcode.UNLINK,             Unlink,        0,                                     _d_name,            "unlink",          "unlink",          _R),
    (Opcode.RMDIR,              Rmdir,         0,                                     _d_name,            "rmdir",           "rmdir",           _R),
    (Opcode.RENAME,             Rename,        _abi.FUSE_RENAME_IN.size,              _d_rename,          "rename",          "rename",          _R),
    (Opcode.LINK,               Link,          _abi.FUSE_LINK_IN.size,                _d_link,            "link",            "link",            _R),
    (Opcode.OPEN,               Open,          _abi.FUSE_OPEN_IN.size,                _d_open,            "open",            "open",            _R),
    (Opcode.READ,               Read,          _abi.FUSE_READ_IN.size,                _d_read,            "read",            "read",            _R),
    (Opcode.WRITE,              Write,         _abi.FUSE_WRITE_IN.size,               _d_write,           "write",           "write",           _R),
    (Opcode.STATFS,             Statfs,        0,                                     _d_noarg,           "statfs",          "statfs",          _R),
    (Opcode.RELEASE,            Release,       _abi.FUSE_RELEASE_IN.size,             _d_release,         "release",         "release",         _R),
    (Opcode.FSYNC,              Fsync,         _abi.FUSE_FSYNC_IN.size,               _d_fsync,           "fsync",           "fsync",           _R),
    (Opcode.SETXATTR,           Setxattr,      _abi.FUSE_SETXATTR_IN.size,            _d_setxattr,        "setxattr",        "setxattr",        _R),
    (Opcode.GETXATTR,           Getxattr,      _abi.FUSE_GETXATTR_IN.size,            _d_getxattr,        "getxattr",        "getxattr",        _R),
    (Opcode.LISTXATTR,          Listxattr,     _abi.FUSE_GETXATTR_IN.size,            _d_getxattr,        "listxattr",       "listxattr",       _R),
    (Opcode.REMOVEXATTR,        Removexattr,   0,                                     _d_name,            "removexattr",     "removexattr",     _R),
    (Opcode.FLUSH,              Flush,         _abi.FUSE_FLUSH_IN.size,               _d_flush,           "flush",           "flush",           _R),
    (Opcode.INIT,               Init,          _abi.FUSE_INIT_IN.size,                _d_init,            None,              None,              _R),
    (Opcode.OPENDIR,            Open,          _abi.FUSE_OPEN_IN.size,                _d_open,            "opendir",         "opendir",         _R),
    (Opcode.READDIR,            Read,          _abi.FUSE_READ_IN.size,                _d_read,            "readdir",         "readdir",         _R),
    (Opcode.RELEASEDIR,         Release,       _abi.FUSE_RELEASE_IN.size,             _d_release,         "releasedir",      "releasedir",      _R),
    (Opcode.FSYNCDIR,           Fsync,         _abi.FUSE_FSYNC_IN.size,               _d_fsync,           "fsyncdir",        "fsyncdir",        _R),
    (Opcode.GETLK,              Lk,            _abi.FUSE_LK_IN.size,                  _d_lk,              "getlk",           "getlk",           _R),
    (Opcode.SETLK,              Lk,            _abi.FUSE_LK_IN.size,                  _d_lk,              "setlk",           "setlk",           _R),
    (Opcode.SETLKW,             Lk,            _abi.FUSE_LK_IN.size,                  _d_lk,              "setlk",           "setlk",           _R),
    (Opcode.ACCESS,             Access,        _abi.FUSE_ACCESS_IN.size,              _d_access,          "access",          "access",          _R),
    (Opcode.CREATE,             Create,        _abi.FUSE_CREATE_IN.size,              _d_create,          "create",          "create",          _R),
    (Opcode.INTERRUPT,          Interrupt,     _abi.FUSE_INTERRUPT_IN.size,           _d_interrupt,       None,              "interrupt",       _NO_REPLY),
    (Opcode.BMAP,               Bmap,          _abi.FUSE_BMAP_IN.size,                _d_bmap,            "bmap",            "bmap",            _R),
    (Opcode.DESTROY,            Destroy,       0,                                     _d_noarg,           "destroy",         "destroy",         _R),
    (Opcode.IOCTL,              Ioctl,         _abi.FUSE_IOCTL_IN.size,               _d_ioctl,           "ioctl",           "ioctl",           _R),
    (Opcode.POLL,               Poll,          _abi.FUSE_POLL_IN.size,                _d_poll,            "poll",            "poll",            _R),
    (Opcode.NOTIFY_REPLY,       NotifyReply,   _abi.FUSE_NOTIFY_RETRIEVE_IN.size,     _d_notify_reply,    None,              "notify_reply",    _NO_REPLY),
    (Opcode.BATCH_FORGET,       BatchForget,   _abi.FUSE_BATCH_FORGET_IN.size,        _d_batch_forget,    "forget",          "forget",          _NO_REPLY),
    (Opcode.FALLOCATE,          Fallocate,     _abi.FUSE_FALLOCATE_IN.size,           _d_fallocate,       "fallocate",       "fallocate",       _R),
    (Opcode.READDIRPLUS,        Read,          _abi.FUSE_READ_IN.size,                _d_read,            "readdir",         "readdir",         _R),
    (Opcode.RENAME2,            Rename,        _abi.FUSE_RENAME2_IN.size,             _d_rename,          "rename",          "rename",          _R),
    (Opcode.LSEEK,              Lseek,         _abi.FUSE_LSEEK_IN.size,               _d_lseek,           "lseek",           "lseek",           _R),
    (Opcode.COPY_FILE_RANGE,    CopyFileRange, _abi.FUSE_COPY_FILE_RANGE_IN.size,     _d_copy_file_range, "copy_file_range", "copy_file_range", _R),
    (Opcode.SETUPMAPPING,       Unsupported,   0,                                     _d_noarg,           None,              None,              _R),
    (Opcode.REMOVEMAPPING,      Unsupported,   0,                                     _d_noarg,           None,              None,              _R),
    (Opcode.SYNCFS,             Syncfs,        _abi.FUSE_SYNCFS_IN.size,              _d_noarg,           "syncfs",          "syncfs",          _R),
    (Opcode.TMPFILE,            Create,        _abi.FUSE_CREATE_IN.size,              _d_create,          "tmpfile",         "create",          _R),
    (Opcode.STATX,              Statx,         _abi.FUSE_STATX_IN.size,               _d_statx,           "getattr",         "statx",           _R),
    (Opcode.COPY_FILE_RANGE_64, CopyFileRange, _abi.FUSE_COPY_FILE_RANGE_IN.size,     _d_copy_file_range, "copy_file_range", "copy_file_range", _R),
)
# fmt: on
_ARG_SIZES = {op: info.arg_size for op, info in OPCODES.items()}


__all__ = [
    "OPCODES",
    "Negotiated",
    "OpcodeInfo",
    "decode_devfuse",
    "decode_request",
    "decode_ring",
    "split_devfuse",
]
