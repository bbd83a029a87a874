"""The sans-I/O protocol layer, byte by byte, without a kernel.

Requests are built here the way the kernel lays them out on ``/dev/fuse`` (header, op
struct, names/data, extensions), with formats and opcode numbers written out from
``include/uapi/linux/fuse.h`` (7.45) rather than taken from ``_abi``: a wrong struct or
constant in the package then fails here instead of agreeing with itself. Replies are
checked at explicit byte offsets for the same reason.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

import pytest

from trio_fuse_uring import _abi
from trio_fuse_uring import _protocol as P
from trio_fuse_uring.ops import EntryAttributes, StatvfsData

# --- the kernel's numbers, copied from fuse.h (not from _abi) -----------------------------

LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE = 8, 9, 10, 11, 12, 13, 14, 15, 16
STATFS, RELEASE, FSYNC, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR = 17, 18, 20, 21, 22, 23, 24
FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 25, 26, 27, 28, 29, 30
GETLK, SETLK, SETLKW, ACCESS, CREATE, INTERRUPT, BMAP, DESTROY = 31, 32, 33, 34, 35, 36, 37, 38
IOCTL, POLL, NOTIFY_REPLY, BATCH_FORGET, FALLOCATE, READDIRPLUS = 39, 40, 41, 42, 43, 44
RENAME2, LSEEK, COPY_FILE_RANGE, SETUPMAPPING, REMOVEMAPPING = 45, 46, 47, 48, 49
SYNCFS, TMPFILE, STATX, COPY_FILE_RANGE_64 = 50, 51, 52, 53

FUSE_INIT_EXT = 1 << 30
FUSE_SETXATTR_EXT = 1 << 29
FUSE_MAX_PAGES = 1 << 22
FUSE_ASYNC_READ = 1 << 0
FUSE_OVER_IO_URING = 1 << 41
FUSE_SECURITY_CTX = 1 << 32

# struct fuse_in_header: len opcode unique nodeid uid gid pid total_extlen padding
IN_HEADER = "<IIQQIIIHH"
IN_HEADER_SIZE = 40

UID, GID, PID = 1000, 100, 4242


def raw(
    opcode: int,
    arg: bytes = b"",
    payload: bytes = b"",
    *,
    unique: int = 7,
    nodeid: int = 1,
    ext: bytes = b"",
) -> bytes:
    """One request as read from /dev/fuse."""
    assert len(ext) % 8 == 0
    body = arg + payload + ext
    header = struct.pack(
        IN_HEADER, IN_HEADER_SIZE + len(body), opcode, unique, nodeid, UID, GID, PID,
        len(ext) // 8, 0,
    )  # fmt: skip
    return header + body


def decode(buf: bytes, neg: P.Negotiated | None = None) -> P.Request:
    return P.decode_devfuse(memoryview(buf), neg or P.Negotiated())


def common_ok(req: P.Request, opcode: int, unique: int = 7, nodeid: int = 1) -> None:
    assert (req.opcode, req.unique, req.nodeid) == (opcode, unique, nodeid)
    assert (req.uid, req.gid, req.pid) == (UID, GID, PID)


# --- ABI sanity ----------------------------------------------------------------------------

# Sizes from fuse.h (sizeof on x86-64, every struct naturally packed).
KERNEL_SIZES = {
    "FUSE_IN_HEADER": 40, "FUSE_OUT_HEADER": 16, "FUSE_ATTR": 88, "FUSE_ENTRY_OUT": 128,
    "FUSE_ATTR_OUT": 104, "FUSE_FORGET_IN": 8, "FUSE_FORGET_ONE": 16,
    "FUSE_BATCH_FORGET_IN": 8, "FUSE_GETATTR_IN": 16, "FUSE_SETATTR_IN": 88,
    "FUSE_MKNOD_IN": 16, "FUSE_MKDIR_IN": 8, "FUSE_RENAME_IN": 8, "FUSE_RENAME2_IN": 16,
    "FUSE_LINK_IN": 8, "FUSE_OPEN_IN": 8, "FUSE_CREATE_IN": 16, "FUSE_OPEN_OUT": 16,
    "FUSE_RELEASE_IN": 24, "FUSE_FLUSH_IN": 24, "FUSE_READ_IN": 40, "FUSE_WRITE_IN": 40,
    "FUSE_WRITE_OUT": 8, "FUSE_STATFS_OUT": 80, "FUSE_FSYNC_IN": 16, "FUSE_SETXATTR_IN": 16,
    "FUSE_GETXATTR_IN": 8, "FUSE_GETXATTR_OUT": 8, "FUSE_FILE_LOCK": 24, "FUSE_LK_IN": 48,
    "FUSE_ACCESS_IN": 8, "FUSE_INIT_IN": 64, "FUSE_INIT_OUT": 64, "FUSE_INTERRUPT_IN": 8,
    "FUSE_BMAP_IN": 16, "FUSE_BMAP_OUT": 8, "FUSE_IOCTL_IN": 32, "FUSE_IOCTL_OUT": 16,
    "FUSE_POLL_IN": 24, "FUSE_POLL_OUT": 8, "FUSE_NOTIFY_POLL_WAKEUP_OUT": 8,
    "FUSE_FALLOCATE_IN": 32, "FUSE_LSEEK_IN": 24, "FUSE_LSEEK_OUT": 8,
    "FUSE_COPY_FILE_RANGE_IN": 56, "FUSE_SYNCFS_IN": 8, "FUSE_STATX_IN": 24,
    "FUSE_DIRENT": 24, "FUSE_NOTIFY_INVAL_INODE_OUT": 24, "FUSE_NOTIFY_INVAL_ENTRY_OUT": 16,
    "FUSE_NOTIFY_DELETE_OUT": 24, "FUSE_NOTIFY_STORE_OUT": 24,
    "FUSE_NOTIFY_RETRIEVE_OUT": 32, "FUSE_NOTIFY_RETRIEVE_IN": 40, "FUSE_EXT_HEADER": 8,
    "FUSE_URING_ENT_IN_OUT": 32, "FUSE_STATX_OUT": 288,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(KERNEL_SIZES))
def test_struct_sizes_match_kernel(name: str) -> None:
    assert getattr(_abi, name).size == KERNEL_SIZES[name]


def test_opcode_and_flag_values() -> None:
    assert _abi.Opcode.LOOKUP == LOOKUP
    assert _abi.Opcode.BATCH_FORGET == BATCH_FORGET
    assert _abi.Opcode.COPY_FILE_RANGE_64 == COPY_FILE_RANGE_64
    assert _abi.Opcode.TMPFILE == TMPFILE
    assert _abi.InitFlag.INIT_EXT == FUSE_INIT_EXT
    assert _abi.InitFlag.OVER_IO_URING == FUSE_OVER_IO_URING
    assert _abi.InitFlag.REQUEST_TIMEOUT == 1 << 42
    assert _abi.SetattrValid.KILL_SUIDGID == 1 << 11
    assert _abi.OpenFlag.PASSTHROUGH == 1 << 7
    assert _abi.NotifyCode.PRUNE == 9
    assert _abi.FUSE_URING_REQ_HEADER_SZ == 128 + 128 + 32
    assert (_abi.URING_OP_IN_OFFSET, _abi.URING_ENT_IN_OUT_OFFSET) == (128, 256)
    assert _abi.COMPAT_SETXATTR_IN_SIZE == 8
    assert _abi.FUSE_EXT_GROUPS == 32


# --- decoding, opcode by opcode -------------------------------------------------------------


def test_lookup_name_nul_terminated() -> None:
    req = decode(raw(LOOKUP, payload=b"hello\0", nodeid=5))
    assert isinstance(req, P.Lookup)
    common_ok(req, LOOKUP, nodeid=5)
    assert req.name == b"hello"


def test_name_stops_at_first_nul() -> None:
    req = decode(raw(LOOKUP, payload=b"a\0junk\0"))
    assert isinstance(req, P.Lookup) and req.name == b"a"


def test_empty_name() -> None:
    req = decode(raw(UNLINK, payload=b"\0"))
    assert isinstance(req, P.Unlink) and req.name == b""


@pytest.mark.parametrize("opcode", [LOOKUP, UNLINK, RMDIR, REMOVEXATTR, MKDIR, SYMLINK])
def test_name_without_nul_is_a_protocol_error(opcode: int) -> None:
    arg = struct.pack("<II", 0o755, 0o22) if opcode == MKDIR else b""
    with pytest.raises(P.ProtocolError):
        decode(raw(opcode, arg, b"noterminator"))


@pytest.mark.parametrize(
    ("opcode", "cls"), [(UNLINK, P.Unlink), (RMDIR, P.Rmdir), (REMOVEXATTR, P.Removexattr)]
)
def test_single_name_ops(opcode: int, cls: type) -> None:
    req = decode(raw(opcode, payload=b"x.y\0", nodeid=9))
    assert type(req) is cls
    common_ok(req, opcode, nodeid=9)
    assert req.name == b"x.y"  # type: ignore[attr-defined]


def test_forget() -> None:
    req = decode(raw(FORGET, struct.pack("<Q", 2**40 + 3), nodeid=77))
    assert isinstance(req, P.Forget)
    common_ok(req, FORGET, nodeid=77)
    assert req.nlookup == 2**40 + 3


def test_batch_forget() -> None:
    pairs = [(10, 1), (11, 2**63), (2**64 - 1, 5)]
    arg = struct.pack("<II", len(pairs), 0)
    payload = b"".join(struct.pack("<QQ", n, c) for n, c in pairs)
    req = decode(raw(BATCH_FORGET, arg, payload, nodeid=0))
    assert isinstance(req, P.BatchForget)
    assert [tuple(p) for p in req.forgets] == pairs


def test_batch_forget_count_too_large() -> None:
    arg = struct.pack("<II", 3, 0)
    with pytest.raises(P.ProtocolError):
        decode(raw(BATCH_FORGET, arg, struct.pack("<QQ", 1, 1)))


@pytest.mark.parametrize(("flags", "fh"), [(0, None), (1, 0xDEADBEEF)])
def test_getattr(flags: int, fh: int | None) -> None:
    req = decode(raw(GETATTR, struct.pack("<IIQ", flags, 0, 0xDEADBEEF), nodeid=3))
    assert isinstance(req, P.Getattr)
    common_ok(req, GETATTR, nodeid=3)
    assert req.fh == fh


def test_setattr_all_fields() -> None:
    # valid padding fh size lock_owner atime mtime ctime atimensec mtimensec ctimensec
    # mode unused4 uid gid unused5
    valid = 0xFFF
    arg = struct.pack(
        "<IIQQQQQQIIIIIIII", valid, 0, 42, 4096, 99, 1000, 2000, 3000, 1, 2, 3,
        stat.S_IFREG | 0o600, 0xAAAA, 501, 20, 0xBBBB,
    )  # fmt: skip
    assert len(arg) == 88
    req = decode(raw(SETATTR, arg, nodeid=4))
    assert isinstance(req, P.Setattr)
    common_ok(req, SETATTR, nodeid=4)
    assert (req.valid, req.fh, req.size, req.lock_owner) == (valid, 42, 4096, 99)
    assert (req.atime, req.mtime, req.ctime) == (1000, 2000, 3000)
    assert (req.atimensec, req.mtimensec, req.ctimensec) == (1, 2, 3)
    assert req.mode == stat.S_IFREG | 0o600
    assert (req.setattr_uid, req.setattr_gid) == (501, 20)


def test_setattr_fh_only_when_valid() -> None:
    arg = struct.pack("<IIQQQQQQIIIIIIII", 1 << 3, 0, 42, *([0] * 13))
    req = decode(raw(SETATTR, arg))
    assert isinstance(req, P.Setattr) and req.fh is None and req.valid == 1 << 3


@pytest.mark.parametrize(
    ("opcode", "cls"),
    [(READLINK, P.Readlink), (STATFS, P.Statfs), (DESTROY, P.Destroy)],
)
def test_no_argument_ops(opcode: int, cls: type) -> None:
    req = decode(raw(opcode, nodeid=12))
    assert type(req) is cls
    common_ok(req, opcode, nodeid=12)


def test_syncfs_has_a_padding_struct() -> None:
    req = decode(raw(SYNCFS, struct.pack("<Q", 0)))
    assert isinstance(req, P.Syncfs)
    with pytest.raises(P.ProtocolError):
        decode(raw(SYNCFS, b"\0" * 4))


@pytest.mark.parametrize("opcode", [SETUPMAPPING, REMOVEMAPPING])
def test_unsupported_ops_decode_far_enough_for_enosys(opcode: int) -> None:
    req = decode(raw(opcode, b"\0" * 40, unique=99))
    assert isinstance(req, P.Unsupported) and req.unique == 99 and req.opcode == opcode


def test_statx() -> None:
    req = decode(raw(STATX, struct.pack("<IIQII", 1, 0, 42, 0, 0xFFF), unique=99))
    assert isinstance(req, P.Statx)
    assert (req.fh, req.sx_flags, req.sx_mask) == (42, 0, 0xFFF)
    req = decode(raw(STATX, struct.pack("<IIQII", 0, 0, 42, 0, 0x7FF)))
    assert isinstance(req, P.Statx) and req.fh is None


def test_symlink_two_names() -> None:
    req = decode(raw(SYMLINK, payload=b"link\0/some/target\0", nodeid=2))
    assert isinstance(req, P.Symlink)
    common_ok(req, SYMLINK, nodeid=2)
    assert (req.name, req.target) == (b"link", b"/some/target")


def test_symlink_target_missing_nul() -> None:
    with pytest.raises(P.ProtocolError):
        decode(raw(SYMLINK, payload=b"link\0target"))


def test_mknod() -> None:
    arg = struct.pack("<IIII", stat.S_IFIFO | 0o644, 0x0801, 0o022, 0)
    req = decode(raw(MKNOD, arg, b"fifo\0"))
    assert isinstance(req, P.Mknod)
    assert (req.name, req.mode, req.rdev, req.umask) == (
        b"fifo",
        stat.S_IFIFO | 0o644,
        0x0801,
        0o22,
    )


def test_mkdir() -> None:
    req = decode(raw(MKDIR, struct.pack("<II", 0o40755, 0o027), b"dir\0", nodeid=6))
    assert isinstance(req, P.Mkdir)
    common_ok(req, MKDIR, nodeid=6)
    assert (req.name, req.mode, req.umask) == (b"dir", 0o40755, 0o027)


def test_rename_two_names() -> None:
    req = decode(raw(RENAME, struct.pack("<Q", 88), b"old\0new\0", nodeid=3))
    assert isinstance(req, P.Rename)
    common_ok(req, RENAME, nodeid=3)
    assert (req.name, req.newdir, req.newname, req.flags) == (b"old", 88, b"new", 0)


def test_rename2_flags() -> None:
    req = decode(raw(RENAME2, struct.pack("<QII", 89, 2, 0), b"a\0b\0"))
    assert isinstance(req, P.Rename) and req.opcode == RENAME2
    assert (req.name, req.newdir, req.newname, req.flags) == (b"a", 89, b"b", 2)


def test_rename_second_name_missing() -> None:
    with pytest.raises(P.ProtocolError):
        decode(raw(RENAME, struct.pack("<Q", 1), b"old\0new"))


def test_link() -> None:
    req = decode(raw(LINK, struct.pack("<Q", 1234), b"hard\0", nodeid=8))
    assert isinstance(req, P.Link)
    assert (req.nodeid, req.oldnodeid, req.newname) == (8, 1234, b"hard")


@pytest.mark.parametrize("opcode", [OPEN, OPENDIR])
def test_open(opcode: int) -> None:
    req = decode(raw(opcode, struct.pack("<II", 0o100002, 1)))
    assert isinstance(req, P.Open) and req.opcode == opcode
    assert (req.flags, req.open_flags) == (0o100002, 1)


def test_create() -> None:
    arg = struct.pack("<IIII", 0o100101, stat.S_IFREG | 0o640, 0o022, 1)
    req = decode(raw(CREATE, arg, b"new.txt\0", nodeid=2))
    assert isinstance(req, P.Create)
    assert (req.name, req.flags, req.mode, req.umask, req.open_flags) == (
        b"new.txt", 0o100101, stat.S_IFREG | 0o640, 0o022, 1,
    )  # fmt: skip


def test_tmpfile_has_no_name() -> None:
    arg = struct.pack("<IIII", 0o20200002, stat.S_IFREG | 0o600, 0o077, 0)
    req = decode(raw(TMPFILE, arg, nodeid=2))
    assert isinstance(req, P.Create) and req.opcode == TMPFILE and req.name == b""
    assert req.umask == 0o077


@pytest.mark.parametrize("opcode", [READ, READDIR, READDIRPLUS])
def test_read(opcode: int) -> None:
    # fh offset size read_flags lock_owner flags padding
    arg = struct.pack("<QQIIQII", 5, 2**40, 65536, 2, 0xABCDEF, 0o100000, 0)
    req = decode(raw(opcode, arg))
    assert isinstance(req, P.Read) and req.opcode == opcode
    assert (req.fh, req.offset, req.size, req.read_flags, req.lock_owner, req.flags) == (
        5, 2**40, 65536, 2, 0xABCDEF, 0o100000,
    )  # fmt: skip


def test_write_data_is_a_view_of_the_buffer() -> None:
    data = bytes(range(256)) * 4
    arg = struct.pack("<QQIIQII", 9, 4096, len(data), 1, 77, 0o2, 0)
    buf = bytearray(raw(WRITE, arg, data, nodeid=10))
    req = P.decode_devfuse(memoryview(buf), P.Negotiated())
    assert isinstance(req, P.Write)
    common_ok(req, WRITE, nodeid=10)
    assert (req.fh, req.offset, req.size, req.write_flags, req.lock_owner, req.flags) == (
        9, 4096, len(data), 1, 77, 0o2,
    )  # fmt: skip
    assert isinstance(req.data, memoryview)
    assert bytes(req.data) == data
    # A view, not a copy: the buffer shows through.
    buf[IN_HEADER_SIZE + 40] ^= 0xFF
    assert req.data[0] == data[0] ^ 0xFF


def test_write_shorter_than_size() -> None:
    arg = struct.pack("<QQIIQII", 1, 0, 100, 0, 0, 0, 0)
    with pytest.raises(P.ProtocolError):
        decode(raw(WRITE, arg, b"x" * 99))


@pytest.mark.parametrize("opcode", [RELEASE, RELEASEDIR])
def test_release(opcode: int) -> None:
    req = decode(raw(opcode, struct.pack("<QIIQ", 3, 0o2, 3, 0x55)))
    assert isinstance(req, P.Release) and req.opcode == opcode
    assert (req.fh, req.flags, req.release_flags, req.lock_owner) == (3, 0o2, 3, 0x55)


def test_flush() -> None:
    req = decode(raw(FLUSH, struct.pack("<QIIQ", 3, 0, 0, 0x1234)))
    assert isinstance(req, P.Flush) and (req.fh, req.lock_owner) == (3, 0x1234)


@pytest.mark.parametrize(("opcode", "flags", "datasync"), [(FSYNC, 0, False), (FSYNCDIR, 1, True)])
def test_fsync(opcode: int, flags: int, datasync: bool) -> None:
    req = decode(raw(opcode, struct.pack("<QII", 4, flags, 0)))
    assert isinstance(req, P.Fsync) and (req.fh, req.datasync) == (4, datasync)


def test_setxattr_without_ext() -> None:
    # Before SETXATTR_EXT the struct is 8 bytes (size, flags): the name follows it.
    req = decode(raw(SETXATTR, struct.pack("<II", 5, 1), b"user.k\0value"))
    assert isinstance(req, P.Setxattr)
    assert (req.name, req.value, req.flags, req.setxattr_flags) == (b"user.k", b"value", 1, 0)


def test_setxattr_with_ext() -> None:
    neg = P.Negotiated(flags=FUSE_SETXATTR_EXT)
    arg = struct.pack("<IIII", 3, 2, 1, 0)
    req = decode(raw(SETXATTR, arg, b"user.k\0abc"), neg)
    assert isinstance(req, P.Setxattr)
    assert (req.name, req.value, req.flags, req.setxattr_flags) == (b"user.k", b"abc", 2, 1)


def test_setxattr_value_may_contain_nul() -> None:
    req = decode(raw(SETXATTR, struct.pack("<II", 3, 0), b"n\0\0\x01\0"))
    assert isinstance(req, P.Setxattr) and req.value == b"\0\x01\0"


def test_setxattr_value_too_short() -> None:
    with pytest.raises(P.ProtocolError):
        decode(raw(SETXATTR, struct.pack("<II", 10, 0), b"n\0abc"))


def test_getxattr_and_listxattr() -> None:
    req = decode(raw(GETXATTR, struct.pack("<II", 0, 0), b"user.x\0"))
    assert isinstance(req, P.Getxattr) and (req.name, req.size) == (b"user.x", 0)
    req = decode(raw(LISTXATTR, struct.pack("<II", 4096, 0)))
    assert isinstance(req, P.Listxattr) and req.size == 4096


@pytest.mark.parametrize("opcode", [GETLK, SETLK, SETLKW])
def test_lk(opcode: int) -> None:
    # fh owner lk.start lk.end lk.type lk.pid lk_flags padding
    arg = struct.pack("<QQQQIIII", 6, 0xFEED, 10, 2**64 - 1, 1, 321, 1, 0)
    req = decode(raw(opcode, arg))
    assert isinstance(req, P.Lk) and req.opcode == opcode
    assert (req.fh, req.owner, req.start, req.end, req.type, req.lock_pid, req.lk_flags) == (
        6, 0xFEED, 10, 2**64 - 1, 1, 321, 1,
    )  # fmt: skip


def test_access() -> None:
    req = decode(raw(ACCESS, struct.pack("<II", 4, 0)))
    assert isinstance(req, P.Access) and req.mask == 4


def test_interrupt() -> None:
    req = decode(raw(INTERRUPT, struct.pack("<Q", 1000), unique=1001))
    assert isinstance(req, P.Interrupt) and req.target == 1000 and req.unique == 1001


def test_bmap() -> None:
    req = decode(raw(BMAP, struct.pack("<QII", 77, 512, 0)))
    assert isinstance(req, P.Bmap) and (req.block, req.blocksize) == (77, 512)


def test_ioctl() -> None:
    # fh flags cmd arg in_size out_size
    arg = struct.pack("<QIIQII", 2, 16, 0x80045401, 0x7FFF0000, 3, 64)
    req = decode(raw(IOCTL, arg, b"abcdef"))
    assert isinstance(req, P.Ioctl)
    assert (req.fh, req.flags, req.cmd, req.arg, req.in_size, req.out_size) == (
        2, 16, 0x80045401, 0x7FFF0000, 3, 64,
    )  # fmt: skip
    assert req.data == b"abc"


def test_poll() -> None:
    req = decode(raw(POLL, struct.pack("<QQII", 1, 2, 1, 0x5)))
    assert isinstance(req, P.Poll) and (req.fh, req.kh, req.flags, req.events) == (1, 2, 1, 5)


def test_notify_reply() -> None:
    # dummy1 offset size dummy2 dummy3 dummy4
    arg = struct.pack("<QQIIQQ", 0, 8192, 4, 0, 0, 0)
    req = decode(raw(NOTIFY_REPLY, arg, b"DATAmore", unique=55, nodeid=3))
    assert isinstance(req, P.NotifyReply)
    assert (req.unique, req.nodeid, req.offset, req.data) == (55, 3, 8192, b"DATA")
    with pytest.raises(P.ProtocolError):
        decode(raw(NOTIFY_REPLY, struct.pack("<QQIIQQ", 0, 0, 9, 0, 0, 0), b"short"))


def test_fallocate() -> None:
    req = decode(raw(FALLOCATE, struct.pack("<QQQII", 1, 4096, 8192, 3, 0)))
    assert isinstance(req, P.Fallocate)
    assert (req.fh, req.offset, req.length, req.mode) == (1, 4096, 8192, 3)


def test_lseek() -> None:
    req = decode(raw(LSEEK, struct.pack("<QQII", 1, 100, 3, 0)))
    assert isinstance(req, P.Lseek) and (req.fh, req.offset, req.whence) == (1, 100, 3)


@pytest.mark.parametrize(("opcode", "wide"), [(COPY_FILE_RANGE, False), (COPY_FILE_RANGE_64, True)])
def test_copy_file_range(opcode: int, wide: bool) -> None:
    arg = struct.pack("<QQQQQQQ", 1, 2, 3, 4, 5, 6, 7)
    req = decode(raw(opcode, arg))
    assert isinstance(req, P.CopyFileRange)
    assert (req.fh_in, req.off_in, req.nodeid_out, req.fh_out, req.off_out, req.length) == (
        1, 2, 3, 4, 5, 6,
    )  # fmt: skip
    assert (req.flags, req.wide) == (7, wide)


# --- framing errors -------------------------------------------------------------------------


def test_shorter_than_header() -> None:
    with pytest.raises(P.ProtocolError):
        decode(b"\0" * 39)


def test_length_mismatch() -> None:
    buf = raw(LOOKUP, payload=b"x\0")
    with pytest.raises(P.ProtocolError):
        decode(buf + b"\0")
    with pytest.raises(P.ProtocolError):
        decode(buf[:-1])


def test_struct_truncated() -> None:
    with pytest.raises(P.ProtocolError):
        decode(raw(READ, b"\0" * 39))


def test_unknown_opcode() -> None:
    with pytest.raises(P.ProtocolError, match="unknown opcode"):
        decode(raw(7))
    with pytest.raises(P.ProtocolError):
        decode(raw(4096))  # CUSE_INIT


def test_split_devfuse_pieces() -> None:
    buf = memoryview(raw(MKDIR, struct.pack("<II", 0o755, 0), b"d\0"))
    header, arg, rest = P.split_devfuse(buf, P.Negotiated())
    assert (len(header), len(arg), bytes(rest)) == (40, 8, b"d\0")


# --- request extensions ---------------------------------------------------------------------


def supp_groups_ext(*groups: int) -> bytes:
    """A FUSE_EXT_GROUPS extension (fuse_ext_header + fuse_supp_groups), padded to 8."""
    body = struct.pack("<I", len(groups)) + b"".join(struct.pack("<I", g) for g in groups)
    size = (8 + len(body) + 7) & ~7
    return (struct.pack("<II", size, 32) + body).ljust(size, b"\0")


def test_extensions_are_stripped_from_names() -> None:
    ext = supp_groups_ext(10, 20, 30)
    req = decode(raw(MKDIR, struct.pack("<II", 0o755, 0o22), b"dir\0", ext=ext))
    assert isinstance(req, P.Mkdir) and req.name == b"dir"


def test_extensions_are_not_part_of_the_name() -> None:
    # Without its NUL the name is malformed, even though the extension holds zero bytes.
    with pytest.raises(P.ProtocolError):
        decode(raw(LOOKUP, payload=b"abc", ext=supp_groups_ext(0)))


def test_extensions_are_not_write_data() -> None:
    arg = struct.pack("<QQIIQII", 1, 0, 12, 0, 0, 0, 0)
    with pytest.raises(P.ProtocolError):
        decode(raw(WRITE, arg, b"x" * 4, ext=b"\0" * 8))
    req = decode(raw(WRITE, arg, b"x" * 12, ext=supp_groups_ext(1)))
    assert isinstance(req, P.Write) and bytes(req.data) == b"x" * 12


def test_extensions_longer_than_payload() -> None:
    buf = bytearray(raw(LOOKUP, payload=b"a\0"))
    struct.pack_into("<H", buf, 36, 4)  # total_extlen 4 => 32 bytes, only 2 present
    with pytest.raises(P.ProtocolError):
        decode(bytes(buf))


def test_setxattr_value_excludes_extensions() -> None:
    with pytest.raises(P.ProtocolError):
        decode(raw(SETXATTR, struct.pack("<II", 8, 0), b"n\0", ext=b"E" * 8))


# --- ring-style decoding ----------------------------------------------------------------------


def ring_pieces(buf: bytes, argsz: int) -> tuple[memoryview, memoryview, memoryview]:
    """Lay a /dev/fuse request out like fuse_uring_req_header: 128-byte in_out and
    128-byte op_in with stale bytes past the real structs, payload separate."""
    header = buf[:IN_HEADER_SIZE].ljust(128, b"\xa5")
    arg = buf[IN_HEADER_SIZE : IN_HEADER_SIZE + argsz].ljust(128, b"\x5a")
    payload = buf[IN_HEADER_SIZE + argsz :]
    return memoryview(header), memoryview(arg), memoryview(payload)


def test_ring_read_with_stale_op_in() -> None:
    arg = struct.pack("<QQIIQII", 5, 6, 7, 0, 0, 0, 0)
    pieces = ring_pieces(raw(READ, arg), 40)
    req = P.decode_request(*pieces, P.Negotiated())
    assert isinstance(req, P.Read) and (req.fh, req.offset, req.size) == (5, 6, 7)


def test_ring_setxattr_compat_with_stale_op_in() -> None:
    # Without SETXATTR_EXT only 8 bytes of op_in are the struct: garbage must not
    # become setxattr_flags.
    pieces = ring_pieces(raw(SETXATTR, struct.pack("<II", 1, 0), b"k\0v"), 8)
    req = P.decode_request(*pieces, P.Negotiated())
    assert isinstance(req, P.Setxattr) and (req.value, req.setxattr_flags) == (b"v", 0)


def test_ring_getattr_fh_flag_ignores_garbage() -> None:
    pieces = ring_pieces(raw(GETATTR, struct.pack("<IIQ", 0, 0, 9)), 16)
    req = P.decode_request(*pieces, P.Negotiated())
    assert isinstance(req, P.Getattr) and req.fh is None


def test_ring_lookup_and_write() -> None:
    pieces = ring_pieces(raw(LOOKUP, payload=b"name\0"), 0)
    req = P.decode_request(*pieces, P.Negotiated())
    assert isinstance(req, P.Lookup) and req.name == b"name"
    arg = struct.pack("<QQIIQII", 1, 0, 3, 0, 0, 0, 0)
    pieces = ring_pieces(raw(WRITE, arg, b"abc", ext=supp_groups_ext(4)), 40)
    req = P.decode_request(*pieces, P.Negotiated())
    assert isinstance(req, P.Write) and bytes(req.data) == b"abc"


def test_ring_truncated_header() -> None:
    with pytest.raises(P.ProtocolError):
        P.decode_request(memoryview(b"\0" * 39), memoryview(b""), memoryview(b""), P.Negotiated())


def test_ring_op_in_too_short() -> None:
    buf = raw(READ, b"\0" * 40)
    with pytest.raises(P.ProtocolError):
        P.decode_request(
            memoryview(buf[:40]), memoryview(buf[40:60]), memoryview(b""), P.Negotiated()
        )


# --- INIT -----------------------------------------------------------------------------------


def init_in(major: int = 7, minor: int = 45, readahead: int = 1 << 20, flags: int = 0) -> bytes:
    # major minor max_readahead flags flags2 unused[11]
    return struct.pack("<IIIII44x", major, minor, readahead, flags & 0xFFFFFFFF, flags >> 32)


def unpack_init_out(body: bytes) -> dict[str, int]:
    assert len(body) == 64
    u32 = lambda off: struct.unpack_from("<I", body, off)[0]  # noqa: E731
    u16 = lambda off: struct.unpack_from("<H", body, off)[0]  # noqa: E731
    assert body[42:] == bytes(22)  # unused[11]
    return {
        "major": u32(0), "minor": u32(4), "max_readahead": u32(8), "flags": u32(12),
        "max_background": u16(16), "congestion_threshold": u16(18), "max_write": u32(20),
        "time_gran": u32(24), "max_pages": u16(28), "map_alignment": u16(30),
        "flags2": u32(32), "max_stack_depth": u32(36), "request_timeout": u16(40),
    }  # fmt: skip


def test_init_decode_with_flags2() -> None:
    flags = FUSE_INIT_EXT | FUSE_ASYNC_READ | FUSE_OVER_IO_URING
    req = decode(raw(INIT, init_in(flags=flags), nodeid=0))
    assert isinstance(req, P.Init)
    assert (req.major, req.minor, req.max_readahead, req.flags) == (7, 45, 1 << 20, flags)


def test_init_flags2_ignored_without_init_ext() -> None:
    arg = struct.pack("<IIIII44x", 7, 45, 4096, FUSE_ASYNC_READ, 0xFFFF)
    req = decode(raw(INIT, arg))
    assert isinstance(req, P.Init) and req.flags == FUSE_ASYNC_READ


def test_init_from_old_kernel_short_struct() -> None:
    # Before 7.36 fuse_init_in is 16 bytes.
    req = decode(raw(INIT, struct.pack("<IIII", 7, 31, 4096, FUSE_ASYNC_READ | FUSE_INIT_EXT)))
    assert isinstance(req, P.Init) and (req.minor, req.flags) == (
        31,
        FUSE_ASYNC_READ | FUSE_INIT_EXT,
    )
    with pytest.raises(P.ProtocolError):
        decode(raw(INIT, struct.pack("<III", 7, 31, 4096)))


def test_negotiate_init_intersection_and_fields() -> None:
    kernel = (
        FUSE_INIT_EXT | FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_OVER_IO_URING | FUSE_SECURITY_CTX
    )
    req = decode(raw(INIT, init_in(readahead=65536, flags=kernel)))
    assert isinstance(req, P.Init)
    want = FUSE_ASYNC_READ | FUSE_OVER_IO_URING | FUSE_SETXATTR_EXT  # SETXATTR_EXT not offered
    cfg = P.InitConfig(
        want=want, max_write=1 << 20, max_pages=256, max_readahead=1 << 20,
        max_background=100, congestion_threshold=75, time_gran=1000,
    )  # fmt: skip
    neg = P.negotiate_init(req, cfg)
    body = P.encode_init(neg, cfg)
    out = unpack_init_out(body)
    agreed = FUSE_ASYNC_READ | FUSE_OVER_IO_URING | FUSE_INIT_EXT | FUSE_MAX_PAGES
    assert out == {
        "major": 7, "minor": 45, "max_readahead": 65536, "flags": agreed & 0xFFFFFFFF,
        "max_background": 100, "congestion_threshold": 75, "max_write": 1 << 20,
        "time_gran": 1000, "max_pages": 256, "map_alignment": 0, "flags2": agreed >> 32,
        "max_stack_depth": 0, "request_timeout": 0,
    }  # fmt: skip
    assert neg.flags == agreed
    assert not neg.setxattr_ext
    assert (neg.minor, neg.max_write, neg.max_pages, neg.max_readahead) == (45, 1 << 20, 256, 65536)
    assert neg.payload_size == 1 << 20


def test_negotiate_init_older_kernel_minor() -> None:
    req = decode(raw(INIT, init_in(minor=40, flags=FUSE_INIT_EXT | FUSE_SETXATTR_EXT)))
    assert isinstance(req, P.Init)
    neg = P.negotiate_init(req, P.InitConfig(want=FUSE_SETXATTR_EXT))
    assert neg.minor == 40 and neg.setxattr_ext


@pytest.mark.parametrize(
    ("given", "limit", "sent"), [(0, 256, 1), (1, 256, 1), (70000, 100000, 65535), (512, 256, 256)]
)
def test_negotiate_init_max_pages_clamped(given: int, limit: int, sent: int) -> None:
    # Clamped to the u16 field and to the kernel's fs.fuse.max_pages_limit, so ring
    # payload buffers are never larger than what the kernel can use.
    req = decode(raw(INIT, init_in(flags=FUSE_MAX_PAGES)))
    assert isinstance(req, P.Init)
    cfg = P.InitConfig(want=0, max_pages=given, max_pages_limit=limit)
    neg = P.negotiate_init(req, cfg)
    body = P.encode_init(neg, cfg)
    assert unpack_init_out(body)["max_pages"] == sent == neg.max_pages


@pytest.mark.parametrize(("major", "minor"), [(6, 45), (8, 0), (7, 30), (7, 0)])
def test_negotiate_init_rejects(major: int, minor: int) -> None:
    req = decode(raw(INIT, init_in(major=major, minor=minor)))
    assert isinstance(req, P.Init)
    with pytest.raises(P.ProtocolError):
        P.negotiate_init(req, P.InitConfig(want=0))


def test_negotiate_init_accepts_oldest_supported() -> None:
    req = decode(raw(INIT, struct.pack("<IIII", 7, 31, 4096, FUSE_ASYNC_READ)))
    assert isinstance(req, P.Init)
    cfg = P.InitConfig(want=FUSE_ASYNC_READ)
    neg = P.negotiate_init(req, cfg)
    body = P.encode_init(neg, cfg)
    assert neg.minor == 31 and unpack_init_out(body)["flags"] == FUSE_ASYNC_READ


# --- encoders ---------------------------------------------------------------------------------

ATTR = EntryAttributes(
    st_ino=0x1122334455667788, generation=9, st_mode=stat.S_IFREG | 0o644, st_nlink=2,
    st_uid=1000, st_gid=100, st_rdev=0x0801, st_size=12345, st_blksize=4096, st_blocks=24,
    st_atime_ns=1_700_000_000_123_456_789, st_mtime_ns=1_600_000_000_000_000_001,
    st_ctime_ns=5,
)  # fmt: skip


def check_fuse_attr(buf: bytes, off: int, a: EntryAttributes) -> None:
    """struct fuse_attr at ``off`` (88 bytes), field by field."""
    u64 = [struct.unpack_from("<Q", buf, off + 8 * i)[0] for i in range(6)]
    u32 = [struct.unpack_from("<I", buf, off + 48 + 4 * i)[0] for i in range(10)]
    assert u64 == [
        a.st_ino, a.st_size, a.st_blocks, a.st_atime_ns // 10**9, a.st_mtime_ns // 10**9,
        a.st_ctime_ns // 10**9,
    ]  # fmt: skip
    assert u32 == [
        a.st_atime_ns % 10**9, a.st_mtime_ns % 10**9, a.st_ctime_ns % 10**9, a.st_mode,
        a.st_nlink, a.st_uid, a.st_gid, a.st_rdev, a.st_blksize, 0,
    ]  # fmt: skip


def test_encode_entry() -> None:
    out = P.encode_entry(ATTR, entry_timeout=1.5, attr_timeout=2.25)
    assert len(out) == 128
    nodeid, gen, ev, av, evn, avn = struct.unpack_from("<QQQQII", out)
    assert (nodeid, gen, ev, av, evn, avn) == (ATTR.st_ino, 9, 1, 2, 500_000_000, 250_000_000)
    check_fuse_attr(out, 40, ATTR)


def test_encode_entry_own_timeouts_win() -> None:
    a = EntryAttributes(st_ino=2, entry_timeout=0, attr_timeout=10.0)
    out = P.encode_entry(a, entry_timeout=5.0, attr_timeout=5.0)
    assert struct.unpack_from("<QQII", out, 16) == (0, 10, 0, 0)


def test_encode_negative_entry() -> None:
    out = P.encode_negative_entry(3.75)
    assert len(out) == 128
    assert struct.unpack_from("<QQQQII", out) == (0, 0, 3, 0, 750_000_000, 0)
    assert out[40:] == bytes(88)


def test_encode_attr() -> None:
    out = P.encode_attr(ATTR, attr_timeout=0.5)
    assert len(out) == 104
    assert struct.unpack_from("<QII", out) == (0, 500_000_000, 0)
    check_fuse_attr(out, 16, ATTR)


def test_encode_statx() -> None:
    """fuse_statx_out: basic stats always, the creation time when known; signed times;
    rdev split into major and minor as the kernel rebuilds it (MKDEV)."""
    a = EntryAttributes(
        st_ino=9, st_mode=0o20644, st_nlink=2, st_uid=3, st_gid=4, st_size=5, st_blocks=8,
        st_blksize=4096, st_rdev=os.makedev(259, 70000), st_atime_ns=-1, st_mtime_ns=2 * 10**9,
        st_ctime_ns=3, st_birthtime_ns=-(10**18) - 7,
    )  # fmt: skip
    out = P.encode_statx(a, attr_timeout=1.5)
    fields = _abi.FUSE_STATX_OUT.unpack(out)
    assert fields[:2] == (1, 500_000_000)
    mask, blksize, _, nlink, uid, gid, mode, _, ino, size, blocks, _ = fields[5:17]
    assert mask == 0xFFF and (blksize, nlink, uid, gid, mode) == (4096, 2, 3, 4, 0o20644)
    assert (ino, size, blocks) == (9, 5, 8)
    atime, btime, ctime, mtime = (fields[17 + 3 * i : 19 + 3 * i] for i in range(4))
    assert atime == (-1, 999_999_999) and btime == (-(10**9) - 1, 999_999_993)
    assert (ctime, mtime) == ((0, 3), (2, 0))
    assert fields[29:31] == (259, 70000)
    unknown = P.encode_statx(EntryAttributes(st_ino=1))
    assert _abi.FUSE_STATX_OUT.unpack(unknown)[5] == 0x7FF  # no STATX_BTIME


@pytest.mark.parametrize(
    ("t", "sec", "nsec"),
    [(0, 0, 0), (-1.0, 0, 0), (1, 1, 0), (0.25, 0, 250_000_000), (86400.5, 86400, 500_000_000),
     (1e-9, 0, 1), (2.999_999_999_9, 2, 999_999_999)],
)  # fmt: skip
def test_timeouts_split(t: float, sec: int, nsec: int) -> None:
    out = P.encode_attr(EntryAttributes(st_ino=1), attr_timeout=t)
    got_sec, got_nsec = struct.unpack_from("<QI", out)
    assert got_sec == sec
    assert abs(got_nsec - nsec) <= 1  # float rounding
    assert got_nsec < 1_000_000_000


def test_infinite_timeout_means_cache_forever() -> None:
    out = P.encode_entry(EntryAttributes(st_ino=1, entry_timeout=float("inf")))
    assert struct.unpack_from("<Q", out, 16)[0] == 2**64 - 1


def test_pre_epoch_timestamps() -> None:
    a = EntryAttributes(st_ino=1, st_mtime_ns=-1_500_000_000)  # 1969-12-31T23:59:58.5
    out = P.encode_attr(a)
    mtime, mtimensec = (
        struct.unpack_from("<q", out, 16 + 32)[0],
        struct.unpack_from("<I", out, 16 + 52)[0],
    )
    assert (mtime, mtimensec) == (-2, 500_000_000)


def test_encode_open_write_and_small_replies() -> None:
    assert P.encode_open(0x0102030405060708, 0b101) == struct.pack("<QIi", 0x0102030405060708, 5, 0)
    assert P.encode_write(4096) == b"\x00\x10\x00\x00" + bytes(4)
    assert P.encode_u64(2**63) == struct.pack("<Q", 2**63)
    assert P.encode_xattr_size(300) == struct.pack("<II", 300, 0)
    assert P.encode_lock(1, 2**64 - 1, 2, 77) == struct.pack("<QQII", 1, 2**64 - 1, 2, 77)
    assert P.encode_poll(0x19) == struct.pack("<II", 0x19, 0)
    assert P.encode_ioctl(-1, b"xy") == struct.pack("<iIII", -1, 0, 0, 0) + b"xy"
    assert P.out_header(16, -errno.ENOENT, 99) == struct.pack("<IiQ", 16, -2, 99)


def test_encode_statfs() -> None:
    s = StatvfsData(
        f_bsize=4096, f_frsize=1024, f_blocks=1000, f_bfree=500, f_bavail=400, f_files=300,
        f_ffree=200, f_favail=100, f_namemax=255,
    )  # fmt: skip
    out = P.encode_statfs(s)
    assert len(out) == 80
    # blocks bfree bavail files ffree (u64), bsize namelen frsize padding (u32), spare[6]
    assert struct.unpack_from("<5Q4I", out) == (1000, 500, 400, 300, 200, 4096, 255, 1024, 0)
    assert out[56:] == bytes(24)


@pytest.mark.parametrize(
    "call",
    [
        lambda: P.encode_open(-1, 0),
        lambda: P.encode_open(2**64, 0),
        lambda: P.encode_write(2**32),
        lambda: P.encode_u64(-1),
        lambda: P.encode_entry(EntryAttributes(st_ino=2**64)),
        lambda: P.encode_attr(EntryAttributes(st_size=-1)),
        lambda: P.encode_attr(EntryAttributes(st_uid=2**32)),
        lambda: P.encode_statfs(StatvfsData(f_blocks=-5)),
        lambda: P.encode_lock(0, 0, 0, 2**32),
    ],
)
def test_encoders_reject_out_of_range(call: object) -> None:
    with pytest.raises(struct.error):
        call()  # type: ignore[operator]


# --- directory listings -------------------------------------------------------------------------


def parse_dirents(buf: bytes, plus: bool) -> list[tuple[bytes, bytes, int, int, int]]:
    """(entry_out, name, ino, off, type) per record, checking 8-byte alignment."""
    out = []
    pos = 0
    while pos < len(buf):
        assert pos % 8 == 0
        entry = b""
        if plus:
            entry = buf[pos : pos + 128]
            pos += 128
        ino, off, namelen, typ = struct.unpack_from("<QQII", buf, pos)
        name = buf[pos + 24 : pos + 24 + namelen]
        end = pos + ((24 + namelen + 7) & ~7)
        assert buf[pos + 24 + namelen : end] == bytes(end - pos - 24 - namelen)  # zero padding
        out.append((entry, name, ino, off, typ))
        pos = end
    assert pos == len(buf)
    return out


def test_dirent_sizes_and_alignment() -> None:
    buf = P.DirentBuffer(4096, plus=False)
    reg = EntryAttributes(st_ino=5)
    d = EntryAttributes(st_ino=6, st_mode=stat.S_IFDIR | 0o755)
    lnk = EntryAttributes(st_ino=7, st_mode=stat.S_IFLNK | 0o777)
    assert buf.add(b"a", reg, 1)  # 24 + 1 -> 32
    assert len(buf.getvalue()) == 32
    assert buf.add(b"12345678", d, 2)  # 24 + 8 -> 32
    assert len(buf.getvalue()) == 64
    assert buf.add(b"123456789", lnk, 3)  # 24 + 9 -> 40
    assert len(buf.getvalue()) == 104
    assert buf.count == 3
    recs = parse_dirents(bytes(buf.getvalue()), plus=False)
    assert [(n, i, o, t) for _, n, i, o, t in recs] == [
        (b"a", 5, 1, 8), (b"12345678", 6, 2, 4), (b"123456789", 7, 3, 10),
    ]  # fmt: skip


def test_direntplus_sizes_and_entries() -> None:
    buf = P.DirentBuffer(4096, plus=True, entry_timeout=2.0, attr_timeout=3.0)
    a = EntryAttributes(st_ino=42, st_size=7)
    assert buf.add(b".", EntryAttributes(st_ino=1, st_mode=stat.S_IFDIR), 1)
    assert buf.add(b"..", EntryAttributes(st_ino=1, st_mode=stat.S_IFDIR), 2)
    assert buf.add(b"file", a, 3)
    assert len(buf.getvalue()) == 3 * (128 + 32)
    recs = parse_dirents(bytes(buf.getvalue()), plus=True)
    assert recs[0][0] == bytes(128) and recs[1][0] == bytes(128)  # no lookup for . and ..
    assert [(n, i, o, t) for _, n, i, o, t in recs] == [
        (b".", 1, 1, 4), (b"..", 1, 2, 4), (b"file", 42, 3, 8),
    ]  # fmt: skip
    assert recs[2][0] == P.encode_entry(a, 2.0, 3.0)
    assert struct.unpack_from("<QQQQ", recs[2][0]) == (42, 0, 2, 3)


def test_dirent_stops_when_full() -> None:
    buf = P.DirentBuffer(70, plus=False)
    attr = EntryAttributes(st_ino=3)
    assert buf.add(b"one", attr, 1)
    assert buf.add(b"two", attr, 2)
    before = bytes(buf.getvalue())
    assert not buf.add(b"three", attr, 3)
    assert not buf.add(b"x", attr, 4)  # 64 + 32 > 70
    assert bytes(buf.getvalue()) == before and buf.count == 2


def test_direntplus_stops_when_full() -> None:
    buf = P.DirentBuffer(159, plus=True)
    assert not buf.add(b"a", EntryAttributes(st_ino=3), 1)  # needs 160
    assert buf.count == 0 and len(buf.getvalue()) == 0
    buf = P.DirentBuffer(160, plus=True)
    assert buf.add(b"a", EntryAttributes(st_ino=3), 1)


@pytest.mark.parametrize("name", [b"", b"a/b", b"/", b"nul\0", b"x" * 1025])
def test_dirent_rejects_bad_names(name: bytes) -> None:
    buf = P.DirentBuffer(8192, plus=False)
    with pytest.raises(ValueError):
        buf.add(name, EntryAttributes(st_ino=1), 1)
    assert buf.count == 0


# --- notifications -----------------------------------------------------------------------------


def notify_header(msg: bytes, code: int) -> bytes:
    length, error, unique = struct.unpack_from("<IiQ", msg)
    assert length == len(msg)
    assert unique == 0
    assert error == code
    return msg[16:]


def test_notify_inval_inode() -> None:
    body = notify_header(P.notify_inval_inode(7, -1, 0), 2)
    assert body == struct.pack("<Qqq", 7, -1, 0)


def test_notify_inval_entry() -> None:
    body = notify_header(P.notify_inval_entry(1, b"name"), 3)
    assert body == struct.pack("<QII", 1, 4, 0) + b"name\0"
    body = notify_header(P.notify_inval_entry(1, b"n", expire_only=True), 3)
    assert body == struct.pack("<QII", 1, 1, 1) + b"n\0"


def test_notify_delete() -> None:
    body = notify_header(P.notify_delete(2, 3, b"gone"), 6)
    assert body == struct.pack("<QQII", 2, 3, 4, 0) + b"gone\0"


def test_notify_store() -> None:
    body = notify_header(P.notify_store(9, 4096, b"data"), 4)
    assert body == struct.pack("<QQII", 9, 4096, 4, 0) + b"data"


def test_notify_retrieve() -> None:
    body = notify_header(P.notify_retrieve(77, 9, 0, 8192), 5)
    assert body == struct.pack("<QQQII", 77, 9, 0, 8192, 0)


def test_notify_poll_wakeup() -> None:
    assert notify_header(P.notify_poll_wakeup(0xABC), 1) == struct.pack("<Q", 0xABC)


# --- debug formatting ------------------------------------------------------------------------


def test_describe() -> None:
    assert P.describe(decode(raw(LOOKUP, payload=b"foo\0"))) == "LOOKUP n1 name=b'foo'"
    arg = struct.pack("<QQIIQII", 1, 0, 3, 0, 0, 0, 0)
    line = P.describe(decode(raw(WRITE, arg, b"abc", nodeid=4)))
    assert line.startswith("WRITE n4 fh=1 offset=0 size=3") and "data=<3 bytes>" in line
    long = P.describe(decode(raw(SYMLINK, payload=b"l\0" + b"t" * 100 + b"\0")))
    assert "b'" + "t" * 64 + "...'" in long
    assert P.describe(decode(raw(STATX, b"\0" * 24))) == "STATX n1 fh=None sx_flags=0 sx_mask=0"
