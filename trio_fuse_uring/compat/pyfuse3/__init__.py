"""pyfuse3's API, served by trio-fuse-uring: run pyfuse3 filesystems unchanged.

Either import this module under pyfuse3's name, or run a pyfuse3 program as is::

    python -m trio_fuse_uring.compat.pyfuse3 tmpfs.py /mnt/tmp

Names, signatures and semantics are those of pyfuse3 3.5 (see docs/porting-pyfuse3.md
for the few differences). Requests travel over FUSE-over-io-uring when the kernel
allows it, else over /dev/fuse; ``TRIO_FUSE_URING_TRANSPORT=devfuse`` (or ``uring``)
forces one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._api import PollHandle as PollHandle
from ._api import close as close
from ._api import default_options as default_options
from ._api import init as init
from ._api import invalidate_entry as invalidate_entry
from ._api import invalidate_entry_async as invalidate_entry_async
from ._api import invalidate_inode as invalidate_inode
from ._api import main as main
from ._api import notify_store as notify_store
from ._api import readdir_reply as readdir_reply
from ._api import terminate as terminate
from ._operations import Operations as Operations
from ._types import _NANOS_PER_SEC as _NANOS_PER_SEC
from ._types import ENOATTR as ENOATTR
from ._types import RENAME_EXCHANGE as RENAME_EXCHANGE
from ._types import RENAME_NOREPLACE as RENAME_NOREPLACE
from ._types import ROOT_INODE as ROOT_INODE
from ._types import EntryAttributes as EntryAttributes
from ._types import FileHandleT as FileHandleT
from ._types import FileInfo as FileInfo
from ._types import FileNameT as FileNameT
from ._types import FlagT as FlagT
from ._types import FUSEError as FUSEError
from ._types import InodeT as InodeT
from ._types import ModeT as ModeT
from ._types import ReaddirToken as ReaddirToken
from ._types import RequestContext as RequestContext
from ._types import SetattrFields as SetattrFields
from ._types import StatvfsData as StatvfsData
from ._types import XAttrNameT as XAttrNameT
from ._util import get_sup_groups as get_sup_groups
from ._util import getxattr as getxattr
from ._util import listdir as listdir
from ._util import setxattr as setxattr
from ._util import syncfs as syncfs

if TYPE_CHECKING:
    import trio

#: The trio token of the loop running :func:`main` (None when it is not running).
trio_token: trio.lowlevel.TrioToken | None = None

#: The pyfuse3 version whose API this module provides.
__version__ = "3.5.0"

__all__ = [
    "ENOATTR",
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "ROOT_INODE",
    "EntryAttributes",
    "FUSEError",
    "FileHandleT",
    "FileInfo",
    "FileNameT",
    "FlagT",
    "InodeT",
    "ModeT",
    "Operations",
    "PollHandle",
    "ReaddirToken",
    "RequestContext",
    "SetattrFields",
    "StatvfsData",
    "XAttrNameT",
    "close",
    "default_options",
    "get_sup_groups",
    "getxattr",
    "init",
    "invalidate_entry",
    "invalidate_entry_async",
    "invalidate_inode",
    "listdir",
    "main",
    "notify_store",
    "readdir_reply",
    "setxattr",
    "syncfs",
    "terminate",
    "trio_token",
]
