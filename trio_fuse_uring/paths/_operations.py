"""The path handler API: subclass :class:`Operations` and override what your filesystem does."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Iterable, Sequence

from ..ops import EntryAttributes, FileInfo, FileRange, FUSEError, InitInfo, Lock, StatvfsData

#: What ``readdir`` yields: a name, or a name with its attributes.
DirItem = str | tuple[str, EntryAttributes]


def _enosys() -> FUSEError:
    return FUSEError(errno.ENOSYS)


class Operations:
    """Base class of a path-based filesystem: one ``async def`` per operation, named by path.

    This is the high-level API, as libfuse's ``struct fuse_operations`` is to its
    low-level API: handlers get absolute paths inside the filesystem (``"/"``,
    ``"/dir/file"``), and the layer underneath keeps the table of which kernel node
    stands for which path, follows renames, counts lookups and forgets.

    **Paths** are ``str`` decoded with :func:`os.fsdecode` (undecodable bytes survive as
    surrogates, so ``os.fsencode(path)`` gives the kernel's bytes back).

    **File handles.** ``open``, ``create`` and ``opendir`` return an ``int`` handle of
    your choice (or a :class:`~trio_fuse_uring.FileInfo` to set cache flags too); every
    later operation on that open file gets it as ``fh``.

    **Unlinking an open file.** By default, as libfuse does, an ``unlink`` (or a
    ``rename`` over it) of a file that is still open becomes a ``rename`` to a hidden
    name ``.fuse_hidden…`` in the same directory, left out of directory listings, and
    the file is really unlinked at its last ``release``; until then every operation on
    the open file gets that hidden path. Set :attr:`hard_remove` to unlink at once:
    operations on the still-open file then get ``path=None`` (the ``nullpath_ok``
    contract: your handlers must work from ``fh`` alone).

    **Errors.** Raise ``FUSEError(errno.X)`` (or ``OSError`` with an errno, e.g. from an
    ``os`` call) to fail with errno X. Any other exception answers EIO and is logged.

    **Defaults.** An operation you do not override answers ENOSYS; for many the kernel
    then uses its own fallback (``create`` → ``mknod`` + ``open``, locks kept locally).

    **Who is asking**: :func:`request_context` inside a handler.
    """

    #: Report the ``st_ino`` your ``getattr`` returns to ``stat`` (libfuse's
    #: ``use_ino``); otherwise ``stat`` shows the layer's node numbers.
    use_ino: bool = False
    #: In plain directory listings, give names the kernel already knows their node
    #: number as inode number (libfuse's ``readdir_ino``); otherwise "unknown".
    readdir_ino: bool = False
    #: Unlink open files at once instead of hiding them until the last release; later
    #: operations on them get ``path=None``.
    hard_remove: bool = False

    # ---- lifecycle -------------------------------------------------------------------

    async def init(self, info: InitInfo) -> None:
        """Called once the kernel connection is set up, before any other request."""

    async def destroy(self) -> None:
        """Called once after the last request and the unmount (shielded: keep it short)."""

    # ---- attributes and names --------------------------------------------------------

    async def getattr(self, path: str | None, fh: int | None) -> EntryAttributes:
        """Return the attributes of ``path`` (``lstat``). ``st_ino`` is used only with
        :attr:`use_ino`. Raise ``FUSEError(ENOENT)`` if it does not exist.

        The layer sets ``st_ino`` (to its node number, unless :attr:`use_ino`) and
        ``nodeid`` on the object you return before it is sent.

        This is also how the layer resolves names, so it must be implemented.
        """
        raise _enosys()

    async def readlink(self, path: str) -> str | bytes:
        """Return the target of symlink ``path``."""
        raise _enosys()

    async def mknod(self, path: str, mode: int, rdev: int) -> None:
        """Create a file node (``mode`` has the type bits; the umask is applied already)."""
        raise _enosys()

    async def mkdir(self, path: str, mode: int) -> None:
        """Create a directory (the umask is applied to ``mode`` already)."""
        raise _enosys()

    async def unlink(self, path: str) -> None:
        """Remove a non-directory name."""
        raise _enosys()

    async def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        raise _enosys()

    async def symlink(self, path: str, target: str) -> None:
        """Create a symbolic link at ``path`` whose content is ``target``."""
        raise _enosys()

    async def rename(self, old: str, new: str, flags: int) -> None:
        """Rename ``old`` to ``new``; ``flags`` is 0, ``RENAME_NOREPLACE`` (1) or
        ``RENAME_EXCHANGE`` (2)."""
        raise _enosys()

    async def link(self, path: str, new_path: str) -> None:
        """Create ``new_path`` as a hard link to ``path``."""
        raise _enosys()

    async def chmod(self, path: str | None, mode: int, fh: int | None) -> None:
        """Change the permission bits (``fh`` set when done through an open file)."""
        raise _enosys()

    async def chown(self, path: str | None, uid: int, gid: int, fh: int | None) -> None:
        """Change owner and group; -1 leaves one unchanged."""
        raise _enosys()

    async def truncate(self, path: str | None, size: int, fh: int | None) -> None:
        """Set the file size (``fh`` set for ``ftruncate``)."""
        raise _enosys()

    async def utimens(
        self, path: str | None, atime_ns: int | None, mtime_ns: int | None, fh: int | None
    ) -> None:
        """Set access and modification times in nanoseconds; None leaves one unchanged
        ("now" arrives as the current time)."""
        raise _enosys()

    # ---- files -----------------------------------------------------------------------

    async def open(self, path: str, flags: int) -> int | FileInfo:
        """Open ``path`` with ``os.open`` ``flags``; return a handle. Default: handle 0."""
        return 0

    async def create(self, path: str, mode: int, flags: int) -> int | FileInfo:
        """Create and open a regular file (umask applied to ``mode``); return a handle.

        Default: ENOSYS (the kernel then uses ``mknod`` and ``open``).
        """
        raise _enosys()

    async def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes | FileRange:
        """Return up to ``size`` bytes at ``offset`` (fewer: end of file), or a
        :class:`~trio_fuse_uring.FileRange` to have the framework read them from a file."""
        raise _enosys()

    async def write(self, path: str | None, data: memoryview, offset: int, fh: int) -> int:
        """Write ``data`` at ``offset``, return the count written. ``data`` is valid only
        until the handler returns: copy what you keep."""
        raise _enosys()

    async def flush(self, path: str | None, fh: int) -> None:
        """Called on each ``close()`` of a file descriptor. Default: nothing."""

    async def release(self, path: str | None, fh: int) -> None:
        """The last file descriptor of an open file was closed. Default: nothing."""

    async def fsync(self, path: str | None, datasync: bool, fh: int) -> None:
        """Flush file data (and metadata unless ``datasync``). Default: nothing."""

    async def fallocate(
        self, path: str | None, mode: int, offset: int, length: int, fh: int
    ) -> None:
        """Allocate, punch holes or zero ranges (``FALLOC_FL_*`` in ``mode``)."""
        raise _enosys()

    async def lseek(self, path: str | None, offset: int, whence: int, fh: int) -> int:
        """Answer ``SEEK_DATA``/``SEEK_HOLE``. Default: ENOSYS (all data, no holes)."""
        raise _enosys()

    async def copy_file_range(
        self,
        path_in: str | None,
        fh_in: int,
        offset_in: int,
        path_out: str | None,
        fh_out: int,
        offset_out: int,
        length: int,
        flags: int,
    ) -> int:
        """Copy between open files; return the count copied. Default: ENOSYS (the
        kernel reads and writes instead)."""
        raise _enosys()

    async def lock(self, path: str | None, fh: int, owner: int, cmd: int, lock: Lock) -> Lock:
        """POSIX locks: ``cmd`` is ``fcntl.F_GETLK`` (return a conflicting lock or one of
        type F_UNLCK), ``F_SETLK`` or ``F_SETLKW`` (wait; return ``lock``). Default:
        ENOSYS (the kernel keeps locks locally)."""
        raise _enosys()

    async def flock(self, path: str | None, fh: int, owner: int, operation: int) -> None:
        """BSD locks: ``operation`` is ``LOCK_SH``, ``LOCK_EX`` or ``LOCK_UN``, with
        ``LOCK_NB`` when the caller does not wait. Default: ENOSYS (kept locally)."""
        raise _enosys()

    async def ioctl(
        self, path: str | None, cmd: int, arg: int, data: bytes, out_size: int, flags: int, fh: int
    ) -> tuple[int, bytes]:
        """A restricted ioctl: return (result, up to ``out_size`` bytes). Default:
        ENOSYS (callers get ENOTTY)."""
        raise _enosys()

    # ---- directories -----------------------------------------------------------------

    async def opendir(self, path: str) -> int:
        """Open a directory; return a handle for ``readdir``. Default: handle 0."""
        return 0

    def readdir(self, path: str | None, fh: int) -> AsyncIterator[DirItem] | Iterable[DirItem]:
        """The entries of a directory: names, or ``(name, EntryAttributes)`` pairs.

        Write it as an async generator (or an ``async def`` returning a list). ``.``
        and ``..`` may be included or not. Attributes save the kernel a ``getattr``
        per name after listing with ``ls -l``. Default: ENOSYS.
        """
        raise _enosys()

    async def releasedir(self, path: str | None, fh: int) -> None:
        """The directory handle is closed. Default: nothing."""

    async def fsyncdir(self, path: str | None, datasync: bool, fh: int) -> None:
        """Flush directory contents. Default: nothing."""

    # ---- filesystem ------------------------------------------------------------------

    async def statfs(self, path: str) -> StatvfsData:
        """Filesystem statistics (``df``). Default: all zero, ``f_namemax`` 255."""
        return StatvfsData()

    async def access(self, path: str, mode: int) -> None:
        """Check ``access(2)`` permission ``mode``; raise ``FUSEError(EACCES)`` to deny.
        Not called with the ``default_permissions`` option. Default: allowed."""

    async def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        """Set an extended attribute (``flags``: XATTR_CREATE / XATTR_REPLACE)."""
        raise _enosys()

    async def getxattr(self, path: str, name: str) -> bytes:
        """Return an attribute's value (``FUSEError(ENODATA)`` if unset)."""
        raise _enosys()

    async def listxattr(self, path: str) -> Sequence[str]:
        """Return the attribute names."""
        raise _enosys()

    async def removexattr(self, path: str, name: str) -> None:
        """Remove an attribute (``FUSEError(ENODATA)`` if unset)."""
        raise _enosys()
