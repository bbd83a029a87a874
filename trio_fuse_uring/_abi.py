"""The kernel interface: every FUSE 7.45 constant and struct layout the project uses.

This is the single home of the ABI. Values mirror ``include/uapi/linux/fuse.h`` (protocol
7.45, Linux 6.18) and, for the io-uring extension, the same header's ``fuse_uring_*``
section. No other module may contain a literal opcode, flag bit or struct offset.

Struct layouts are precompiled little-endian ``struct.Struct`` objects named after the C
struct in upper case (``FUSE_IN_HEADER`` is ``struct fuse_in_header``).
"""

from __future__ import annotations

import enum
import struct

KERNEL_VERSION = 7
#: The minor version we implement. The kernel speaks min(ours, its own).
KERNEL_MINOR_VERSION = 45
#: Oldest kernel minor we accept (Linux 5.x era; older kernels lack fields we rely on).
MIN_KERNEL_MINOR_VERSION = 31

#: FUSE_ROOT_ID: the root directory's inode number is always 1.
ROOT_ID = 1
#: FUSE_MIN_READ_BUFFER: a /dev/fuse read buffer must be at least this large.
MIN_READ_BUFFER = 8192
PAGE_SIZE = 4096


class Opcode(enum.IntEnum):
    """``enum fuse_opcode``."""

    LOOKUP = 1
    FORGET = 2  # no reply
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42  # no reply
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    STATX = 52
    COPY_FILE_RANGE_64 = 53


class NotifyCode(enum.IntEnum):
    """``enum fuse_notify_code``: the ``error`` field of a server-initiated message."""

    POLL = 1
    INVAL_INODE = 2
    INVAL_ENTRY = 3
    STORE = 4
    RETRIEVE = 5
    DELETE = 6
    RESEND = 7
    INC_EPOCH = 8
    PRUNE = 9


class InitFlag(enum.IntFlag):
    """``FUSE_*`` INIT flags; bits 32..63 travel in ``flags2`` (needs INIT_EXT)."""

    ASYNC_READ = 1 << 0
    POSIX_LOCKS = 1 << 1
    FILE_OPS = 1 << 2
    ATOMIC_O_TRUNC = 1 << 3
    EXPORT_SUPPORT = 1 << 4
    BIG_WRITES = 1 << 5
    DONT_MASK = 1 << 6
    SPLICE_WRITE = 1 << 7
    SPLICE_MOVE = 1 << 8
    SPLICE_READ = 1 << 9
    FLOCK_LOCKS = 1 << 10
    HAS_IOCTL_DIR = 1 << 11
    AUTO_INVAL_DATA = 1 << 12
    DO_READDIRPLUS = 1 << 13
    READDIRPLUS_AUTO = 1 << 14
    ASYNC_DIO = 1 << 15
    WRITEBACK_CACHE = 1 << 16
    NO_OPEN_SUPPORT = 1 << 17
    PARALLEL_DIROPS = 1 << 18
    HANDLE_KILLPRIV = 1 << 19
    POSIX_ACL = 1 << 20
    ABORT_ERROR = 1 << 21
    MAX_PAGES = 1 << 22
    CACHE_SYMLINKS = 1 << 23
    NO_OPENDIR_SUPPORT = 1 << 24
    EXPLICIT_INVAL_DATA = 1 << 25
    MAP_ALIGNMENT = 1 << 26
    SUBMOUNTS = 1 << 27
    HANDLE_KILLPRIV_V2 = 1 << 28
    SETXATTR_EXT = 1 << 29
    INIT_EXT = 1 << 30
    INIT_RESERVED = 1 << 31
    SECURITY_CTX = 1 << 32
    HAS_INODE_DAX = 1 << 33
    CREATE_SUPP_GROUP = 1 << 34
    HAS_EXPIRE_ONLY = 1 << 35
    DIRECT_IO_ALLOW_MMAP = 1 << 36
    PASSTHROUGH = 1 << 37
    NO_EXPORT_SUPPORT = 1 << 38
    HAS_RESEND = 1 << 39
    ALLOW_IDMAP = 1 << 40
    OVER_IO_URING = 1 << 41
    REQUEST_TIMEOUT = 1 << 42


