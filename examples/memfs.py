"""An in-memory filesystem with the semantics of tmpfs, built on the handler API.

    python examples/memfs.py MOUNTPOINT                  # serves until Ctrl-C or `umount`
    python examples/memfs.py MOUNTPOINT -o size=1G,nr_inodes=200000,allow_other

Regular files (sparse, fallocate, SEEK_DATA/SEEK_HOLE, copy_file_range), directories,
symlinks, hard links, fifos, sockets, device nodes, O_TMPFILE, extended attributes,
POSIX ACLs (with ``-o posix_acl``), rename flags (whiteouts too), inode flags (chattr
+i, +a, +A), creation times (statx), POSIX locks (OFD locks included), file handles
(open_by_handle_at, NFS export), the mount's atime flags. BSD flock locks are left to the kernel, as for any local filesystem (they show
in /proc/locks). Permissions are checked by the kernel (``default_permissions``); memfs
keeps the metadata right (owners, umask, set-group-ID directories, suid/sgid clearing,
nanosecond timestamps before and after 1970, link counts).

Limits, as tmpfs has them, so that no user can take the daemon down: ``size`` bounds file
data *and* extended attributes (at most 1 MiB of names and values per inode; ENOSPC
beyond, as tmpfs answers when its xattr space is used up); one copy_file_range copies
at most 2147479552 bytes (the kernel's cap for tmpfs; callers loop), and long loops
yield to the event loop so other requests are served meanwhile.

Every operation costs O(1) or O(size of the data it touches), never O(number of files):
directories are dicts plus a slot list that gives readdir stable, O(1) resume cookies
(a rename within a directory keeps its slot); file data lives in 64 KiB chunks with
pages allocated one by one as in tmpfs, so holes cost nothing.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import logging
import os
import re
import stat
import struct
import sys
import time
from collections.abc import AsyncIterator, Sequence

import trio

import trio_fuse_uring as tfu

log = logging.getLogger("memfs")

CHUNK = 64 * 1024  # file data is kept in chunks of this size
PAGE = 4096  # allocation granularity, as tmpfs pages: st_blocks, statfs, SEEK_DATA/SEEK_HOLE
NAME_MAX = 255
BOGO_DIRENT_SIZE = 20  # tmpfs reports a directory's size as 20 bytes per entry
XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.")
XATTR_CREATE, XATTR_REPLACE = os.XATTR_CREATE, os.XATTR_REPLACE
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
SEEK_DATA, SEEK_HOLE = os.SEEK_DATA, os.SEEK_HOLE
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4  # <linux/fs.h>
# Inode flags (chattr/lsattr, FS_IOC_GETFLAGS/SETFLAGS): the ones tmpfs lets users set.
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NODUMP_FL, FS_NOATIME_FL = 0x10, 0x20, 0x40, 0x80
SETTABLE_FLAGS = FS_IMMUTABLE_FL | FS_APPEND_FL | FS_NODUMP_FL | FS_NOATIME_FL
INHERITED_FLAGS = FS_NODUMP_FL | FS_NOATIME_FL  # new inodes take these from the directory
# The same through struct fsxattr (FS_IOC_FSGETXATTR/FSSETXATTR, which chattr also uses).
FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
FSXATTR = struct.Struct("<IIIII8x")  # xflags extsize nextents projid cowextsize
_XFLAGS = {FS_IMMUTABLE_FL: 0x8, FS_APPEND_FL: 0x10, FS_NODUMP_FL: 0x80, FS_NOATIME_FL: 0x40}
DAY_NS = 24 * 3600 * 10**9
# One copy_file_range call copies at most this much, as the kernel caps it for tmpfs
# (MAX_RW_COUNT: INT_MAX rounded down to a page); callers loop for more.
COPY_MAX = 2147479552
# Extended attributes of one inode (names + values + XATTR_OVERHEAD each) may take at
# most this much; they are charged against the filesystem size like file data.
XATTR_INODE_MAX = 1 << 20
XATTR_OVERHEAD = 32  # what one attribute costs beyond its bytes (as tmpfs counts)
# A handler that loops over data yields to the event loop at least this often, so one
# large request never stops the others.
STEPS_PER_CHECKPOINT = 16
_SIZE_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _now() -> int:
    return time.time_ns()


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


# ---- file data ---------------------------------------------------------------------------


class FileData:
    """Sparse file contents: chunk index -> bytearray of at most CHUNK bytes.

    Pages are tracked as tmpfs does: ``pages`` maps a chunk index to a bitmask of its
    allocated pages (written or fallocated), ``unwritten`` to those of them that were
    fallocated and never written since (SEEK_DATA counts them as holes, as tmpfs does).
    A chunk exists exactly when one of its pages does. Bytes outside allocated pages
    are zero, and bytes past the end of a short chunk read as zeros. ``allocated`` is
    the number of bytes in allocated pages (it drives st_blocks and statfs).
    """

    __slots__ = ("allocated", "chunks", "pages", "size", "unwritten")

    def __init__(self) -> None:
        self.chunks: dict[int, bytearray] = {}
        self.pages: dict[int, int] = {}
        self.unwritten: dict[int, int] = {}
        self.size = 0
        self.allocated = 0

    def _mark(self, idx: int, lo: int, hi: int, written: bool = True) -> None:
        """Allocate the pages of chunk ``idx`` that [lo, hi) touches (hi > lo)."""
        bits = _page_bits(lo // PAGE, (hi - 1) // PAGE + 1)
        old = self.pages.get(idx, 0)
        new = old | bits
        if new != old:
            self.pages[idx] = new
            self.allocated += (new.bit_count() - old.bit_count()) * PAGE
        if written:
            if self.unwritten and idx in self.unwritten:
                self._clear_unwritten(idx, bits)
        elif new != old:
            self.unwritten[idx] = self.unwritten.get(idx, 0) | (new & ~old)

    def _clear_unwritten(self, idx: int, bits: int) -> None:
        left = self.unwritten[idx] & ~bits
        if left:
            self.unwritten[idx] = left
        else:
            del self.unwritten[idx]

    def _data(self, idx: int) -> int:
        """The pages of chunk ``idx`` that hold data (allocated and written)."""
        return self.pages.get(idx, 0) & ~self.unwritten.get(idx, 0)

    def read(self, off: int, size: int) -> bytes:
        end = min(off + size, self.size)
        if off >= end:
            return b""
        first, last = off // CHUNK, (end - 1) // CHUNK
        if first == last:  # the common case: one chunk, one copy
            chunk = self.chunks.get(first)
            lo = off - first * CHUNK
            if chunk is None:
                return bytes(end - off)
            piece = chunk[lo : lo + end - off]
            return bytes(piece) + bytes(end - off - len(piece))
        out = bytearray(end - off)
        for idx in range(first, last + 1):
            chunk = self.chunks.get(idx)
            if chunk is None:
                continue
            base = idx * CHUNK
            lo, hi = max(off, base), min(end, base + len(chunk))
            if lo < hi:
                out[lo - off : hi - off] = chunk[lo - base : hi - base]
        return bytes(out)

    def write(self, off: int, buf: memoryview | bytes) -> None:
        pos, n = 0, len(buf)
        while pos < n:
            idx, lo = divmod(off + pos, CHUNK)
            take = min(CHUNK - lo, n - pos)
            chunk = self.chunks.get(idx)
            if chunk is None:
                chunk = self.chunks[idx] = bytearray()
            before = len(chunk)
            if before < lo:
                chunk.extend(bytes(lo - before))
            chunk[lo : lo + take] = buf[pos : pos + take]
            self._mark(idx, lo, lo + take)
            pos += take
        self.size = max(self.size, off + n)

    def truncate(self, size: int) -> None:
        if size < self.size:
            # Up to the old end's page boundary: the last page goes if nothing is left in it.
            self._drop(size, _round_up(self.size, PAGE))
        self.size = size

    def punch(self, off: int, length: int) -> None:
        """Deallocate [off, off+length): whole pages are freed, partial ones zeroed."""
        self._drop(off, off + length)

    def _drop(self, start: int, end: int) -> None:
        if start >= end:
            return
        first, last = start // CHUNK, (end - 1) // CHUNK
        # Iterate over whichever is smaller: the chunk range or the chunks that exist.
        span = range(first, last + 1)
        for idx in span if len(span) <= len(self.chunks) else sorted(self.chunks):
            if idx < first or idx > last or idx not in self.chunks:
                continue
            chunk = self.chunks[idx]
            base = idx * CHUNK
            lo, hi = max(start, base) - base, min(end, base + CHUNK) - base
            if hi >= len(chunk):
                del chunk[lo:]  # the tail of the chunk: shrink it
            elif lo < hi:
                chunk[lo:hi] = bytes(hi - lo)
            old = self.pages[idx]
            freed = _page_bits(-(-lo // PAGE), hi // PAGE)
            new = old & ~freed
            if idx in self.unwritten:
                self._clear_unwritten(idx, freed)
            if new != old:
                self.allocated -= (old.bit_count() - new.bit_count()) * PAGE
                if new:
                    self.pages[idx] = new
                else:
                    del self.pages[idx], self.chunks[idx]

    def allocate(self, off: int, length: int) -> None:
        """Back [off, off+length) with memory (fallocate without flags)."""
        end = off + length
        for idx in range(off // CHUNK, (end - 1) // CHUNK + 1):
            chunk = self.chunks.get(idx)
            if chunk is None:
                chunk = self.chunks[idx] = bytearray()
            base = idx * CHUNK
            want = min(CHUNK, end - base)
            if len(chunk) < want:
                chunk.extend(bytes(want - len(chunk)))
            self._mark(idx, max(off, base) - base, want, written=False)

    def seek(self, off: int, whence: int) -> int:
        """SEEK_DATA / SEEK_HOLE at page granularity (an unallocated page is a hole)."""
        if off >= self.size:
            raise tfu.FUSEError(errno.ENXIO)
        idx, page = off // CHUNK, off % CHUNK // PAGE
        if whence == SEEK_DATA:
            mask = self._data(idx) >> page << page
            if not mask:
                later = sorted(i for i in self.pages if i > idx)
                idx = next((i for i in later if self._data(i)), -1)
                if idx < 0:
                    raise tfu.FUSEError(errno.ENXIO)
                mask = self._data(idx)
            found = idx * CHUNK + _lowest_bit(mask) * PAGE
            if found >= self.size:
                raise tfu.FUSEError(errno.ENXIO)
            return max(off, found)
        # SEEK_HOLE: the first unallocated page; the end of the file counts as a hole.
        while True:
            free = ~self._data(idx) & _ALL_PAGES
            free = free >> page << page
            if free:
                return min(max(off, idx * CHUNK + _lowest_bit(free) * PAGE), self.size)
            idx, page = idx + 1, 0


_ALL_PAGES = (1 << (CHUNK // PAGE)) - 1


def _page_bits(first: int, end: int) -> int:
    """The bitmask of pages first..end-1 (empty if end <= first)."""
    return (1 << end) - (1 << first) if end > first else 0


def _lowest_bit(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


# ---- POSIX ACLs --------------------------------------------------------------------------
# Stored as the kernel hands them over: the system.posix_acl_* xattrs in their binary form
# (a u32 version 2, then u16 tag, u16 perm, u32 id per entry). The kernel checks access
# with them (posix_acl negotiated); memfs keeps them valid, in step with the mode bits,
# and inherited from directories' default ACLs, as tmpfs does.

ACL_ACCESS, ACL_DEFAULT = b"system.posix_acl_access", b"system.posix_acl_default"
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 16, 32
_ACL_VERSION = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")  # tag perm id
_ACL_ORDER = {
    ACL_USER_OBJ: 0,
    ACL_USER: 1,
    ACL_GROUP_OBJ: 2,
    ACL_GROUP: 3,
    ACL_MASK: 4,
    ACL_OTHER: 5,
}
Acl = list[list[int]]  # [tag, perm, id] in the kernel's order


def parse_acl(value: bytes) -> Acl:
    """Decode and validate an ACL as the kernel's posix_acl_valid does (EINVAL if not):
    one owner, owning group and other entry, named users and groups sorted by id and
    unique, a mask exactly when there are named entries."""
    n, rest = divmod(len(value) - _ACL_VERSION.size, _ACL_ENTRY.size)
    if n < 0 or rest or _ACL_VERSION.unpack_from(value)[0] != 2:
        raise tfu.FUSEError(errno.EINVAL)
    acl = [list(_ACL_ENTRY.unpack_from(value, 4 + 8 * i)) for i in range(n)]
    keys = []
    for tag, perm, uid in acl:
        if tag not in _ACL_ORDER or perm & ~7:
            raise tfu.FUSEError(errno.EINVAL)
        keys.append((_ACL_ORDER[tag], uid if tag in (ACL_USER, ACL_GROUP) else -1))
    tags = [e[0] for e in acl]
    named = ACL_USER in tags or ACL_GROUP in tags
    masks = tags.count(ACL_MASK)
    if (
        keys != sorted(set(keys))  # in order, no duplicates
        or [tags.count(t) for t in (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER)] != [1, 1, 1]
        or masks > 1
        or (named and not masks)
    ):
        raise tfu.FUSEError(errno.EINVAL)
    return acl


def acl_bytes(acl: Acl) -> bytes:
    return _ACL_VERSION.pack(2) + b"".join(_ACL_ENTRY.pack(*e) for e in acl)


def acl_is_extended(acl: Acl) -> bool:
    """False if the mode bits say everything (posix_acl_equiv_mode): no named entries."""
    return any(e[0] in (ACL_USER, ACL_GROUP) for e in acl)


def _acl_class(acl: Acl, tag: int) -> list[int] | None:
    return next((e for e in acl if e[0] == tag), None)


def acl_mode(acl: Acl) -> int:
    """The permission bits an access ACL stands for (the group class is the mask's)."""
    group = _acl_class(acl, ACL_MASK) or _acl_class(acl, ACL_GROUP_OBJ)
    owner, other = _acl_class(acl, ACL_USER_OBJ), _acl_class(acl, ACL_OTHER)
    assert owner is not None and group is not None and other is not None
    return owner[1] << 6 | group[1] << 3 | other[1]


def acl_chmod(acl: Acl, mode: int) -> None:
    """A chmod rewrites the owner, group class (mask if any) and other entries."""
    for e in acl:
        if e[0] == ACL_USER_OBJ:
            e[1] = mode >> 6 & 7
        elif e[0] == ACL_MASK or (e[0] == ACL_GROUP_OBJ and not _acl_class(acl, ACL_MASK)):
            e[1] = mode >> 3 & 7
        elif e[0] == ACL_OTHER:
            e[1] = mode & 7


def acl_create(default: Acl, mode: int) -> tuple[Acl, int]:
    """A new inode's access ACL from its directory's default ACL, and its mode: the
    requested permissions and the ACL mask each other (posix_acl_create_masq)."""
    acl = [list(e) for e in default]
    group_class = _acl_class(acl, ACL_MASK) or _acl_class(acl, ACL_GROUP_OBJ)
    for e in acl:
        if e[0] == ACL_USER_OBJ:
            e[1] &= mode >> 6 & 7
            mode &= e[1] << 6 | ~0o700
        elif e[0] == ACL_OTHER:
            e[1] &= mode & 7
            mode &= e[1] | ~0o007
    assert group_class is not None
    group_class[1] &= mode >> 3 & 7
    mode &= group_class[1] << 3 | ~0o070
    return acl, mode


# ---- inodes ------------------------------------------------------------------------------


class Inode:
    """Metadata shared by every kind of file, plus the counts that keep it alive.

    An inode lives while it has a name (``nlink``), the kernel holds references to it
    (``lookups``, balanced by FORGET) or it is open (``opens``).
    """

    __slots__ = (
        "atime", "btime", "ctime", "data", "dir", "gid", "iflags", "ino", "lock_changed",
        "lookups", "mode", "mtime", "nlink", "opens", "plocks", "rdev", "target", "uid",
        "xattr_bytes",
        "xattrs",
    )  # fmt: skip

    def __init__(self, ino: int, mode: int, uid: int, gid: int, rdev: int = 0) -> None:
        self.ino, self.mode, self.uid, self.gid, self.rdev = ino, mode, uid, gid, rdev
        self.nlink = 0
        self.lookups = 0
        self.opens = 0
        self.atime = self.mtime = self.ctime = self.btime = _now()
        self.iflags = 0  # FS_*_FL
        self.xattrs: dict[bytes, bytes] | None = None  # most files have none
        self.xattr_bytes = 0  # what they cost (charged to MemFS.used)
        self.data: FileData | None = FileData() if stat.S_ISREG(mode) else None
        self.dir: Directory | None = None
        self.target = b""  # symlinks
        # POSIX locks, created on first use: [owner, start, end (inclusive), type, pid,
        # fh it was taken through]. (BSD flock locks are left to the kernel.)
        self.plocks: list[list[int]] | None = None
        self.lock_changed: trio.Event | None = None

    @property
    def is_dir(self) -> bool:
        return self.dir is not None

    def check_mutable(self, *, append_ok: bool = False) -> None:
        """EPERM if the inode is immutable, or append-only unless ``append_ok``: the
        checks the VFS makes with the inode flags of local filesystems (FUSE's inodes
        do not carry them, so the filesystem makes them)."""
        if self.iflags & FS_IMMUTABLE_FL or (self.iflags & FS_APPEND_FL and not append_ok):
            raise tfu.FUSEError(errno.EPERM)

    def touch(self, *, m: bool = False, c: bool = True) -> None:
        now = _now()
        if m:
            self.mtime = now
        if c:
            self.ctime = now

    def kill_suidgid(self, writer: tfu.RequestContext | None = None) -> int:
        """Clear set-user-ID, and set-group-ID when it means "group executable" or the
        unprivileged ``writer`` is not in the file's group (as the kernel's
        setattr_should_drop_sgid does); also drop file capabilities. Returns the bytes
        of extended attributes that freed (to take off ``MemFS.used``)."""
        self.mode &= ~stat.S_ISUID
        if self.mode & stat.S_IXGRP or (
            self.mode & stat.S_ISGID and writer is not None and not _in_group(writer, self.gid)
        ):
            self.mode &= ~stat.S_ISGID
        cap = self.xattrs.pop(b"security.capability", None) if self.xattrs else None
        if cap is None:
            return 0
        freed = _xattr_cost(b"security.capability", cap)
        self.xattr_bytes -= freed
        return freed

    def wake_lock_waiters(self) -> None:
        if self.lock_changed is not None:
            self.lock_changed.set()
            self.lock_changed = None


class Directory:
    """The entries of a directory, with stable readdir cookies.

    ``entries`` maps names to inodes for O(1) lookup. ``slots`` lists names in creation
    order; an entry's cookie is its slot index (offset past ``.`` and ``..``), so
    readdir resumes in O(1). Removing an entry leaves a ``None`` tombstone, so the
    cookies of the others stay valid; tombstones are compacted away once more than half
    the slots are dead and no handle of the directory is open (nobody holds a cookie).
    """

    __slots__ = ("entries", "parent", "slot_of", "slots", "tombstones")

    FIRST_SLOT_COOKIE = 3  # 1 and 2 are the cookies of "." and ".."

    def __init__(self, parent: Inode | None) -> None:
        self.entries: dict[bytes, Inode] = {}
        self.slot_of: dict[bytes, int] = {}
        self.slots: list[bytes | None] = []
        self.tombstones = 0
        self.parent = parent  # None for the root: its parent is itself

    def add(self, name: bytes, inode: Inode) -> None:
        self.entries[name] = inode
        self.slot_of[name] = len(self.slots)
        self.slots.append(name)

    def rename(self, old: bytes, new: bytes) -> None:
        """Give the entry ``old`` the name ``new`` (free), keeping its slot and cookie."""
        slot = self.slot_of.pop(old)
        self.entries[new] = self.entries.pop(old)
        self.slot_of[new] = slot
        self.slots[slot] = new

    def remove(self, name: bytes, open_handles: int) -> Inode:
        inode = self.entries.pop(name)
        self.slots[self.slot_of.pop(name)] = None
        self.tombstones += 1
        self.maybe_compact(open_handles)
        return inode

    def maybe_compact(self, open_handles: int) -> None:
        if open_handles or self.tombstones < 64 or self.tombstones * 2 < len(self.slots):
            return
        live = [n for n in self.slots if n is not None]
        self.slot_of = {n: i for i, n in enumerate(live)}
        self.slots = list(live)
        self.tombstones = 0


def _xattr_cost(name: bytes, value: bytes) -> int:
    return len(name) + len(value) + XATTR_OVERHEAD


def _in_group(ctx: tfu.RequestContext, gid: int) -> bool:
    """Is ``gid`` the caller's group or one of its supplementary groups? The request
    carries only the first; the others are read from /proc, as libfuse's
    fuse_req_getgroups does (a caller that is gone counts as not in the group)."""
    if ctx.gid == gid:
        return True
    try:
        with open(f"/proc/{ctx.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    return gid in {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return False


class Handle:
    """An open file or directory (what an ``fh`` stands for).

    ``opener``: who opened it, if not root. Writes and fallocate through it clear
    suid/sgid, as the kernel does for writers without CAP_FSETID. (The WRITE request's
    FUSE_WRITE_KILL_SUIDGID flag would say so exactly, but ``Operations.write`` does
    not receive it; the opener is the best approximation memfs has.)
    """

    __slots__ = ("flags", "inode", "opener")

    def __init__(self, inode: Inode, flags: int, opener: tfu.RequestContext | None) -> None:
        self.inode = inode
        self.flags = flags
        self.opener = opener


# ---- the filesystem ----------------------------------------------------------------------


class MemFS(tfu.Operations):
    """tmpfs in a Python process. ``capacity`` bytes of data, ``max_inodes`` inodes."""

    def __init__(self, capacity: int = 4 << 30, max_inodes: int = 1_000_000) -> None:
        self.capacity = capacity
        self.max_inodes = max_inodes
        self.inodes: dict[int, Inode] = {}
        self.handles: dict[int, Handle] = {}
        self.next_ino = tfu.ROOT_INODE
        self.next_fh = 1
        # bytes of file data allocated (sum of FileData.allocated) and of xattrs
        self.used = 0
        self.dir_handles: dict[int, int] = {}  # directory inode -> open handles
        root = self._new_inode(stat.S_IFDIR | 0o755, os.getuid(), os.getgid(), None)
        root.nlink = 2
        root.lookups = 1  # the kernel's reference to the root is never forgotten
        self.atime_policy = "relatime"  # or "noatime", "strictatime": set by init()
        self.nodiratime = False
        self.posix_acl = False

    async def init(self, info: tfu.InitInfo) -> None:
        flags = info.mount_flags
        for policy in ("noatime", "strictatime"):
            if policy in flags:
                self.atime_policy = policy
        self.nodiratime = "nodiratime" in flags
        # The kernel enforces ACLs only if they were negotiated (-o posix_acl): without,
        # memfs refuses them (EOPNOTSUPP), as a tmpfs built without ACL support.
        self.posix_acl = "POSIX_ACL" in info.capabilities

    # ---- inode bookkeeping -------------------------------------------------------------------

    def _new_inode(
        self, mode: int, uid: int, gid: int, parent: Inode | None, rdev: int = 0
    ) -> Inode:
        if len(self.inodes) >= self.max_inodes:
            raise tfu.FUSEError(errno.ENOSPC)
        inode = Inode(self.next_ino, mode, uid, gid, rdev)
        self.next_ino += 1
        if stat.S_ISDIR(mode):
            inode.dir = Directory(parent)
        self.inodes[inode.ino] = inode
        return inode

    def _get(self, ino: int) -> Inode:
        try:
            return self.inodes[ino]
        except KeyError:
            raise tfu.FUSEError(errno.ENOENT) from None

    def _dir(self, ino: int) -> Directory:
        d = self._get(ino).dir
        if d is None:
            raise tfu.FUSEError(errno.ENOTDIR)
        return d

    def _maybe_free(self, inode: Inode) -> None:
        """Forget an inode nobody can reach any more: no name, no reference, not open."""
        if inode.nlink or inode.lookups or inode.opens or inode.ino == tfu.ROOT_INODE:
            return
        del self.inodes[inode.ino]
        if inode.data is not None:
            self.used -= inode.data.allocated
        self.used -= inode.xattr_bytes

    def _attr(self, inode: Inode) -> tfu.EntryAttributes:
        if inode.data is not None:
            size, blocks = inode.data.size, inode.data.allocated // 512
        elif inode.dir is not None:
            size, blocks = BOGO_DIRENT_SIZE * (len(inode.dir.entries) + 2), 0
        else:
            size, blocks = len(inode.target), 0
        return tfu.EntryAttributes(
            st_ino=inode.ino, st_mode=inode.mode, st_nlink=inode.nlink, st_uid=inode.uid,
            st_gid=inode.gid, st_rdev=inode.rdev, st_size=size, st_blocks=blocks,
            st_blksize=PAGE, st_atime_ns=inode.atime, st_mtime_ns=inode.mtime,
            st_ctime_ns=inode.ctime, st_birthtime_ns=inode.btime,
        )  # fmt: skip

    def _entry(self, inode: Inode) -> tfu.EntryAttributes:
        """Attributes for a reply that counts as one lookup."""
        inode.lookups += 1
        return self._attr(inode)

    @staticmethod
    def _check_name(name: bytes) -> None:
        if len(name) > NAME_MAX:
            raise tfu.FUSEError(errno.ENAMETOOLONG)

    def _make(
        self, parent_ino: int, name: bytes, mode: int, ctx: tfu.RequestContext, rdev: int = 0
    ) -> Inode:
        """Create and link a new inode: owner from ctx, umask applied, set-group-ID
        directories handing down their group (and, to subdirectories, the bit itself)."""
        self._check_name(name)
        parent = self._get(parent_ino)
        d = self._dir(parent_ino)
        if name in d.entries:
            raise tfu.FUSEError(errno.EEXIST)
        parent.check_mutable(append_ok=True)
        inode = self._new_child(parent, mode, ctx, rdev)
        d.add(name, inode)
        inode.nlink = 1
        if inode.dir is not None:
            inode.nlink = 2
            parent.nlink += 1
        parent.touch(m=True)
        return inode

    def _new_child(self, parent: Inode, mode: int, ctx: tfu.RequestContext, rdev: int = 0) -> Inode:
        default = parent.xattrs.get(ACL_DEFAULT) if parent.xattrs else None
        acl = None
        if default is None or stat.S_ISLNK(mode):
            perm = mode & 0o7777 & ~ctx.umask
        else:  # a default ACL replaces the umask
            acl, perm = acl_create(parse_acl(default), mode & 0o7777)
        gid = ctx.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                perm |= stat.S_ISGID
        if parent.dir is None or parent.nlink == 0:
            raise tfu.FUSEError(errno.ENOENT)  # a removed directory takes no new entries
        inode = self._new_inode(stat.S_IFMT(mode) | perm, ctx.uid, gid, parent, rdev)
        inode.iflags = parent.iflags & INHERITED_FLAGS
        if acl is not None and default is not None:
            if acl_is_extended(acl):
                self._store_xattr(inode, ACL_ACCESS, acl_bytes(acl))
            if inode.dir is not None:
                self._store_xattr(inode, ACL_DEFAULT, default)
        return inode

    def _store_xattr(self, node: Inode, name: bytes, value: bytes | None) -> None:
        """Set (``None``: remove) one extended attribute of ``node``, keeping what it
        costs charged to ``used``. Limits are the caller's business."""
        xattrs = node.xattrs
        old = xattrs.get(name) if xattrs else None
        change = -_xattr_cost(name, old) if old is not None else 0
        if value is None:
            if xattrs and old is not None:
                del xattrs[name]
        else:
            if node.xattrs is None:
                node.xattrs = {}
            node.xattrs[name] = value
            change += _xattr_cost(name, value)
        node.xattr_bytes += change
        self.used += change

    def _open_handle(self, inode: Inode, flags: int, ctx: tfu.RequestContext) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(inode, flags, ctx if ctx.uid != 0 else None)
        inode.opens += 1
        return fh

    def _handle(self, fh: int) -> Handle:
        try:
            return self.handles[fh]
        except KeyError:
            raise tfu.FUSEError(errno.EBADF) from None

    def _file(self, fh: int) -> tuple[Inode, FileData]:
        inode = self._handle(fh).inode
        if inode.data is None:
            raise tfu.FUSEError(errno.EISDIR if inode.is_dir else errno.EINVAL)
        return inode, inode.data

    def _charge(self, inode: Inode, before: int) -> None:
        assert inode.data is not None
        self.used += inode.data.allocated - before

    def _reserve(self, nbytes: int) -> None:
        if self.used + nbytes > self.capacity:
            raise tfu.FUSEError(errno.ENOSPC)

    # ---- names and inodes ----------------------------------------------------------------------

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        self._check_name(name)
        if name == b".":
            # Also how the kernel finds an inode by number alone, for a file handle
            # (open_by_handle_at, NFS export) whose inode it forgot: any file type.
            return self._entry(self._get(parent_inode))
        parent = self._get(parent_inode)
        d = self._dir(parent_inode)
        if name == b"..":
            return self._entry(d.parent or parent)
        inode = d.entries.get(name)
        if inode is None:
            # A negative entry: the kernel caches the absence (no lookup is counted).
            return tfu.EntryAttributes(st_ino=0)
        return self._entry(inode)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            inode = self.inodes.get(ino)
            if inode is None:
                log.error("FORGET of unknown inode %d", ino)
                continue
            if n > inode.lookups:
                log.error("FORGET %d of inode %d, which has %d lookups", n, ino, inode.lookups)
                n = inode.lookups
            inode.lookups -= n
            self._maybe_free(inode)

    async def getattr(self, inode: int, ctx: tfu.RequestContext) -> tfu.EntryAttributes:
        return self._attr(self._get(inode))

    async def setattr(
        self, inode: int, attr: tfu.SetattrFields, fh: int | None, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        # The kernel has already checked permissions (default_permissions) and, on
        # chmod by a non-member of the group, dropped S_ISGID from st_mode.
        node = self._get(inode)
        if attr.atime_now or attr.mtime_now:
            node.check_mutable(append_ok=True)  # touch: allowed on append-only files
        if (
            attr.st_size is not None
            or attr.st_mode is not None
            or attr.st_uid is not None
            or attr.st_gid is not None
            or attr.st_atime_ns is not None
            or attr.st_mtime_ns is not None
        ):
            node.check_mutable()
        now = _now()
        if attr.st_size is not None:
            if node.data is None:
                raise tfu.FUSEError(errno.EISDIR if node.is_dir else errno.EINVAL)
            if attr.st_size != node.data.size:
                self._resize(node, attr.st_size)
                node.mtime = now
            if ctx.uid != 0 and node.mode & (stat.S_ISUID | stat.S_ISGID):
                self.used -= node.kill_suidgid(ctx)  # the kernel leaves sgid without group-x to us
        if attr.st_mode is not None:
            node.mode = stat.S_IFMT(node.mode) | (attr.st_mode & 0o7777)
            if node.xattrs and ACL_ACCESS in node.xattrs:
                acl = parse_acl(node.xattrs[ACL_ACCESS])
                acl_chmod(acl, node.mode)
                self._store_xattr(node, ACL_ACCESS, acl_bytes(acl))
        if attr.st_uid is not None or attr.st_gid is not None:
            if attr.st_uid is not None:
                node.uid = attr.st_uid
            if attr.st_gid is not None:
                node.gid = attr.st_gid
            # HANDLE_KILLPRIV_V2: a chown of a non-directory must clear suid/sgid here.
            if not node.is_dir and attr.st_mode is None:
                self.used -= node.kill_suidgid()
        if attr.kill_suidgid:
            self.used -= node.kill_suidgid()
        if attr.atime_now:
            node.atime = now
        elif attr.st_atime_ns is not None:
            node.atime = attr.st_atime_ns
        if attr.mtime_now:
            node.mtime = now
        elif attr.st_mtime_ns is not None:
            node.mtime = attr.st_mtime_ns
        node.ctime = attr.st_ctime_ns if attr.st_ctime_ns is not None else now
        return self._attr(node)

    def _resize(self, node: Inode, size: int) -> None:
        assert node.data is not None
        before = node.data.allocated
        node.data.truncate(size)
        self._charge(node, before)

    async def readlink(self, inode: int, ctx: tfu.RequestContext) -> bytes:
        node = self._get(inode)
        if not stat.S_ISLNK(node.mode):
            raise tfu.FUSEError(errno.EINVAL)
        self._read_atime(node)
        return node.target

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        if len(target) >= PAGE:
            raise tfu.FUSEError(errno.ENAMETOOLONG)
        inode = self._make(
            parent_inode,
            name,
            stat.S_IFLNK | 0o777,
            tfu.RequestContext(ctx.uid, ctx.gid, ctx.pid, 0),
        )
        inode.target = target
        return self._entry(inode)

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        if stat.S_IFMT(mode) not in (
            stat.S_IFREG,
            stat.S_IFIFO,
            stat.S_IFSOCK,
            stat.S_IFCHR,
            stat.S_IFBLK,
        ):
            raise tfu.FUSEError(errno.EINVAL)
        keep_rdev = rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
        return self._entry(self._make(parent_inode, name, mode, ctx, keep_rdev))

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        return self._entry(self._make(parent_inode, name, stat.S_IFDIR | (mode & 0o7777), ctx))

    async def unlink(self, parent_inode: int, name: bytes, ctx: tfu.RequestContext) -> None:
        parent = self._get(parent_inode)
        d = self._dir(parent_inode)
        inode = d.entries.get(name)
        if inode is None:
            raise tfu.FUSEError(errno.ENOENT)
        parent.check_mutable()  # before the type check, as the VFS's may_delete
        inode.check_mutable()
        if inode.is_dir:
            raise tfu.FUSEError(errno.EISDIR)
        d.remove(name, self.dir_handles.get(parent_inode, 0))
        inode.nlink -= 1
        inode.touch()
        parent.touch(m=True)
        self._maybe_free(inode)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: tfu.RequestContext) -> None:
        parent = self._get(parent_inode)
        d = self._dir(parent_inode)
        inode = d.entries.get(name)
        if inode is None:
            raise tfu.FUSEError(errno.ENOENT)
        parent.check_mutable()  # before the type check, as the VFS's may_delete
        inode.check_mutable()
        if inode.dir is None:
            raise tfu.FUSEError(errno.ENOTDIR)
        if inode.dir.entries:
            raise tfu.FUSEError(errno.ENOTEMPTY)
        d.remove(name, self.dir_handles.get(parent_inode, 0))
        inode.nlink = 0
        inode.touch()
        parent.nlink -= 1
        parent.touch(m=True)
        self._maybe_free(inode)

    def _is_ancestor(self, a: Inode, b: Inode) -> bool:
        """Is directory ``a`` ``b`` or one of its ancestors? (O(depth))"""
        while True:
            if a is b:
                return True
            assert b.dir is not None
            if b.dir.parent is None:
                return False
            b = b.dir.parent

    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: tfu.RequestContext,
    ) -> None:  # fmt: skip
        self._check_name(name_new)
        old_parent, new_parent = self._get(parent_inode_old), self._get(parent_inode_new)
        old_dir, new_dir = self._dir(parent_inode_old), self._dir(parent_inode_new)
        src = old_dir.entries.get(name_old)
        if src is None:
            raise tfu.FUSEError(errno.ENOENT)
        dst = new_dir.entries.get(name_new)
        for node in (old_parent, src, dst):
            if node is not None:
                node.check_mutable()
        new_parent.check_mutable(append_ok=dst is None)
        if flags & RENAME_WHITEOUT and len(self.inodes) >= self.max_inodes:
            raise tfu.FUSEError(errno.ENOSPC)  # before anything moves
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise tfu.FUSEError(errno.ENOENT)
            self._exchange(old_parent, name_old, src, new_parent, name_new, dst)
            return
        if dst is not None and flags & RENAME_NOREPLACE:
            raise tfu.FUSEError(errno.EEXIST)
        if src.is_dir and self._is_ancestor(src, new_parent):
            raise tfu.FUSEError(errno.EINVAL)  # moving a directory into itself
        if dst is src:
            return  # two names of one inode: POSIX says do nothing
        if dst is not None:
            if src.is_dir and dst.dir is None:
                raise tfu.FUSEError(errno.ENOTDIR)
            if not src.is_dir and dst.is_dir:
                raise tfu.FUSEError(errno.EISDIR)
            if dst.dir is not None and dst.dir.entries:
                raise tfu.FUSEError(errno.ENOTEMPTY)
            new_dir.remove(name_new, self.dir_handles.get(new_parent.ino, 0))
            if dst.is_dir:
                dst.nlink = 0
                new_parent.nlink -= 1
            else:
                dst.nlink -= 1
            dst.touch()
        if old_dir is new_dir:
            # Within one directory the entry keeps its slot, so a readdir in progress
            # neither sees it twice nor misses it (tmpfs's offsets are stable too).
            old_dir.rename(name_old, name_new)
        else:
            old_dir.remove(name_old, self.dir_handles.get(old_parent.ino, 0))
            new_dir.add(name_new, src)
        if src.dir is not None and old_parent is not new_parent:
            src.dir.parent = new_parent
            old_parent.nlink -= 1
            new_parent.nlink += 1
        src.touch()
        old_parent.touch(m=True)
        new_parent.touch(m=True)
        if dst is not None:
            self._maybe_free(dst)
        if flags & RENAME_WHITEOUT:
            # What overlayfs asks of its upper layer: a character device 0/0, mode 0,
            # at the old name (the kernel checked CAP_MKNOD).
            whiteout = self._new_child(old_parent, stat.S_IFCHR, ctx)
            whiteout.nlink = 1
            old_dir.add(name_old, whiteout)

    def _exchange(
        self,
        old_parent: Inode,
        name_old: bytes,
        src: Inode,
        new_parent: Inode,
        name_new: bytes,
        dst: Inode,
    ) -> None:
        if src is dst:
            return
        for a, b in ((src, new_parent), (dst, old_parent)):
            if a.is_dir and self._is_ancestor(a, b):
                raise tfu.FUSEError(errno.EINVAL)
        assert old_parent.dir is not None and new_parent.dir is not None
        # Swap in place: both names keep their slots (and readdir cookies).
        old_parent.dir.entries[name_old] = dst
        new_parent.dir.entries[name_new] = src
        if old_parent is not new_parent:
            for moved, frm, to in ((src, old_parent, new_parent), (dst, new_parent, old_parent)):
                if moved.dir is not None:
                    moved.dir.parent = to
                    frm.nlink -= 1
                    to.nlink += 1
        for node in (src, dst):
            node.touch()
        old_parent.touch(m=True)
        new_parent.touch(m=True)

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        self._check_name(new_name)
        node = self._get(inode)
        parent = self._get(new_parent_inode)
        d = self._dir(new_parent_inode)
        if node.is_dir:
            raise tfu.FUSEError(errno.EPERM)
        node.check_mutable()
        parent.check_mutable(append_ok=True)
        if parent.nlink == 0:
            raise tfu.FUSEError(errno.ENOENT)
        if new_name in d.entries:
            raise tfu.FUSEError(errno.EEXIST)
        d.add(new_name, node)
        node.nlink += 1  # from 0 for an O_TMPFILE file being given a name
        node.touch()
        parent.touch(m=True)
        return self._entry(node)

    # ---- files ---------------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: tfu.RequestContext) -> tfu.FileInfo:
        node = self._get(inode)
        if node.is_dir:
            raise tfu.FUSEError(errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            node.check_mutable(append_ok=bool(flags & os.O_APPEND and not flags & os.O_TRUNC))
        if flags & os.O_TRUNC and node.data is not None and flags & os.O_ACCMODE != os.O_RDONLY:
            # ATOMIC_O_TRUNC: the truncation of open(O_TRUNC) arrives here, not as setattr.
            if node.data.size:
                self._resize(node, 0)
            if ctx.uid != 0:  # FUSE_OPEN_KILL_SUIDGID, approximated (see Handle)
                self.used -= node.kill_suidgid(ctx)
            node.touch(m=True)
        return tfu.FileInfo(fh=self._open_handle(node, flags, ctx))

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: tfu.RequestContext
    ) -> tuple[tfu.FileInfo, tfu.EntryAttributes]:
        inode = self._make(parent_inode, name, stat.S_IFREG | (mode & 0o7777), ctx)
        return tfu.FileInfo(fh=self._open_handle(inode, flags, ctx)), self._entry(inode)

    async def tmpfile(
        self, parent_inode: int, mode: int, flags: int, ctx: tfu.RequestContext
    ) -> tuple[tfu.FileInfo, tfu.EntryAttributes]:
        # An inode without a name (nlink 0), alive through its lookup and open handle.
        inode = self._new_child(self._get(parent_inode), stat.S_IFREG | (mode & 0o7777), ctx)
        return tfu.FileInfo(fh=self._open_handle(inode, flags, ctx)), self._entry(inode)

    def _read_atime(self, inode: Inode) -> None:
        """An access: update atime as the mount's flags say (the kernel leaves access
        times of FUSE files to the filesystem). relatime, the default: only if atime is
        older than mtime/ctime or a day old."""
        if (
            self.atime_policy == "noatime"
            or (self.nodiratime and inode.is_dir)
            or inode.iflags & FS_NOATIME_FL
        ):
            return
        now = _now()
        if (
            self.atime_policy == "strictatime"
            or inode.atime <= inode.mtime
            or inode.atime <= inode.ctime
            or now - inode.atime > DAY_NS
        ):
            inode.atime = now

    async def read(self, fh: int, off: int, size: int) -> bytes:
        inode, data = self._file(fh)
        self._read_atime(inode)
        return data.read(off, size)

    async def write(self, fh: int, off: int, buf: memoryview) -> int:
        inode, data = self._file(fh)
        inode.check_mutable(append_ok=True)
        self._reserve(len(buf))
        before = data.allocated
        data.write(off, buf)  # copies: buf is only valid during this call
        self._charge(inode, before)
        self._written_by(inode, fh)
        inode.touch(m=True)
        return len(buf)

    def _written_by(self, inode: Inode, fh: int) -> None:
        opener = self.handles[fh].opener
        if inode.mode & (stat.S_ISUID | stat.S_ISGID) and opener is not None:
            self.used -= inode.kill_suidgid(opener)

    async def flush(self, fh: int, lock_owner: int) -> None:
        # close() drops the POSIX locks of the closing owner (the kernel also sends an
        # unlock, but a lock acquired by a request still in flight is caught here).
        inode = self._handle(fh).inode
        if inode.plocks:
            self._set_plock(inode, lock_owner, 0, 2**64 - 1, fcntl.F_UNLCK, 0, fh)

    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if handle is None:
            return
        inode = handle.inode
        if inode.plocks and any(lk[5] == fh for lk in inode.plocks):
            # The open file's last reference is gone: its OFD locks go with it (their
            # owner is the open file, which no FLUSH names). A process's POSIX locks
            # taken through it were already dropped by the FLUSH of its close.
            inode.plocks = [lk for lk in inode.plocks if lk[5] != fh]
            inode.wake_lock_waiters()
        handle.inode.opens -= 1
        self._maybe_free(handle.inode)

    async def fsync(self, fh: int, datasync: bool) -> None:
        pass  # nothing is ever unwritten

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        inode, data = self._file(fh)
        before = data.allocated
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            raise tfu.FUSEError(errno.EOPNOTSUPP)
        inode.check_mutable(append_ok=not mode & ~FALLOC_FL_KEEP_SIZE)
        if mode & FALLOC_FL_PUNCH_HOLE:
            if not mode & FALLOC_FL_KEEP_SIZE or mode & FALLOC_FL_ZERO_RANGE:
                raise tfu.FUSEError(errno.EOPNOTSUPP)
            data.punch(offset, length)
        else:
            self._reserve(length)
            if mode & FALLOC_FL_ZERO_RANGE:
                data.punch(offset, length)
            data.allocate(offset, length)
            if not mode & FALLOC_FL_KEEP_SIZE and offset + length > data.size:
                data.size = offset + length
        self._charge(inode, before)
        self._written_by(inode, fh)
        inode.touch(m=True)

    async def lseek(self, fh: int, offset: int, whence: int) -> int:
        _, data = self._file(fh)
        if whence not in (SEEK_DATA, SEEK_HOLE):
            raise tfu.FUSEError(errno.EINVAL)
        return data.seek(offset, whence)

    async def copy_file_range(
        self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int, flags: int
    ) -> int:
        _, src = self._file(fh_in)
        dst_inode, dst = self._file(fh_out)
        length = max(0, min(length, src.size - off_in, COPY_MAX))
        done = 0
        # In chunk-sized steps, so no copy of the whole range is held at once, and
        # holes in the source stay holes in the destination; other requests are
        # served between steps (a copy may take seconds).
        steps = 0
        while done < length:
            steps += 1
            if steps % STEPS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()
            n = min(CHUNK - (off_in + done) % CHUNK, length - done)
            pos = off_in + done
            if (pos // CHUNK) in src.chunks:
                self._reserve(n)
                before = dst.allocated
                dst.write(off_out + done, src.read(pos, n))
                self._charge(dst_inode, before)
            else:
                before = dst.allocated
                dst.punch(off_out + done, n)
                dst.size = max(dst.size, off_out + done + n)
                self._charge(dst_inode, before)
            done += n
        if done:
            dst_inode.touch(m=True)
        return done

    # ---- directories ---------------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: tfu.RequestContext) -> int:
        node = self._get(inode)
        if node.dir is None:
            raise tfu.FUSEError(errno.ENOTDIR)
        self.dir_handles[inode] = self.dir_handles.get(inode, 0) + 1
        return self._open_handle(node, os.O_RDONLY, ctx)

    async def readdir(
        self, fh: int, start_id: int, ctx: tfu.RequestContext
    ) -> AsyncIterator[tfu.DirEntry]:
        node = self._handle(fh).inode
        d = node.dir
        assert d is not None
        self._read_atime(node)
        if start_id < 1:
            yield tfu.DirEntry(b".", self._attr(node), next_id=1)
        if start_id < 2:
            yield tfu.DirEntry(b"..", self._attr(d.parent or node), next_id=2)
        # Resume right after the slot whose cookie was start_id: O(1), no scan.
        # An index, not an iterator: entries may come and go between two yields.
        i = max(0, start_id - Directory.FIRST_SLOT_COOKIE + 1)
        while i < len(d.slots):
            name, cookie = d.slots[i], i + Directory.FIRST_SLOT_COOKIE
            i += 1
            if name is None:
                continue  # a removed entry's tombstone
            child = d.entries[name]
            if (yield tfu.DirEntry(name, self._attr(child), next_id=cookie)):
                child.lookups += 1  # went into a readdirplus reply: one lookup

    async def releasedir(self, fh: int) -> None:
        handle = self.handles.get(fh)
        if handle is not None:
            ino = handle.inode.ino
            left = self.dir_handles[ino] - 1
            if left:
                self.dir_handles[ino] = left
            else:
                del self.dir_handles[ino]
                if handle.inode.dir is not None:
                    handle.inode.dir.maybe_compact(0)
        await self.release(fh)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        pass

    # ---- filesystem ----------------------------------------------------------------------------

    async def statfs(self, ctx: tfu.RequestContext) -> tfu.StatvfsData:
        blocks = self.capacity // PAGE
        free = max(0, blocks - _round_up(self.used, PAGE) // PAGE)
        files_free = max(0, self.max_inodes - len(self.inodes))
        return tfu.StatvfsData(
            f_bsize=PAGE, f_frsize=PAGE, f_blocks=blocks, f_bfree=free, f_bavail=free,
            f_files=self.max_inodes, f_ffree=files_free, f_favail=files_free,
            f_namemax=NAME_MAX,
        )  # fmt: skip

    async def access(self, inode: int, mode: int, ctx: tfu.RequestContext) -> None:
        """Only called with ``-o no_default_permissions``: check the mode bits."""
        node = self._get(inode)
        if ctx.uid == 0 or mode == os.F_OK:
            return
        if ctx.uid == node.uid:
            granted = node.mode >> 6
        elif ctx.gid == node.gid:
            granted = node.mode >> 3
        else:
            granted = node.mode
        if mode & ~granted & 7:
            raise tfu.FUSEError(errno.EACCES)

    # ---- extended attributes -------------------------------------------------------------------

    def _check_xattr_name(self, name: bytes) -> None:
        if not name.startswith(XATTR_NAMESPACES) and not (
            self.posix_acl and name in (ACL_ACCESS, ACL_DEFAULT)
        ):
            raise tfu.FUSEError(errno.EOPNOTSUPP)

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, flags: int, ctx: tfu.RequestContext
    ) -> None:
        self._check_xattr_name(name)
        node = self._get(inode)
        node.check_mutable()
        xattrs = node.xattrs
        exists = xattrs is not None and name in xattrs
        if flags & XATTR_CREATE and exists:
            raise tfu.FUSEError(errno.EEXIST)
        if flags & XATTR_REPLACE and not exists:
            raise tfu.FUSEError(errno.ENODATA)
        value = bytes(value)
        old = _xattr_cost(name, xattrs[name]) if xattrs is not None and exists else 0
        grow = _xattr_cost(name, value) - old
        if node.xattr_bytes + grow > XATTR_INODE_MAX:
            raise tfu.FUSEError(errno.ENOSPC)  # as tmpfs says when its xattr space is out
        self._reserve(grow)
        if name in (ACL_ACCESS, ACL_DEFAULT):
            stored = self._set_acl(node, name, value)
            if stored is None:
                self._store_xattr(node, name, None)  # the mode bits say it all
                node.touch()
                return
            value = stored
        self._store_xattr(node, name, value)
        node.touch()

    @staticmethod
    def _set_acl(node: Inode, name: bytes, value: bytes) -> bytes | None:
        """Validate an ACL; an access ACL sets the mode's permission bits. Returns what to
        store, or None when the ACL is equivalent to the mode (tmpfs keeps none then)."""
        acl = parse_acl(value)
        if name == ACL_DEFAULT:
            if node.dir is None:
                raise tfu.FUSEError(errno.EACCES)
            return acl_bytes(acl)
        node.mode = node.mode & ~0o777 | acl_mode(acl)
        return acl_bytes(acl) if acl_is_extended(acl) else None

    async def getxattr(self, inode: int, name: bytes, ctx: tfu.RequestContext) -> bytes:
        self._check_xattr_name(name)
        xattrs = self._get(inode).xattrs
        if not xattrs or name not in xattrs:
            raise tfu.FUSEError(errno.ENODATA)
        return xattrs[name]

    async def listxattr(self, inode: int, ctx: tfu.RequestContext) -> Sequence[bytes]:
        return list(self._get(inode).xattrs or ())

    async def removexattr(self, inode: int, name: bytes, ctx: tfu.RequestContext) -> None:
        self._check_xattr_name(name)
        node = self._get(inode)
        node.check_mutable()
        if not node.xattrs or name not in node.xattrs:
            raise tfu.FUSEError(errno.ENODATA)
        self._store_xattr(node, name, None)
        node.touch()

    # ---- inode flags (chattr) -----------------------------------------------------------------

    async def ioctl(
        self, fh: int, cmd: int, arg: int, data: bytes, out_size: int, flags: int
    ) -> tuple[int, bytes]:
        # The kernel turns FS_IOC_GETFLAGS/SETFLAGS on any file or directory into these,
        # after its own checks (owner or CAP_FOWNER; CAP_LINUX_IMMUTABLE for i and a).
        node = self._handle(fh).inode
        if cmd == FS_IOC_GETFLAGS and out_size >= 4:
            return 0, node.iflags.to_bytes(4, "little")
        if cmd == FS_IOC_FSGETXATTR and out_size >= FSXATTR.size:
            xflags = sum(x for fl, x in _XFLAGS.items() if node.iflags & fl)
            return 0, FSXATTR.pack(xflags, 0, 0, 0, 0)
        if cmd == FS_IOC_SETFLAGS and len(data) >= 4:
            new = int.from_bytes(data[:4], "little")
        elif cmd == FS_IOC_FSSETXATTR and len(data) >= FSXATTR.size:
            xflags, extsize, _, projid, cowextsize = FSXATTR.unpack_from(data)
            if xflags & ~sum(_XFLAGS.values()) or extsize or projid or cowextsize:
                raise tfu.FUSEError(errno.EOPNOTSUPP)
            new = sum(fl for fl, x in _XFLAGS.items() if xflags & x)
        else:
            raise tfu.FUSEError(errno.ENOTTY)
        if new & ~SETTABLE_FLAGS:
            raise tfu.FUSEError(errno.EOPNOTSUPP)
        node.iflags = new
        node.touch()
        return 0, b""

    # ---- POSIX locks ---------------------------------------------------------------------------

    @staticmethod
    def _conflict(inode: Inode, owner: int, start: int, end: int, typ: int) -> list[int] | None:
        """The first lock of another owner that overlaps and is incompatible."""
        for lk in inode.plocks or ():
            overlaps = lk[0] != owner and lk[1] <= end and start <= lk[2]
            if overlaps and (typ == fcntl.F_WRLCK or lk[3] == fcntl.F_WRLCK):
                return lk
        return None

    def _set_plock(
        self, inode: Inode, owner: int, start: int, end: int, typ: int, pid: int, fh: int
    ) -> None:
        """Replace ``owner``'s locks in [start, end] by ``typ`` (splitting its others)."""
        kept: list[list[int]] = []
        for lk in inode.plocks or ():
            if lk[0] != owner or lk[2] < start or end < lk[1]:
                kept.append(lk)
                continue
            if lk[1] < start:
                kept.append([owner, lk[1], start - 1, *lk[3:]])
            if end < lk[2]:
                kept.append([owner, end + 1, lk[2], *lk[3:]])
        if typ != fcntl.F_UNLCK:
            kept.append([owner, start, end, typ, pid, fh])
        inode.plocks = kept
        inode.wake_lock_waiters()

    async def _wait_lock_change(self, inode: Inode) -> None:
        # One event per inode, replaced after each change: a condition variable without
        # the lock (everything runs on one trio thread). Cancelled by FUSE_INTERRUPT.
        if inode.lock_changed is None:
            inode.lock_changed = trio.Event()
        await inode.lock_changed.wait()

    async def getlk(self, fh: int, owner: int, lock: tfu.Lock) -> tfu.Lock:
        inode = self._handle(fh).inode
        lk = self._conflict(inode, owner, lock.start, lock.end, lock.type)
        if lk is None:
            return tfu.Lock(lock.start, lock.end, fcntl.F_UNLCK, 0)
        return tfu.Lock(lk[1], lk[2], lk[3], lk[4])

    async def setlk(self, fh: int, owner: int, lock: tfu.Lock, wait: bool) -> None:
        inode = self._handle(fh).inode
        if lock.type != fcntl.F_UNLCK:
            while self._conflict(inode, owner, lock.start, lock.end, lock.type):
                if not wait:
                    raise tfu.FUSEError(errno.EAGAIN)
                await self._wait_lock_change(inode)
        self._set_plock(inode, owner, lock.start, lock.end, lock.type, lock.pid, fh)

    # ---- for tests -----------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Assert the counts are consistent (O(number of files): for tests only)."""
        links: dict[int, int] = {}
        reachable = 0
        for inode in self.inodes.values():
            assert inode.lookups >= 0 and inode.opens >= 0, inode.ino
            if inode.dir is not None and inode.nlink:
                reachable += 1
                subdirs = 0
                for child in inode.dir.entries.values():
                    links[child.ino] = links.get(child.ino, 0) + 1
                    subdirs += child.is_dir
                assert inode.nlink == 2 + subdirs, (inode.ino, inode.nlink, subdirs)
        for inode in self.inodes.values():
            if inode.dir is None:
                assert inode.nlink == links.get(inode.ino, 0), (inode.ino, inode.nlink)
            if not (inode.nlink or inode.lookups or inode.opens):
                assert inode.ino == tfu.ROOT_INODE, f"inode {inode.ino} should be freed"
        for inode in self.inodes.values():
            xattrs = inode.xattrs or {}
            assert inode.xattr_bytes == sum(_xattr_cost(k, v) for k, v in xattrs.items())
        assert self.used == sum(
            (i.data.allocated if i.data else 0) + i.xattr_bytes for i in self.inodes.values()
        ), "used"


# ---- command line ------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``4G``, ``512m``, ``100k`` or a plain number of bytes."""
    m = re.fullmatch(r"(\d+)([kmgtKMGT]?)[iI]?[bB]?", text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(m.group(1)) * _SIZE_SUFFIX[m.group(2).lower()]


def build_options(
    texts: Sequence[str], transport: str, debug: bool
) -> tuple[tfu.Options, dict[str, int]]:
    """``-o`` options: the framework's (see ``Options.parse``) plus memfs's own
    ``size=`` and ``nr_inodes=``. Raises OptionError."""
    options, own = tfu.Options.parse_with_own(
        texts, own={"size", "nr_inodes"}, fsname="memfs", subtype="memfs",
        transport=transport, debug=debug,
    )  # fmt: skip
    fs_args: dict[str, int] = {}
    try:
        if "size" in own:
            fs_args["capacity"] = parse_size(own["size"])
        if "nr_inodes" in own:
            fs_args["max_inodes"] = parse_size(own["nr_inodes"])
    except ValueError as exc:
        raise tfu.OptionError(f"bad value for a memfs option: {exc}") from None
    return options, fs_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--transport", choices=["auto", "uring", "devfuse"], default="auto")
    parser.add_argument("--debug", action="store_true", help="log every request and reply")
    parser.add_argument("--size", type=parse_size, help="data capacity, e.g. 4G (default 4G)")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options: allow_other, ro, fsname=, max_write=, size=, "
                        "nr_inodes=, ...; others are passed to mount(2)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        options, fs_args = build_options(args.options, args.transport, args.debug)
    except tfu.OptionError as exc:
        print(f"memfs: {exc}", file=sys.stderr)
        return 2
    if args.size is not None:
        fs_args["capacity"] = args.size
    try:
        stats = tfu.run(MemFS(**fs_args), args.mountpoint, options)
    except tfu.OptionError as exc:
        print(f"memfs: {exc}", file=sys.stderr)
        return 2
    except (tfu.UringUnavailable, OSError) as exc:  # MountError is an OSError
        print(f"memfs: {exc}", file=sys.stderr)
        return 1
    result = {"requests": stats.get("requests", {}), "errors": stats.get("errors", 0)}
    result.update({k: v for k, v in stats.items() if k not in result})
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
