"""fusepy and mfusepy filesystems, unmodified, on trio-fuse-uring's transports.

The API of fusepy 3.0 and mfusepy 3.1: ``FUSE(operations, mountpoint, foreground=...,
nothreads=..., **mount_options)``, ``Operations``, ``LoggingMixIn``, ``FuseOSError``,
``fuse_get_context``, ``fuse_exit``, the ``raw_fi`` and ``use_ns`` flags, ``ENOTSUP``.
Handlers stay synchronous and run in a bounded pool of worker threads (one with
``nothreads=True``), on top of :mod:`trio_fuse_uring.paths`.

Run a program written for fusepy or mfusepy without changing it::

    python -m trio_fuse_uring.compat.fusepy memory.py /mnt/memory

which makes ``import fuse`` and ``import mfusepy`` load this module. See
``docs/porting-fusepy.md``.
"""

from ._api import ENOATTR as ENOATTR
from ._api import ENOTSUP as ENOTSUP
from ._api import FuseOSError as FuseOSError
from ._api import LoggingMixIn as LoggingMixIn
from ._api import Operations as Operations
from ._api import ReadDirResult as ReadDirResult
from ._api import fuse_config as fuse_config
from ._api import fuse_conn_info as fuse_conn_info
from ._api import fuse_exit as fuse_exit
from ._api import fuse_file_info as fuse_file_info
from ._api import fuse_get_context as fuse_get_context
from ._api import fuse_version as fuse_version
from ._api import fuse_version_major as fuse_version_major
from ._api import fuse_version_minor as fuse_version_minor
from ._api import log_callback as log_callback
from ._api import overrides as overrides
from ._fuse import FUSE as FUSE

__all__ = [
    "ENOATTR",
    "ENOTSUP",
    "FUSE",
    "FuseOSError",
    "LoggingMixIn",
    "Operations",
    "ReadDirResult",
    "fuse_config",
    "fuse_conn_info",
    "fuse_exit",
    "fuse_file_info",
    "fuse_get_context",
    "fuse_version",
    "fuse_version_major",
    "fuse_version_minor",
    "log_callback",
    "overrides",
]
