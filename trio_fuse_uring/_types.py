"""Typed values that handlers receive and return.

These are plain data (no I/O). Names follow pyfuse3 (``st_mode``, ``entry_timeout``...) so
its users feel at home; timestamps are integer nanoseconds, as in ``os.stat_result``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from ._backing import BackingFiles, BackingStats


class FUSEError(Exception):
    """Raise from a handler to answer the request with an errno.

    ``raise FUSEError(errno.ENOENT)`` makes the caller's syscall fail with ENOENT. Any other
    exception from a handler answers EIO and is logged with its traceback; the filesystem
    keeps serving.
    """

    __slots__ = ("errno",)

    def __init__(self, errno_: int) -> None:
        if not 0 < errno_ < 512:
            raise ValueError(f"FUSEError needs an errno between 1 and 511, not {errno_!r}")
        super().__init__(errno_)
        self.errno = errno_

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, "?")
        return f"{name}: {os.strerror(self.errno)}"


@dataclass(slots=True)
class RequestContext:
    """Who is asking: the calling process's ids as the kernel saw them.

    ``umask`` is set for create-like requests (create, mkdir, mknod, tmpfile) and 0 otherwise.
    ``pid`` is 0 for requests the kernel makes on its own (writeback, release after close).
    """

    uid: int
    gid: int
    pid: int
    umask: int = 0


@dataclass(slots=True)
class EntryAttributes:
    """Attributes of an inode, plus how long the kernel may cache them.

    Returned by ``lookup``, ``getattr``, ``setattr``, ``mknod``, ``mkdir``, ``symlink``,
    ``link``, ``create`` and yielded (inside :class:`DirEntry`) by ``readdir``.

    ``st_ino`` is the inode number the kernel uses in every later request for this inode.
    ``generation`` must change if an inode number is reused for another file (NFS export).
    ``entry_timeout`` is how long (seconds) the kernel may cache the *name → inode*
    mapping; ``attr_timeout`` how long it may cache the attributes. 0 sends every access
    to the filesystem. ``None`` (the default) uses the mount's
    ``Options.entry_timeout`` / ``Options.attr_timeout``.

    ``nodeid``, when not 0, is the number the kernel names the inode by in later
    requests, while ``st_ino`` is only what ``stat`` shows: for layers that keep their
    own node numbers but report the filesystem's inode numbers (the path layer's
    ``use_ino``). 0 (the default): ``st_ino`` is both.
    """

    st_ino: int = 0
    generation: int = 0
    entry_timeout: float | None = None
    attr_timeout: float | None = None
    st_mode: int = stat.S_IFREG | 0o644
    st_nlink: int = 1
    st_uid: int = 0
    st_gid: int = 0
    st_rdev: int = 0
    st_size: int = 0
    st_blksize: int = 4096
    st_blocks: int = 0
    st_atime_ns: int = 0
    st_mtime_ns: int = 0
    st_ctime_ns: int = 0
    #: Creation time, for ``statx`` (STATX_BTIME); None: the filesystem does not keep it.
    st_birthtime_ns: int | None = None
    nodeid: int = 0

    def __post_init__(self) -> None:
        if not stat.S_IFMT(self.st_mode):
            raise ValueError(
                f"st_mode {self.st_mode:#o} has no file type bits: use e.g. stat.S_IFREG | 0o644"
            )
        for t in (self.entry_timeout, self.attr_timeout):
            if t is not None and not t >= 0:  # rejects NaN too
                raise ValueError("entry_timeout and attr_timeout must be >= 0 (or None)")


@dataclass(slots=True)
class SetattrFields:
    """Which attributes a ``setattr`` request changes.

    A field is ``None`` when the request leaves it alone. ``atime_now``/``mtime_now`` mean
    "set to the current time" (``touch`` without a timestamp); then ``st_atime_ns`` /
    ``st_mtime_ns`` are None. ``kill_suidgid`` asks the filesystem to clear the set-user-ID
    and set-group-ID bits (a write or truncate by an unprivileged user).
    """

    st_mode: int | None = None
    st_uid: int | None = None
    st_gid: int | None = None
    st_size: int | None = None
    st_atime_ns: int | None = None
    st_mtime_ns: int | None = None
    st_ctime_ns: int | None = None
    atime_now: bool = False
    mtime_now: bool = False
    kill_suidgid: bool = False


@dataclass(frozen=True, slots=True)
class FileRange:
    """A read reply taken straight from a file: return ``FileRange(fd, offset)`` from
    :meth:`Operations.read` instead of the data, as libfuse's ``fuse_reply_data`` takes
    a buffer that names a file descriptor.

    The framework reads up to the request's size (at most ``size``) from ``fd`` at
    ``offset`` itself, with ``pread`` in C and the GIL released, into the transport's
    reply buffer: one copy, no bytes object. Over io-uring the read is done by the
    queue thread of the caller's CPU when it is free (so it runs beside the trio
    thread, and the kernel's copy to the caller finds the data in that CPU's cache),
    else right away. A read error becomes the reply's error.

    ``fd`` must stay open until the reply is sent: the handle of an open file does (the
    kernel releases a file only after its reads are answered). The read blocks the
    thread doing it, like a handler that calls ``os.pread``: use it for files that read
    fast (page cache, local disks), not for network filesystems.
    """

    fd: int
    offset: int
    size: int | None = None


@dataclass(slots=True)
class FileInfo:
    """What ``open``, ``create`` and ``opendir`` return.

    ``fh`` is an arbitrary integer handed back in every request on this open file.
    ``direct_io`` bypasses the page cache (reads and writes of any size go straight to the
    handler); ``keep_cache`` keeps cached data from earlier opens; ``nonseekable`` makes
    lseek fail with ESPIPE. ``cache_dir`` lets the kernel cache a directory's entries.

    ``backing_fd`` (``open``/``create`` only) names a file that holds this open file's
    data: READ and WRITE on the handle are then answered from it by the framework, in C,
    without calling ``read``/``write`` (docs/backing-files.md); with kernel passthrough
    (``Options(passthrough=True)``) by the kernel itself. The framework keeps its own
    duplicate of the fd until ``release``, so the handler may close its fd at once.
    ``fh`` must then identify this open file alone.
    """

    fh: int = 0
    direct_io: bool = False
    keep_cache: bool = False
    nonseekable: bool = False
    cache_dir: bool = False
    parallel_direct_writes: bool = False
    noflush: bool = False
    backing_fd: int | None = None


@dataclass(slots=True)
class StatvfsData:
    """What ``statfs`` returns (the fields of ``os.statvfs_result`` that FUSE carries)."""

    f_bsize: int = 4096
    f_frsize: int = 4096
    f_blocks: int = 0
    f_bfree: int = 0
    f_bavail: int = 0
    f_files: int = 0
    f_ffree: int = 0
    f_favail: int = 0
    f_namemax: int = 255


@dataclass(slots=True)
class DirEntry:
    """One directory entry, yielded by ``readdir``.

    ``next_id`` is the cookie the kernel sends back (as ``start_id``) to continue *after*
    this entry; it must be unique within the directory and must not be 0.
    ``attr`` gives at least ``st_ino`` and the file type bits of ``st_mode``. With
    readdirplus (the default), the kernel caches ``attr`` like a lookup result, and every
    entry except ``.`` and ``..`` counts as one lookup (balanced later by ``forget``).

    Attributes can cost a syscall per entry, and the kernel asks for them only in
    readdirplus calls (with the default READDIRPLUS_AUTO, typically the first call of a
    listing; ``ls`` without ``-l`` gets the rest plain). So ``attr`` may instead be a
    function returning the attributes, called only when they are wanted; give ``ino``
    and ``mode`` (at least the file type bits) for the plain calls. If the function
    raises ``FUSEError``, the entry is listed without attributes and counts no lookup.
    """

    name: bytes
    attr: EntryAttributes | Callable[[], EntryAttributes]
    next_id: int
    ino: int = 0
    mode: int = 0


@dataclass(slots=True, eq=False)
class DirListing:
    """A whole directory (or its rest), returned by ``readdir`` at once.

    ``readdir`` may be a plain ``async def`` that returns a ``DirListing`` instead of an
    async generator of :class:`DirEntry`. Entry ``i`` is ``names[i]`` with inode number
    ``inos[i]`` and file type ``modes[i]`` (the ``S_IFMT`` bits of ``st_mode``; 0 if
    unknown); its cookie is ``i + 1``, so ``start_id`` is an index into the lists: keep
    one listing per directory handle (a snapshot, as a directory stream is) and return
    it for every ``start_id``. Plain READDIR replies are cut from an encoding of the
    whole listing made once, in C; a large directory costs no Python per entry.

    READDIRPLUS (the kernel asks in a listing's first call) wants attributes: with
    ``attr``, ``attr(i)`` gives entry ``i``'s, and is called only for an entry that
    fits in the reply, so each call that returns attributes lists the entry with them,
    which counts as one lookup of its inode (balanced by ``forget``; not for ``.`` and
    ``..``). Raise ``FUSEError`` from it to list the entry without attributes (no
    lookup). Without ``attr``, readdirplus entries carry no attributes either.
    Names must be non-empty bytes without ``/`` or NUL.
    """

    names: Sequence[bytes]
    inos: Sequence[int]
    modes: Sequence[int]
    attr: Callable[[int], EntryAttributes] | None = None
    #: The encoded listing (plain and readdirplus forms), made on first use.
    _encoded: dict[bool, tuple[bytes, Sequence[int]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.inos) == len(self.modes):
            raise ValueError(
                f"DirListing needs as many inos ({len(self.inos)}) and modes "
                f"({len(self.modes)}) as names ({len(self.names)})"
            )


@dataclass(slots=True)
class Lock:
    """A POSIX byte-range lock (``fcntl`` F_GETLK/F_SETLK): ``end`` is inclusive."""

    start: int
    end: int
    type: int  # fcntl.F_RDLCK, F_WRLCK or F_UNLCK
    pid: int


@dataclass(slots=True)
class InitInfo:
    """What the kernel offered at mount time (passed to ``Operations.init``).

    ``capabilities`` names the INIT flags agreed on (``"POSIX_ACL"``...).
    ``mount_flags`` are the generic mount flags the kernel applied, as
    ``/proc/self/mountinfo`` shows them: ``ro``, ``nosuid``, ``nodev``, ``noexec``,
    ``sync``, ``dirsync``, ``nodiratime``, and one of ``noatime``, ``relatime`` or
    ``strictatime``. The kernel leaves access times of FUSE files to the filesystem:
    one that keeps them should follow these.
    """

    major: int
    minor: int
    max_readahead: int
    kernel_flags: int
    transport: str = ""
    capabilities: frozenset[str] = field(default_factory=frozenset)
    mount_flags: frozenset[str] = field(default_factory=frozenset)
    #: The mount's backing files: attach, replace or detach them from any handler.
    backing: BackingFiles | None = None


class QueueStats(TypedDict):
    """Counters of one io-uring queue (one per CPU), in :class:`RingStats`."""

    qid: int
    cpu: int
    requests: int
    batches: int
    mean_batch: float
    errors: int
    #: Times the queue thread slept, and wake-ups it sent to the trio thread.
    sleeps: int
    wakeups_sent: int
    #: Entries registered now (it grows while handlers wait).
    entries: int
    kicks: int
    #: ``FileRange`` replies copied by the queue thread and by the trio thread.
    file_reads: dict[Literal["queue_thread", "trio"], int]
    #: READs and WRITEs the queue thread answered from backing files itself.
    backing: dict[Literal["reads", "writes"], int]


class RingStats(TypedDict):
    """Counters of the io-uring transport, in :class:`MountStats`."""

    requests: int
    batches: int
    mean_batch: float
    queues: list[QueueStats]
    #: How queue threads wake trio: ``"eventfd"`` or ``"token"``.
    handoff: str
    #: Why the kernel refused the ring (requests then went over /dev/fuse), or None.
    failed: str | None


class MountStats(TypedDict):
    """What :meth:`Mount.stats` and :func:`run` return."""

    #: ``"uring"`` or ``"devfuse"``.
    transport: str
    #: Requests served, per transport (``"uring"``, ``"devfuse"``).
    requests: dict[str, int]
    #: Requests answered with an error, and handlers that failed (raised or returned
    #: the wrong type; answered EIO).
    errors: int
    handler_failures: int
    #: Of those, replies the kernel would have refused (an entry of the wrong file type,
    #: inode 0 for a new entry...): answered EIO, and the log says what was wrong.
    invalid_replies: int
    interrupted: int
    blocked_handlers: int
    #: Handlers cancelled and answered ETIMEDOUT before the kernel's request deadline
    #: (``Options.request_timeout``).
    timed_out: int
    notifications: int
    devfuse_wakeups: NotRequired[int]
    ring: NotRequired[RingStats]
    backing: BackingStats