class SetattrValid(enum.IntFlag):
    """``FATTR_*``: which fields of ``fuse_setattr_in`` are meaningful."""

    MODE = 1 << 0
    UID = 1 << 1
    GID = 1 << 2
    SIZE = 1 << 3
    ATIME = 1 << 4
    MTIME = 1 << 5
    FH = 1 << 6
    ATIME_NOW = 1 << 7
    MTIME_NOW = 1 << 8
    LOCKOWNER = 1 << 9
    CTIME = 1 << 10
    KILL_SUIDGID = 1 << 11


class OpenFlag(enum.IntFlag):
    """``FOPEN_*``: flags a server returns in ``fuse_open_out.open_flags``."""

    DIRECT_IO = 1 << 0
    KEEP_CACHE = 1 << 1
    NONSEEKABLE = 1 << 2
    CACHE_DIR = 1 << 3
    STREAM = 1 << 4
    NOFLUSH = 1 << 5
    PARALLEL_DIRECT_WRITES = 1 << 6
    PASSTHROUGH = 1 << 7


# Small flag sets that appear in single request fields.
GETATTR_FH = 1 << 0  # fuse_getattr_in.getattr_flags
RELEASE_FLUSH = 1 << 0  # fuse_release_in.release_flags
RELEASE_FLOCK_UNLOCK = 1 << 1
WRITE_CACHE = 1 << 0  # fuse_write_in.write_flags
WRITE_LOCKOWNER = 1 << 1
WRITE_KILL_SUIDGID = 1 << 2
READ_LOCKOWNER = 1 << 1  # fuse_read_in.read_flags
LK_FLOCK = 1 << 0  # fuse_lk_in.lk_flags
FSYNC_FDATASYNC = 1 << 0  # fuse_fsync_in.fsync_flags
OPEN_KILL_SUIDGID = 1 << 0  # fuse_open_in.open_flags
SETXATTR_ACL_KILL_SGID = 1 << 0  # fuse_setxattr_in.setxattr_flags
EXPIRE_ONLY = 1 << 0  # fuse_notify_inval_entry_out.flags
POLL_SCHEDULE_NOTIFY = 1 << 0  # fuse_poll_in.flags
IOCTL_COMPAT = 1 << 0
IOCTL_UNRESTRICTED = 1 << 1
IOCTL_RETRY = 1 << 2
IOCTL_32BIT = 1 << 3
IOCTL_DIR = 1 << 4

# renameat2(2) flags (include/uapi/linux/fs.h), carried in fuse_rename2_in.flags.
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
RENAME_WHITEOUT = 1 << 2

#: Largest error a reply may carry (the kernel rejects errors <= -512).
MAX_ERRNO = 511

# Size of fuse_setxattr_in before SETXATTR_EXT (protocol < 7.33 or flag not negotiated).
COMPAT_SETXATTR_IN_SIZE = 8

# --- struct layouts (little-endian, no padding: every FUSE struct is naturally packed) ---

