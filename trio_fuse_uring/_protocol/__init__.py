"""The FUSE protocol as pure functions over buffers (sans-I/O).

Nothing here does I/O or knows about trio, os or cffi. A transport hands over the raw
pieces of a request and gets typed :class:`Request` values back; handlers' results are
encoded into bytes that the transport writes.

On ``/dev/fuse`` a request is one contiguous buffer: ``fuse_in_header``, the op's fixed
argument struct, then the rest (names, write data, extensions). On the io-uring the
header, the op struct and the rest live in different places. So decoding takes the three
pieces (:func:`decode_request`); :func:`split_devfuse` cuts a ``/dev/fuse`` buffer into
them.

Every function documents its outcomes. Malformed input raises :class:`ProtocolError`;
any other exception escaping from this module is a bug.

The package is split by direction: ``_requests`` (the typed requests), ``_decode``
(bytes to requests, and :data:`OPCODES`, the one table of what each opcode is) and
``_encode`` (replies, listings and notifications to bytes).
"""

from ._decode import *  # noqa: F403
from ._encode import *  # noqa: F403
from ._requests import *  # noqa: F403
