"""The handler API: subclass :class:`Operations` and override what your filesystem does."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Sequence

from .._types import (
    DirEntry,
    DirListing,
    EntryAttributes,
    FileInfo,
    FileRange,
    FUSEError,
    InitInfo,
    Lock,
    RequestContext,
    SetattrFields,
    StatvfsData,
)


def _enosys() -> FUSEError:
    return FUSEError(errno.ENOSYS)


class Operations:
    """Base class of a filesystem: one ``async def`` per FUSE request.

    **Inodes.** The kernel names every file by an inode number (``int``). The root
    directory is inode 1 (``trio_fuse_uring.ROOT_INODE``). ``lookup(parent, name)`` tells
    the kernel which inode a name refers to, and the kernel then sends every further
    request for that file with the inode number alone.

    **Lookup counts and forget.** Each successful reply that returns an
    :class:`EntryAttributes` for an inode (``lookup``, ``mknod``, ``mkdir``, ``symlink``,
    ``link``, ``create``, ``tmpfile``, and each entry of a readdirplus reply) makes the
    kernel hold one more reference to that inode. ``forget`` gives references back. An
    inode must stay valid while the kernel holds references, even after its last name
    was removed (an unlinked file that is still open stays readable and writable).

    **Caching.** ``EntryAttributes.entry_timeout`` and ``attr_timeout`` say how long the
    kernel may cache a name and attributes without asking again (``None`` uses the mount's
    defaults from :class:`~trio_fuse_uring.Options`).

    **Errors.** Raise ``FUSEError(errno.X)`` to fail a request with errno X. Any other
    exception answers EIO and is logged with a traceback; a result of the wrong type
    answers EIO and the log names the handler and the type it must return. The
    filesystem keeps serving either way.

    **Concurrency.** Handlers are trio code and may await anything; many requests are in
    flight at once. A handler that finishes without awaiting anything runs inline,
    without a task of its own (the fast path). A handler that blocks gets a task of its
    own and can be interrupted: when the calling process gets a signal, the handler's
    cancel scope is cancelled and the caller sees EINTR.

    **Defaults.** A handler you do not override answers ENOSYS unless its docstring
    says otherwise; for many requests the kernel then stops asking and uses a fallback.

    **Never touch the mountpoint from the trio thread that serves it**: a blocking
    syscall there waits for a reply that thread would have to send. Use another thread
    (``trio.to_thread.run_sync``) or process.
    """

    # ---- lifecycle -------------------------------------------------------------------

    async def init(self, info: InitInfo) -> None:
        """Called once the kernel connection is set up, before any other request.

        Default: nothing.
        """

    async def destroy(self) -> None:
        """Called once, after the last request and the unmount, if :meth:`init` was called:
        however serving ended (an unmount, a cancelled scope around ``mount()``, a
        signal to ``run()``). It runs shielded from cancellation, so keep it short.

        Default: nothing.
        """

    # ---- names and inodes -----------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        """Look up ``name`` in directory ``parent_inode``; counts as one lookup.

        Raise ``FUSEError(errno.ENOENT)`` if it does not exist, or return attributes with
        ``st_ino=0`` to let the kernel cache the absence for ``entry_timeout`` seconds.
        The kernel also looks up ``.`` and ``..`` (for NFS export). Default: ENOSYS.
        """
        raise _enosys()

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """The kernel drops ``nlookup`` references to each ``(inode, nlookup)``.

        No reply is sent; exceptions are only logged. Default: nothing.
        """

    async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
        """Return the attributes of ``inode`` (``stat``); also answers ``statx``, which
        gets the creation time from ``EntryAttributes.st_birthtime_ns``. Default: ENOSYS."""
        raise _enosys()

    async def setattr(
        self, inode: int, attr: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        """Change attributes (chmod, chown, truncate, utimens) and return the new ones.

        ``fh`` is the open file's handle when the change came through one (ftruncate).
        Default: ENOSYS.
        """
        raise _enosys()

    async def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        """Return the target of symlink ``inode``. Default: ENOSYS."""
        raise _enosys()

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: RequestContext
    ) -> EntryAttributes:
        """Create symlink ``name`` → ``target``; counts as one lookup.

        The entry returned must be a symlink (``st_mode=stat.S_IFLNK | 0o777``) with a
        new inode number (not 0 or 1). Default: ENOSYS.
        """
        raise _enosys()

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: RequestContext
    ) -> EntryAttributes:
        """Create a file, fifo, socket or device node; counts as one lookup.

        ``mode`` is what the caller passed to ``mknod(2)``: the file type
        (``S_IFREG``, ``S_IFIFO``, ``S_IFSOCK``, ``S_IFCHR``, ``S_IFBLK``) and permission
        bits, without the umask applied: ``ctx.umask`` is the caller's umask (apply it
        yourself). The entry returned must have that file type. Default: ENOSYS.
        """
        raise _enosys()

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: RequestContext
    ) -> EntryAttributes:
        """Create a directory; counts as one lookup.

        ``mode`` holds only the permission bits the caller passed to ``mkdir(2)`` (no
        ``S_IFDIR``), without the umask applied: apply ``ctx.umask`` yourself. The entry
        returned must be a directory: ``st_mode=stat.S_IFDIR | (mode & ~ctx.umask)``
        (a reply of another type is answered EIO and logged). Default: ENOSYS.
        """
        raise _enosys()

    async def unlink(self, parent_inode: int, name: bytes, ctx: RequestContext) -> None:
        """Remove a non-directory name. Default: ENOSYS."""
        raise _enosys()

    async def rmdir(self, parent_inode: int, name: bytes, ctx: RequestContext) -> None:
        """Remove an empty directory. Default: ENOSYS."""
        raise _enosys()

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: RequestContext,
    ) -> None:
        """Rename, with ``flags`` 0 or any of ``RENAME_NOREPLACE``, ``RENAME_EXCHANGE``
        and ``RENAME_WHITEOUT`` (leave a whiteout, a character device 0/0, at the old
        name, as overlayfs asks of its upper layer; the kernel has checked CAP_MKNOD).

        Requests with other flags are answered EINVAL by the framework and never reach
        the handler; raise ``FUSEError(EINVAL)`` for flags you do not support.
        Default: ENOSYS.
        """
        raise _enosys()

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: RequestContext
    ) -> EntryAttributes:
        """Create hard link ``new_name`` to ``inode``; counts as one lookup. Default: ENOSYS."""
        raise _enosys()

    # ---- files ------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        """Open ``inode`` with ``os.open`` ``flags`` (O_CREAT/O_EXCL are handled by the kernel).

        Default: ENOSYS, and the framework tells the kernel that opens need no reply
        (``fh`` is then 0 in every later request).
        """
        raise _enosys()

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        """Create and open a regular file; counts as one lookup.

        ``mode`` includes ``S_IFREG`` and the permission bits of ``open(2)``, without the
        umask applied: apply ``ctx.umask`` yourself. The entry returned must be a
        regular file. Default: ENOSYS (the kernel falls back to ``mknod`` + ``open``).
        """
        raise _enosys()

    async def tmpfile(
        self, parent_inode: int, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        """Create and open an unnamed file in a directory (``O_TMPFILE``); one lookup.

        ``mode`` is as for :meth:`create` (``S_IFREG`` included, umask not applied).
        Default: ENOSYS (callers get EOPNOTSUPP).
        """
        raise _enosys()

    async def read(self, fh: int, off: int, size: int) -> bytes | FileRange:
        """Return up to ``size`` bytes at ``off``; fewer means end of file. Default: ENOSYS.

        Any buffer type works (bytes, bytearray, memoryview); returning more than ``size``
        bytes is an error (EIO). A :class:`FileRange` instead of the data makes the
        framework read the reply from a file descriptor itself (passthrough filesystems).
        """
        raise _enosys()

    async def read_into(self, fh: int, off: int, buf: memoryview) -> int | FileRange:
        """Opt-in zero-copy read: fill ``buf`` (``len(buf)`` bytes wanted) from ``off``
        and return how many bytes were written; fewer means end of file.

        Override this *instead of* :meth:`read` when the data can be produced straight
        into a buffer (``os.preadv(fd, [buf], off)``, ``buf[:n] = chunk``): over
        io-uring, ``buf`` is the kernel-shared reply buffer, so the copy that
        :meth:`read`'s return value costs is saved. ``buf`` is valid only while the
        handler runs. It may also return a :class:`FileRange` instead, leaving ``buf``
        alone, for the framework to read the reply from a file itself (passthrough
        filesystems: worth it for large reads). Default: not used (requests go to
        :meth:`read`).
        """
        raise _enosys()

    async def write(self, fh: int, off: int, buf: memoryview) -> int:
        """Write ``buf`` at ``off`` and return how many bytes were written.

        ``buf`` views the transport's buffer and is valid only until this handler
        returns: copy what you keep (``bytes(buf)``). Default: ENOSYS.
        """
        raise _enosys()

    async def flush(self, fh: int, lock_owner: int) -> None:
        """Called on each ``close()`` of a file descriptor.

        Default: ENOSYS; the kernel then stops sending FLUSH.
        """
        raise _enosys()

    async def release(self, fh: int) -> None:
        """The last file descriptor of an open file was closed. Default: nothing."""

    async def fsync(self, fh: int, datasync: bool) -> None:
        """Flush file data (and metadata unless ``datasync``).

        Default: ENOSYS; the kernel then treats every fsync as done.
        """
        raise _enosys()

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        """Allocate, punch holes or zero ranges (``FALLOC_FL_*`` in ``mode``).

        Default: ENOSYS (callers get EOPNOTSUPP).
        """
        raise _enosys()

    async def lseek(self, fh: int, offset: int, whence: int) -> int:
        """Answer ``SEEK_DATA``/``SEEK_HOLE`` (other whences are the kernel's job).

        Not called with the ``writeback_cache`` option: the kernel asks without first
        writing back the data it caches, so the answer could skip that data; the
        framework answers ENOSYS for you. Default: ENOSYS (the kernel treats the whole
        file as data).
        """
        raise _enosys()

    async def copy_file_range(
        self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int, flags: int
    ) -> int:
        """Copy ``length`` bytes between open files, return the count copied.

        Default: ENOSYS (the kernel falls back to read + write).
        """
        raise _enosys()

    # ---- directories ------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: RequestContext) -> int:
        """Open directory ``inode``, return a handle for ``readdir``. Default: handle 0."""
        return 0

    def readdir(
        self, fh: int, start_id: int, ctx: RequestContext
    ) -> AsyncIterator[DirEntry] | Awaitable[DirListing]:
        """Yield the entries of a directory, starting *after* the one whose
        ``next_id`` was ``start_id`` (0: from the beginning).

        Write it as an async generator. The framework stops iterating when the kernel's
        buffer is full and resumes later with the ``next_id`` of the last entry it kept.
        The value of the ``yield`` expression says what happened to the entry: ``True``
        if it went into a readdirplus reply and counts as one lookup (``.``/``..`` never
        do), ``False`` if it was accepted without one. Code after a ``yield`` only runs
        once the entry was accepted, so counting there is always correct::

            async def readdir(self, fh, start_id, ctx):
                for i, (name, ino) in enumerate(children[start_id:], start_id + 1):
                    if (yield DirEntry(name, self.attrs(ino), next_id=i)):
                        self.lookups[ino] += 1

        For large directories, make it a plain ``async def`` that returns a
        :class:`DirListing` (the whole directory, the same object for every
        ``start_id`` of a handle): the framework then encodes it once, in C, and cuts
        each reply from that, with no Python per entry (attributes for readdirplus come
        from ``DirListing.attr``).

        Default: ENOSYS.
        """
        raise _enosys()

    async def releasedir(self, fh: int) -> None:
        """The directory handle is closed. Default: nothing."""

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        """Flush directory contents. Default: ENOSYS (the kernel then treats it as done)."""
        raise _enosys()

    # ---- filesystem ---------------------------------------------------------------------

    async def statfs(self, ctx: RequestContext) -> StatvfsData:
        """Return filesystem statistics (``df``). Default: all zero, ``f_namemax`` 255."""
        return StatvfsData()

    async def access(self, inode: int, mode: int, ctx: RequestContext) -> None:
        """Check ``access(2)`` permission ``mode``; raise ``FUSEError(EACCES)`` to deny.

        Not called with the ``default_permissions`` option (the kernel checks). Default:
        ENOSYS, which the kernel takes as "always allowed".
        """
        raise _enosys()

    # ---- extended attributes ----------------------------------------------------------

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, flags: int, ctx: RequestContext
    ) -> None:
        """Set an extended attribute; ``flags`` may hold XATTR_CREATE / XATTR_REPLACE.

        Default: ENOSYS (the kernel stops asking; callers get EOPNOTSUPP).
        """
        raise _enosys()

    async def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        """Return the value (raise ``FUSEError(ENODATA)`` if unset).

        The framework answers the kernel's size probes and ERANGE. Default: ENOSYS.
        """
        raise _enosys()

    async def listxattr(self, inode: int, ctx: RequestContext) -> Sequence[bytes]:
        """Return the attribute names. Size probes and ERANGE are handled. Default: ENOSYS."""
        raise _enosys()

    async def removexattr(self, inode: int, name: bytes, ctx: RequestContext) -> None:
        """Remove an attribute (``FUSEError(ENODATA)`` if unset). Default: ENOSYS."""
        raise _enosys()

    # ---- locks ---------------------------------------------------------------------------

    async def getlk(self, fh: int, owner: int, lock: Lock) -> Lock:
        """Return a lock that conflicts with ``lock``, or one with type F_UNLCK.

        Override ``getlk`` and ``setlk`` together to get POSIX locks (fcntl) served by the
        filesystem; otherwise the kernel handles them locally. Default: ENOSYS.
        """
        raise _enosys()

    async def setlk(self, fh: int, owner: int, lock: Lock, wait: bool) -> None:
        """Acquire or release a POSIX lock; with ``wait`` block until it is granted.

        Raise ``FUSEError(EAGAIN)`` on conflict when not waiting. Default: ENOSYS.
        """
        raise _enosys()

    async def flock(self, fh: int, owner: int, operation: int, wait: bool) -> None:
        """BSD ``flock``: ``operation`` is fcntl.LOCK_SH, LOCK_EX or LOCK_UN.

        Override to have flock served by the filesystem (otherwise the kernel handles it
        locally). Default: ENOSYS.
        """
        raise _enosys()

    # ---- rarely needed -------------------------------------------------------------------

    async def poll(self, fh: int, events: int, kh: int | None) -> int:
        """Return ready ``select.POLL*`` events. ``kh`` is set when the kernel wants a
        wake-up later (``Mount.notify_poll_wakeup(kh)``). Default: ENOSYS (always ready).
        """
        raise _enosys()

    async def ioctl(
        self, fh: int, cmd: int, arg: int, data: bytes, out_size: int, flags: int
    ) -> tuple[int, bytes]:
        """Handle a restricted ioctl: return (result, output of up to ``out_size`` bytes).

        Default: ENOSYS (callers get ENOTTY).
        """
        raise _enosys()

    async def bmap(self, inode: int, blocksize: int, block: int) -> int:
        """Map a file block to a device block (block-device filesystems only). ENOSYS."""
        raise _enosys()

    async def syncfs(self) -> None:
        """``syncfs(2)`` on the mount. Default: ENOSYS (the kernel then treats it as done)."""
        raise _enosys()
