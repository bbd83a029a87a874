"""pyfuse3's ``Operations``: the handler names and argument lists of pyfuse3 3.5.

A handler that is not overridden raises ``FUSEError(ENOSYS)`` (the kernel then stops
asking for most requests), except ``init`` and ``forget``, which do nothing.
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from collections.abc import Sequence
from os.path import basename
from typing import TYPE_CHECKING

from ._types import (
    EntryAttributes,
    FileHandleT,
    FileInfo,
    FileNameT,
    FlagT,
    FUSEError,
    InodeT,
    ModeT,
    ReaddirToken,
    RequestContext,
    SetattrFields,
    StatvfsData,
    XAttrNameT,
)

if TYPE_CHECKING:
    from ._api import PollHandle

log = logging.getLogger("pyfuse3")


class Operations:
    """Base class of a pyfuse3 filesystem: override the handlers it implements.

    Handler semantics are pyfuse3's (see its documentation, and the porting guide of
    trio-fuse-uring for the few differences). Class attributes: ``supports_dot_lookup``
    (the kernel may look up ``.`` and ``..``), ``enable_writeback_cache`` and
    ``enable_acl`` ask for the kernel features of those names.
    """

    supports_dot_lookup: bool = True
    enable_writeback_cache: bool = False
    enable_acl: bool = False

    def init(self) -> None:
        """Called once before the first request; must not raise."""

    async def lookup(
        self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext
    ) -> EntryAttributes:
        """Attributes of ``name`` in ``parent_inode`` (``.`` and ``..`` included)."""
        raise FUSEError(errno.ENOSYS)

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        """Drop ``nlookup`` lookups of each ``(inode, nlookup)``; must not raise."""

    async def getattr(self, inode: InodeT, ctx: RequestContext) -> EntryAttributes:
        """Attributes of ``inode``."""
        raise FUSEError(errno.ENOSYS)

    async def setattr(
        self,
        inode: InodeT,
        attr: EntryAttributes,
        fields: SetattrFields,
        fh: FileHandleT | None,
        ctx: RequestContext,
    ) -> EntryAttributes:
        """Change the attributes that ``fields`` flags to their values in ``attr``."""
        raise FUSEError(errno.ENOSYS)

    async def readlink(self, inode: InodeT, ctx: RequestContext) -> FileNameT:
        """Target of symlink ``inode``."""
        raise FUSEError(errno.ENOSYS)

    async def mknod(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, rdev: int, ctx: RequestContext
    ) -> EntryAttributes:
        """Create a file of the type in ``mode`` (umask already applied)."""
        raise FUSEError(errno.ENOSYS)

    async def mkdir(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, ctx: RequestContext
    ) -> EntryAttributes:
        """Create a directory; ``mode`` includes ``S_IFDIR`` (umask already applied)."""
        raise FUSEError(errno.ENOSYS)

    async def unlink(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> None:
        """Remove a non-directory entry."""
        raise FUSEError(errno.ENOSYS)

    async def rmdir(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> None:
        """Remove an empty directory."""
        raise FUSEError(errno.ENOSYS)

    async def symlink(
        self, parent_inode: InodeT, name: FileNameT, target: FileNameT, ctx: RequestContext
    ) -> EntryAttributes:
        """Create symlink ``name`` pointing to ``target``."""
        raise FUSEError(errno.ENOSYS)

    async def rename(
        self,
        parent_inode_old: InodeT,
        name_old: FileNameT,
        parent_inode_new: InodeT,
        name_new: FileNameT,
        flags: FlagT,
        ctx: RequestContext,
    ) -> None:
        """Rename; ``flags`` may be ``RENAME_EXCHANGE`` or ``RENAME_NOREPLACE``."""
        raise FUSEError(errno.ENOSYS)

    async def link(
        self, inode: InodeT, new_parent_inode: InodeT, new_name: FileNameT, ctx: RequestContext
    ) -> EntryAttributes:
        """Create hard link ``new_name`` to ``inode``."""
        raise FUSEError(errno.ENOSYS)

    async def open(self, inode: InodeT, flags: FlagT, ctx: RequestContext) -> FileInfo:
        """Open ``inode``; return a :class:`FileInfo` with the handle."""
        raise FUSEError(errno.ENOSYS)

    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``off`` (fewer only at end of file)."""
        raise FUSEError(errno.ENOSYS)

    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        """Write ``buf`` at ``off``; return the number of bytes written."""
        raise FUSEError(errno.ENOSYS)

    async def flush(self, fh: FileHandleT) -> None:
        """A file descriptor of ``fh`` was closed."""
        raise FUSEError(errno.ENOSYS)

    async def release(self, fh: FileHandleT) -> None:
        """The last file descriptor of ``fh`` was closed (errors are ignored)."""
        raise FUSEError(errno.ENOSYS)

    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        """Flush ``fh``'s data (and metadata unless ``datasync``)."""
        raise FUSEError(errno.ENOSYS)

    async def poll(
        self,
        inode: InodeT,
        fh: FileHandleT,
        poll_handle: PollHandle | None,
        ctx: RequestContext,
    ) -> int:
        """Ready ``select.POLL*`` events of ``fh``; keep ``poll_handle`` to notify later."""
        raise FUSEError(errno.ENOSYS)

    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        """Open directory ``inode``; return a handle for ``readdir``."""
        raise FUSEError(errno.ENOSYS)

    async def readdir(self, fh: FileHandleT, start_id: int, token: ReaddirToken) -> None:
        """Call :func:`readdir_reply` for each entry after ``start_id`` until it returns
        False; count one lookup for each entry it accepted (except ``.`` and ``..``)."""
        raise FUSEError(errno.ENOSYS)

    async def releasedir(self, fh: FileHandleT) -> None:
        """Directory handle ``fh`` is closed."""
        raise FUSEError(errno.ENOSYS)

    async def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        """Flush directory ``fh``."""
        raise FUSEError(errno.ENOSYS)

    async def statfs(self, ctx: RequestContext) -> StatvfsData:
        """Filesystem statistics."""
        raise FUSEError(errno.ENOSYS)

    def stacktrace(self) -> None:
        """Log the stack of every thread (setting the ``fuse_stacktrace`` xattr on the
        mountpoint calls this): a way to see where a hung filesystem waits."""
        lines = []
        for thread_id, frame in sys._current_frames().items():
            lines.append(f"\n# ThreadID: {thread_id}")
            for filename, lineno, name, line in traceback.extract_stack(frame):
                lines.append(f"{basename(filename)}:{lineno}, in {name}")
                if line:
                    lines.append(f"    {line.strip()}")
        log.error("\n".join(lines))

    async def setxattr(
        self, inode: InodeT, name: XAttrNameT, value: bytes, ctx: RequestContext
    ) -> None:
        """Set extended attribute ``name`` (XATTR_CREATE/REPLACE are checked for you)."""
        raise FUSEError(errno.ENOSYS)

    async def getxattr(self, inode: InodeT, name: XAttrNameT, ctx: RequestContext) -> bytes:
        """Value of extended attribute ``name``; raise ``FUSEError(ENOATTR)`` if unset."""
        raise FUSEError(errno.ENOSYS)

    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[XAttrNameT]:
        """Names of the extended attributes of ``inode``."""
        raise FUSEError(errno.ENOSYS)

    async def removexattr(self, inode: InodeT, name: XAttrNameT, ctx: RequestContext) -> None:
        """Remove extended attribute ``name``; ``FUSEError(ENOATTR)`` if unset."""
        raise FUSEError(errno.ENOSYS)

    async def access(self, inode: InodeT, mode: ModeT, ctx: RequestContext) -> bool:
        """True if the caller may access ``inode`` with ``mode`` (not called with the
        ``default_permissions`` option)."""
        raise FUSEError(errno.ENOSYS)

    async def create(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, flags: FlagT, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        """Create and open a file; ``mode`` includes ``S_IFREG`` (umask applied)."""
        raise FUSEError(errno.ENOSYS)
