"""Path-based filesystems: handlers named by path, like libfuse's high-level API.

Subclass :class:`Operations` (``async def getattr(path, fh)``, ``read(path, size,
offset, fh)``...) and serve it with :func:`run`, :func:`mount` or :func:`serve`. The
layer keeps the table of kernel nodes and their paths (lookups, forgets, renames of open
files and directories, unlinks of open files) on top of the inode API of
:mod:`trio_fuse_uring`, on either transport.
"""

from ._adapter import request_context as request_context
from ._mount import PathMount as PathMount
from ._mount import mount as mount
from ._mount import run as run
from ._mount import serve as serve
from ._operations import DirItem as DirItem
from ._operations import Operations as Operations

__all__ = ["DirItem", "Operations", "PathMount", "mount", "request_context", "run", "serve"]


def _fixup_module_metadata() -> None:
    # Reprs and tracebacks say trio_fuse_uring.paths.Operations, not ..._operations.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("trio_fuse_uring.paths."):
            obj.__module__ = "trio_fuse_uring.paths"


_fixup_module_metadata()
del _fixup_module_metadata
