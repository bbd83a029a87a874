"""The handler API: :class:`Operations` and the values handlers take and return."""

from .._types import (
    DirEntry as DirEntry,
)
from .._types import (
    DirListing as DirListing,
)
from .._types import (
    EntryAttributes as EntryAttributes,
)
from .._types import (
    FileInfo as FileInfo,
)
from .._types import (
    FileRange as FileRange,
)
from .._types import (
    FUSEError as FUSEError,
)
from .._types import (
    InitInfo as InitInfo,
)
from .._types import (
    Lock as Lock,
)
from .._types import (
    RequestContext as RequestContext,
)
from .._types import (
    SetattrFields as SetattrFields,
)
from .._types import (
    StatvfsData as StatvfsData,
)
from ._operations import Operations as Operations

__all__ = [
    "DirEntry",
    "DirListing",
    "EntryAttributes",
    "FUSEError",
    "FileInfo",
    "FileRange",
    "InitInfo",
    "Lock",
    "Operations",
    "RequestContext",
    "SetattrFields",
    "StatvfsData",
]