FUSE_IN_HEADER = struct.Struct(
    "<IIQQIIIHH"
)  # len opcode unique nodeid uid gid pid total_extlen padding
FUSE_OUT_HEADER = struct.Struct("<IiQ")  # len error unique
FUSE_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
# ino size blocks atime mtime ctime atimensec mtimensec ctimensec mode nlink uid gid rdev blksize flags
FUSE_ENTRY_OUT = struct.Struct("<QQQQII" + FUSE_ATTR.format[1:])
# nodeid generation entry_valid attr_valid entry_valid_nsec attr_valid_nsec attr...
FUSE_ATTR_OUT = struct.Struct(
    "<QII" + FUSE_ATTR.format[1:]
)  # attr_valid attr_valid_nsec dummy attr...
FUSE_FORGET_IN = struct.Struct("<Q")
FUSE_FORGET_ONE = struct.Struct("<QQ")
FUSE_BATCH_FORGET_IN = struct.Struct("<II")
FUSE_GETATTR_IN = struct.Struct("<IIQ")
FUSE_SETATTR_IN = struct.Struct("<IIQQQqqqIIIIIIII")
# valid padding fh size lock_owner atime mtime ctime atimensec mtimensec ctimensec mode unused4 uid gid unused5
# (the kernel's seconds are time64_t in u64 fields: signed, so pre-1970 times are negative)
FUSE_MKNOD_IN = struct.Struct("<IIII")  # mode rdev umask padding
FUSE_MKDIR_IN = struct.Struct("<II")  # mode umask
FUSE_RENAME_IN = struct.Struct("<Q")  # newdir
FUSE_RENAME2_IN = struct.Struct("<QII")  # newdir flags padding
FUSE_LINK_IN = struct.Struct("<Q")  # oldnodeid
FUSE_OPEN_IN = struct.Struct("<II")  # flags open_flags
FUSE_CREATE_IN = struct.Struct("<IIII")  # flags mode umask open_flags
FUSE_OPEN_OUT = struct.Struct("<QIi")  # fh open_flags backing_id
FUSE_RELEASE_IN = struct.Struct("<QIIQ")  # fh flags release_flags lock_owner
FUSE_FLUSH_IN = struct.Struct("<QIIQ")  # fh unused padding lock_owner
FUSE_READ_IN = struct.Struct("<QQIIQII")  # fh offset size read_flags lock_owner flags padding
FUSE_WRITE_IN = struct.Struct("<QQIIQII")  # fh offset size write_flags lock_owner flags padding
FUSE_WRITE_OUT = struct.Struct("<II")  # size padding
FUSE_STATFS_OUT = struct.Struct(
    "<QQQQQIIII24x"
)  # blocks bfree bavail files ffree bsize namelen frsize padding spare[6]
FUSE_FSYNC_IN = struct.Struct("<QII")  # fh fsync_flags padding
FUSE_SETXATTR_IN = struct.Struct("<IIII")  # size flags setxattr_flags padding
FUSE_SETXATTR_IN_COMPAT = struct.Struct("<II")  # size flags
FUSE_GETXATTR_IN = struct.Struct("<II")  # size padding
FUSE_GETXATTR_OUT = struct.Struct("<II")  # size padding
FUSE_FILE_LOCK = struct.Struct("<QQII")  # start end type pid
FUSE_LK_IN = struct.Struct("<QQQQIIII")  # fh owner lk.start lk.end lk.type lk.pid lk_flags padding
FUSE_LK_OUT = FUSE_FILE_LOCK
FUSE_ACCESS_IN = struct.Struct("<II")  # mask padding
FUSE_INIT_IN = struct.Struct("<IIIII44x")  # major minor max_readahead flags flags2 unused[11]
FUSE_INIT_IN_COMPAT = struct.Struct("<IIII")  # before 7.36: no flags2
FUSE_INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")
# major minor max_readahead flags max_background congestion_threshold max_write time_gran
# max_pages map_alignment flags2 max_stack_depth request_timeout unused[11]
FUSE_INTERRUPT_IN = struct.Struct("<Q")
FUSE_BMAP_IN = struct.Struct("<QII")  # block blocksize padding
FUSE_BMAP_OUT = struct.Struct("<Q")
FUSE_IOCTL_IN = struct.Struct("<QIIQII")  # fh flags cmd arg in_size out_size
FUSE_IOCTL_OUT = struct.Struct("<iIII")  # result flags in_iovs out_iovs
FUSE_POLL_IN = struct.Struct("<QQII")  # fh kh flags events
FUSE_POLL_OUT = struct.Struct("<II")  # revents padding
FUSE_NOTIFY_POLL_WAKEUP_OUT = struct.Struct("<Q")  # kh
FUSE_FALLOCATE_IN = struct.Struct("<QQQII")  # fh offset length mode padding
FUSE_LSEEK_IN = struct.Struct("<QQII")  # fh offset whence padding
FUSE_LSEEK_OUT = struct.Struct("<Q")
FUSE_COPY_FILE_RANGE_IN = struct.Struct(
    "<QQQQQQQ"
)  # fh_in off_in nodeid_out fh_out off_out len flags
FUSE_COPY_FILE_RANGE_OUT = struct.Struct("<Q")  # bytes_copied (COPY_FILE_RANGE_64)
FUSE_SYNCFS_IN = struct.Struct("<Q")
FUSE_STATX_IN = struct.Struct("<IIQII")  # getattr_flags reserved fh sx_flags sx_mask
FUSE_STATX_OUT = struct.Struct("<QIIQQ" + "IIQIIIHHQQQQ" + "qIi" * 4 + "IIII112x")
# attr_valid attr_valid_nsec flags spare[2], then fuse_statx: mask blksize attributes
# nlink uid gid mode spare0 ino size blocks attributes_mask, atime btime ctime mtime as
# (sec nsec reserved), rdev_major rdev_minor dev_major dev_minor, spare2[14]
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
FUSE_DIRENT = struct.Struct("<QQII")  # ino off namelen type, then name, padded to 8
FUSE_NOTIFY_INVAL_INODE_OUT = struct.Struct("<Qqq")  # ino off len
FUSE_NOTIFY_INVAL_ENTRY_OUT = struct.Struct("<QII")  # parent namelen flags, then name\0
FUSE_NOTIFY_DELETE_OUT = struct.Struct("<QQII")  # parent child namelen padding, then name\0
FUSE_NOTIFY_STORE_OUT = struct.Struct("<QQII")  # nodeid offset size padding, then data
FUSE_NOTIFY_RETRIEVE_OUT = struct.Struct("<QQQII")  # notify_unique nodeid offset size padding
FUSE_NOTIFY_RETRIEVE_IN = struct.Struct("<QQIIQQ")  # dummy1 offset size dummy2 dummy3 dummy4
FUSE_NOTIFY_PRUNE_OUT = struct.Struct("<IIQ")  # count padding spare, then u64 nodeids[count]
FUSE_EXT_HEADER = struct.Struct("<II")  # size type
FUSE_SUPP_GROUPS = struct.Struct("<I")  # nr_groups, then u32 groups[]

