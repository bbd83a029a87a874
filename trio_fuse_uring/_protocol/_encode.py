"""Encoding: replies, directory listings and notifications as bytes (sans-I/O)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .. import _abi
from .._abi import InitFlag
from .._types import EntryAttributes, StatvfsData
from ._decode import Negotiated
from ._requests import Init, ProtocolError

# ----------------------------------------------------------------------------------------
# Encoding replies
# ----------------------------------------------------------------------------------------


def out_header(length: int, error: int, unique: int) -> bytes:
    """``fuse_out_header``; ``error`` is 0 or a negative errno, ``length`` includes it."""
    return _OUT.pack(length, error, unique)


_OUT = _abi.FUSE_OUT_HEADER


def reply_header(unique: int, error: int, body_size: int = 0) -> bytes:
    """The ``fuse_out_header`` in front of a ``body_size``-byte reply to request ``unique``
    (``error``: 0 or a negative errno; a notification's code, with ``unique`` 0)."""
    return _OUT.pack(_OUT.size + body_size, error, unique)


_U64 = (1 << 64) - 1


def _split_timeout(t: float) -> tuple[int, int]:
    """Seconds and nanoseconds for the kernel; huge values (and inf) mean "forever"."""
    if not t > 0:  # also NaN
        return 0, 0
    if t >= _U64:
        return _U64, 0
    sec = int(t)
    return sec, min(int((t - sec) * 1e9), 999_999_999)


def _s64(seconds: int) -> int:
    # The kernel reads the seconds as signed 64-bit: pre-1970 times are two's complement.
    if not -(1 << 63) <= seconds < 1 << 63:
        raise struct.error(f"timestamp of {seconds} s is outside the kernel's 64-bit range")
    return seconds & _U64


def _attr_tuple(a: EntryAttributes) -> tuple[int, ...]:
    atime, atimens = divmod(a.st_atime_ns, 1_000_000_000)
    mtime, mtimens = divmod(a.st_mtime_ns, 1_000_000_000)
    ctime, ctimens = divmod(a.st_ctime_ns, 1_000_000_000)
    return (
        a.st_ino, a.st_size, a.st_blocks, _s64(atime), _s64(mtime), _s64(ctime), atimens,
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
    return _abi.FUSE_ENTRY_OUT.pack(
        a.nodeid or a.st_ino, a.generation, ev, av, evn, avn, *_attr_tuple(a)
    )


def encode_negative_entry(timeout: float) -> bytes:
    """A LOOKUP reply with nodeid 0: "no such name", cached for ``timeout`` seconds."""
    ev, evn = _split_timeout(timeout)
    return _abi.FUSE_ENTRY_OUT.pack(0, 0, ev, 0, evn, 0, *([0] * 16))


def encode_attr(a: EntryAttributes, attr_timeout: float = 1.0) -> bytes:
    """``fuse_attr_out`` for GETATTR/SETATTR; ``attr_timeout`` applies if ``a``'s is None."""
    av, avn = _split_timeout(attr_timeout if a.attr_timeout is None else a.attr_timeout)
    return _abi.FUSE_ATTR_OUT.pack(av, avn, 0, *_attr_tuple(a))


def encode_statx(a: EntryAttributes, attr_timeout: float = 1.0) -> bytes:
    """``fuse_statx_out`` for STATX: the attributes, and the creation time if known."""
    av, avn = _split_timeout(attr_timeout if a.attr_timeout is None else a.attr_timeout)
    mask = _abi.STATX_BASIC_STATS
    times: list[int] = []
    for ns in (a.st_atime_ns, a.st_birthtime_ns, a.st_ctime_ns, a.st_mtime_ns):
        sec, nsec = divmod(ns or 0, 1_000_000_000)
        times += [sec, nsec, 0]  # signed seconds: pre-1970 times are negative
    if a.st_birthtime_ns is not None:
        mask |= _abi.STATX_BTIME
    dev = a.st_rdev  # as os.makedev() encodes it
    major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & 0xFFFFF000)
    minor = (dev & 0xFF) | ((dev >> 12) & 0xFFFFFF00)
    return _abi.FUSE_STATX_OUT.pack(
        av, avn, 0, 0, 0,
        mask, a.st_blksize, 0, a.st_nlink, a.st_uid, a.st_gid, a.st_mode, 0, a.st_ino,
        a.st_size, a.st_blocks, 0, *times, major, minor, 0, 0,
    )  # fmt: skip


def encode_open(fh: int, open_flags: int, backing_id: int = 0) -> bytes:
    """``fuse_open_out`` for OPEN/OPENDIR (and CREATE's second half); ``backing_id``
    (with FOPEN_PASSTHROUGH) names a file registered with FUSE_DEV_IOC_BACKING_OPEN."""
    return _abi.FUSE_OPEN_OUT.pack(fh, open_flags, backing_id)


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
    #: Seconds within which the kernel must see every reply (0: none); sent only if
    #: ``want`` has REQUEST_TIMEOUT and the kernel offers it.
    request_timeout: int = 0
    #: With PASSTHROUGH: how deep the backing files' filesystems may be stacked.
    max_stack_depth: int = 0


def negotiate_init(req: Init, cfg: InitConfig) -> Negotiated:
    """What the kernel's INIT and our configuration agree on (the intersection).

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
    return Negotiated(
        minor=min(req.minor, _abi.KERNEL_MINOR_VERSION),
        flags=req.flags & want,
        max_write=max(4096, cfg.max_write),
        max_pages=max(1, min(cfg.max_pages, cfg.max_pages_limit, 0xFFFF)),
        max_readahead=min(cfg.max_readahead, req.max_readahead),
    )


def encode_init(neg: Negotiated, cfg: InitConfig) -> bytes:
    """The INIT reply body (``fuse_init_out``) announcing ``neg``."""
    flags = neg.flags
    request_timeout = min(cfg.request_timeout, 0xFFFF) if flags & InitFlag.REQUEST_TIMEOUT else 0
    return _abi.FUSE_INIT_OUT.pack(
        _abi.KERNEL_VERSION, _abi.KERNEL_MINOR_VERSION, neg.max_readahead,
        flags & 0xFFFFFFFF, cfg.max_background, cfg.congestion_threshold, neg.max_write,
        cfg.time_gran, neg.max_pages, 0, flags >> 32,
        cfg.max_stack_depth if flags & InitFlag.PASSTHROUGH else 0, request_timeout,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------
# Directory listings
# ----------------------------------------------------------------------------------------


# Byte values, not one-byte strings: `b"/" in name` first tries the needle as an int,
# building and dropping a TypeError with a formatted message (10x the cost of the
# search; testing byte values made readdir 15 % faster).
_SLASH = ord("/")
_NUL = 0
_DIRENT = _abi.FUSE_DIRENT
_ENTRY_OUT = _abi.FUSE_ENTRY_OUT


def dirent_size(namelen: int, plus: bool) -> int:
    """Bytes one entry with a ``namelen``-byte name takes in a READDIR(PLUS) reply."""
    return (_ENTRY_OUT.size if plus else 0) + ((_DIRENT.size + namelen + 7) & ~7)


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
        return self.add_raw(name, attr.st_ino, attr.st_mode, offset, attr)

    def add_raw(
        self, name: bytes, ino: int, mode: int, offset: int, attr: EntryAttributes | None
    ) -> bool:
        """Like :meth:`add`; in a readdirplus reply, ``attr`` None sends the entry without
        attributes (the kernel then takes no lookup reference, as for ``.`` and ``..``)."""
        if not name or _SLASH in name or _NUL in name or len(name) > 1024:
            raise ValueError(f"invalid directory entry name {name!r}")
        namelen = len(name)
        reclen = _DIRENT.size + namelen
        padded = (reclen + _abi.DIRENT_ALIGN - 1) & ~(_abi.DIRENT_ALIGN - 1)
        head = _ENTRY_OUT.size if self._plus else 0
        pos = self._pos
        end = pos + head + padded
        if end > len(self._buf):
            return False
        buf = self._buf
        if head:
            if attr is None or name == b"." or name == b"..":
                # No lookup reference for these: the kernel ignores a zero entry part.
                buf[pos : pos + head] = bytes(head)
            else:
                buf[pos : pos + head] = encode_entry(attr, self._entry_timeout, self._attr_timeout)
            pos += head
        _DIRENT.pack_into(buf, pos, ino, offset, namelen, (mode & 0o170000) >> 12)
        pos += _DIRENT.size
        buf[pos : pos + namelen] = name
        # Padding bytes are already zero (fresh bytearray).
        self._pos = end
        self.count += 1
        return True

    def fits(self, namelen: int) -> bool:
        """Would an entry with a name of ``namelen`` bytes fit?"""
        head = _ENTRY_OUT.size if self._plus else 0
        return self._pos + head + ((_DIRENT.size + namelen + 7) & ~7) <= len(self._buf)

    def getvalue(self) -> memoryview:
        return memoryview(self._buf)[: self._pos]


# ----------------------------------------------------------------------------------------
# Notifications (server -> kernel, unique == 0)
# ----------------------------------------------------------------------------------------


def _notify(code: int, body: bytes) -> bytes:
    return reply_header(0, code, len(body)) + body


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


def notify_inc_epoch() -> bytes:
    """Start a new epoch: every cached lookup from an earlier one must be asked again."""
    return _notify(_abi.NotifyCode.INC_EPOCH, b"")


def notify_prune(inodes: Sequence[int]) -> bytes:
    """Drop the kernel's unused cached names (dentries) of ``inodes``, all their aliases."""
    ids = list(inodes)
    body = _abi.FUSE_NOTIFY_PRUNE_OUT.pack(len(ids), 0, 0) + struct.pack(f"<{len(ids)}Q", *ids)
    return _notify(_abi.NotifyCode.PRUNE, body)


__all__ = [
    "DirentBuffer",
    "InitConfig",
    "dirent_size",
    "encode_attr",
    "encode_entry",
    "encode_init",
    "encode_ioctl",
    "encode_lock",
    "encode_negative_entry",
    "encode_open",
    "encode_poll",
    "encode_statfs",
    "encode_statx",
    "encode_u64",
    "encode_write",
    "encode_xattr_size",
    "negotiate_init",
    "notify_delete",
    "notify_inc_epoch",
    "notify_inval_entry",
    "notify_inval_inode",
    "notify_poll_wakeup",
    "notify_prune",
    "notify_retrieve",
    "notify_store",
    "out_header",
    "reply_header",
]
