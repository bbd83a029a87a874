"""Typed FUSE requests: one small dataclass per kind of request (sans-I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from .._abi import Opcode


class ProtocolError(Exception):
    """Bytes from the kernel (or a peer pretending to be it) violate the FUSE protocol."""


# ----------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------


@dataclass(slots=True)
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
class Statx(Request):
    """STATX: GETATTR that may ask for more (the creation time) in ``sx_mask``."""

    fh: int | None
    sx_flags: int
    sx_mask: int


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


@dataclass(slots=True)  # positional: built on the hot path
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
    """An opcode we decode only far enough to answer ENOSYS (DAX mappings, ...)."""


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


def _opname(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode}"


__all__ = [
    "Access",
    "BatchForget",
    "Bmap",
    "CopyFileRange",
    "Create",
    "Destroy",
    "Fallocate",
    "Flush",
    "Forget",
    "Fsync",
    "Getattr",
    "Getxattr",
    "Init",
    "Interrupt",
    "Ioctl",
    "Link",
    "Listxattr",
    "Lk",
    "Lookup",
    "Lseek",
    "Mkdir",
    "Mknod",
    "NotifyReply",
    "Open",
    "Poll",
    "ProtocolError",
    "Read",
    "Readlink",
    "Release",
    "Removexattr",
    "Rename",
    "Request",
    "Rmdir",
    "Setattr",
    "Setxattr",
    "Statfs",
    "Statx",
    "Symlink",
    "Syncfs",
    "Unlink",
    "Unsupported",
    "Write",
    "describe",
]
