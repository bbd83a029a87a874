"""trio-fuse-uring: Linux FUSE filesystems as async trio handlers.

Write a subclass of :class:`Operations`, then either call :func:`run` (one call, its own
trio loop) or use ``async with mount(ops, path) as m:`` inside any trio program. Requests
travel over FUSE-over-io-uring when the kernel allows it, else over /dev/fuse.

Implementation modules are private (``_name``); everything public is re-exported here.
"""

import contextlib

from ._abi import ROOT_ID as ROOT_INODE
from ._backing import BackingFiles as BackingFiles
from ._backing import BackingStats as BackingStats
from ._dirscan import scan_directory as scan_directory
from ._mountlib import MountError as MountError
from ._options import OptionError as OptionError
from ._options import Options as Options
from ._protocol import ProtocolError as ProtocolError
from ._session import Mount as Mount
from ._session import mount as mount
from ._session import run as run
from ._session import serve as serve
from ._types import MountStats as MountStats
from ._types import QueueStats as QueueStats
from ._types import RingStats as RingStats
from ._uring_support import UringUnavailable as UringUnavailable
from .ops import (
    DirEntry as DirEntry,
)
from .ops import (
    DirListing as DirListing,
)
from .ops import (
    EntryAttributes as EntryAttributes,
)
from .ops import (
    FileInfo as FileInfo,
)
from .ops import (
    FileRange as FileRange,
)
from .ops import (
    FUSEError as FUSEError,
)
from .ops import (
    InitInfo as InitInfo,
)
from .ops import (
    Lock as Lock,
)
from .ops import (
    Operations as Operations,
)
from .ops import (
    RequestContext as RequestContext,
)
from .ops import (
    SetattrFields as SetattrFields,
)
from .ops import (
    StatvfsData as StatvfsData,
)

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 (grouped by topic, like trio and httpcore)
    # running a filesystem
    "Mount",
    "MountStats",
    "BackingStats",
    "Options",
    "QueueStats",
    "RingStats",
    "mount",
    "run",
    "serve",
    # writing one
    "ROOT_INODE",
    "BackingFiles",
    "DirEntry",
    "DirListing",
    "scan_directory",
    "EntryAttributes",
    "FileInfo",
    "FileRange",
    "InitInfo",
    "Lock",
    "Operations",
    "RequestContext",
    "SetattrFields",
    "StatvfsData",
    # errors
    "FUSEError",
    "MountError",
    "OptionError",
    "ProtocolError",
    "UringUnavailable",
]


def _fixup_module_metadata() -> None:
    # Tracebacks and reprs say trio_fuse_uring.FUSEError, not ..._types.FUSEError.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("trio_fuse_uring."):
            with contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = "trio_fuse_uring"


_fixup_module_metadata()
del _fixup_module_metadata
