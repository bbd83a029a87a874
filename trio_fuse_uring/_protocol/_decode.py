"""Decoding: the pieces of a request, as the kernel lays them out, into typed requests."""

from __future__ import annotations

import struct
from collections.abc import Callable
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
    entry = _TABLE.get(opcode)
    if entry is None:
        raise ProtocolError(f"unknown opcode {opcode}")
    argsz, decoder = entry
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


def _d_lookup(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    name, _ = _cstr(p.tobytes())
    op = c[0]
    if op == Opcode.UNLINK:
        return Unlink(*c, name=name)
    if op == Opcode.RMDIR:
        return Rmdir(*c, name=name)
    if op == Opcode.REMOVEXATTR:
        return Removexattr(*c, name=name)
    return Lookup(*c, name=name)


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


def _d_setattr(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    (valid, _, fh, size, lock_owner, atime, mtime, ctime, atimensec, mtimensec, ctimensec,
     mode, _u4, uid, gid, _u5) = _abi.FUSE_SETATTR_IN.unpack_from(a)  # fmt: skip
    return Setattr(
        *c, valid=valid, fh=fh if valid & _abi.SetattrValid.FH else None, size=size,
        lock_owner=lock_owner, atime=atime, mtime=mtime, ctime=ctime, atimensec=atimensec,
        mtimensec=mtimensec, ctimensec=ctimensec, mode=mode, setattr_uid=uid, setattr_gid=gid,
    )  # fmt: skip


def _d_noarg(c: _Common, a: memoryview, p: memoryview, n: Negotiated) -> Request:
    cls = _NOARG_CLASSES[c[0]]
    return cls(*c)


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
# splitting and debugging read; dispatch has its own table of handlers (_dispatch.py).
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


__all__ = [
    "NO_REPLY",
    "Negotiated",
    "decode_devfuse",
    "decode_request",
    "decode_ring",
    "split_devfuse",
]