#: Dirent names are padded so that every record starts 8-byte aligned.
DIRENT_ALIGN = 8
FUSE_EXT_GROUPS = 32  # fuse_ext_type: FUSE_EXT_GROUPS (security context types are 0..31)

# --- FUSE-over-io-uring (include/uapi/linux/fuse.h, "fuse_uring_*") ---

FUSE_URING_IN_OUT_HEADER_SZ = 128
FUSE_URING_OP_IN_OUT_SZ = 128
#: struct fuse_uring_req_header: in_out[128], op_in[128], ring_ent_in_out (32 bytes).
FUSE_URING_REQ_HEADER_SZ = 288
URING_OP_IN_OFFSET = 128
URING_ENT_IN_OUT_OFFSET = 256
FUSE_URING_ENT_IN_OUT = struct.Struct("<QQIIQ")  # flags commit_id payload_sz padding reserved


class RingCmd(enum.IntEnum):
    """``enum fuse_uring_cmd``: the io-uring command in ``sqe->cmd_op``."""

    INVALID = 0
    REGISTER = 1
    COMMIT_AND_FETCH = 2


#: ioctl ``FUSE_DEV_IOC_SYNC_INIT`` = _IO(229, 3) (Linux 6.18): mount(2) on this /dev/fuse
#: fd returns only after the daemon answered INIT. ENOTTY where the kernel lacks it.
FUSE_DEV_IOC_SYNC_INIT = (229 << 8) | 3

ENABLE_URING_PARAM = "/sys/module/fuse/parameters/enable_uring"
POSSIBLE_CPUS_FILE = "/sys/devices/system/cpu/possible"

# Kernel FUSE passthrough (Linux 6.9+): ioctls on the /dev/fuse fd.
# struct fuse_backing_map { int32_t fd; uint32_t flags; uint64_t padding; }
FUSE_BACKING_MAP = struct.Struct("<iIQ")
FUSE_DEV_IOC_MAGIC = 229
# _IOW(229, 1, struct fuse_backing_map) and _IOW(229, 2, uint32_t)
FUSE_DEV_IOC_BACKING_OPEN = (
    (1 << 30) | (FUSE_BACKING_MAP.size << 16) | (FUSE_DEV_IOC_MAGIC << 8) | 1
)
FUSE_DEV_IOC_BACKING_CLOSE = (1 << 30) | (4 << 16) | (FUSE_DEV_IOC_MAGIC << 8) | 2
#: fuse_init_out.max_stack_depth we ask for: backing files on non-stacked filesystems.
#: The kernel accepts 1..FILESYSTEM_MAX_STACK_DEPTH (2) and gives the mount that depth.
PASSTHROUGH_STACK_DEPTH = 1
