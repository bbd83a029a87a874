"""Mount from an asyncio program, with handlers written as asyncio coroutines.

::

    import asyncio
    import trio_fuse_uring as tfu
    import trio_fuse_uring.asyncio

    class Fs(tfu.Operations):
        async def getattr(self, inode, ctx):
            await asyncio.sleep(0)  # any asyncio code: locks, queues, clients
            ...

    async def main():
        async with trio_fuse_uring.asyncio.mount(Fs(), "/mnt/x") as m:
            await m_wait_forever_or_do_work()

    asyncio.run(main())

The transports run as trio code in trio's guest mode on the running asyncio loop (same
thread, no second event loop to manage). Each handler call runs as an asyncio task, so
handlers may await anything asyncio offers; a FUSE interrupt (the caller got a signal)
cancels that task (:class:`asyncio.CancelledError` inside the handler) and the caller
sees EINTR. The handlers' semantics are those of :class:`trio_fuse_uring.Operations`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._asyncio_bridge import asyncio_operations, run_trio_guest
from ._options import Options
from ._session import Mount
from ._session import mount as _trio_mount
from ._session import serve as _trio_serve
from .ops import Operations

__all__ = ["mount", "serve"]


@asynccontextmanager
async def mount(
    ops: Operations, mountpoint: str | os.PathLike[str], options: Options | None = None
) -> AsyncIterator[Mount]:
    """Mount ``ops`` at ``mountpoint`` inside a running asyncio loop.

    The asyncio counterpart of :func:`trio_fuse_uring.mount`: yields the
    :class:`~trio_fuse_uring.Mount` once the filesystem is usable and unmounts when
    the ``async with`` body ends, normally, by an exception or by cancellation
    (Ctrl-C under :func:`asyncio.run`). Handlers of ``ops`` are asyncio coroutines.
    The Mount's notification methods may be called from handlers and from other
    asyncio code of the loop's thread. To run until someone unmounts, use
    :func:`serve` (``Mount.wait_unmounted`` is trio code).

    Raises the same errors as :func:`trio_fuse_uring.mount`.
    """
    if not isinstance(ops, Operations):
        raise TypeError(f"ops must be a trio_fuse_uring.Operations, not {type(ops).__name__}")
    loop = asyncio.get_running_loop()
    proxy = asyncio_operations(ops, loop)
    ready: asyncio.Future[Mount] = loop.create_future()
    leave = trio.Event()
    tokens: list[trio.lowlevel.TrioToken] = []

    async def serve_in_trio() -> None:
        tokens.append(trio.lowlevel.current_trio_token())
        async with _trio_mount(proxy, mountpoint, options) as m:
            ready.set_result(m)
            async with trio.open_nursery() as nursery:
                # Ends when the body leaves or when someone else unmounts.
                async def unmounted() -> None:
                    await m.wait_unmounted()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(unmounted)
                await leave.wait()
                nursery.cancel_scope.cancel()

    guest = asyncio.ensure_future(run_trio_guest(serve_in_trio))
    try:
        either: set[asyncio.Future[Any]] = {guest, ready}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            guest.result()  # the mount failed: this raises why
            raise RuntimeError("serving ended before the filesystem was mounted")
        yield ready.result()
    finally:
        if tokens and not guest.done():
            tokens[0].run_sync_soon(leave.set)
        await _finish(guest)


async def _finish(guest: asyncio.Future[None]) -> None:
    """Wait for the trio side to unmount, even through repeated cancellation."""
    while not guest.done():
        try:
            await asyncio.shield(guest)
        except asyncio.CancelledError:
            continue
    if not guest.cancelled():
        guest.result()


async def serve(
    ops: Operations, mountpoint: str | os.PathLike[str], options: Options | None = None
) -> None:
    """Mount ``ops`` and serve until it is unmounted; cancel the task to unmount.

    The asyncio counterpart of :func:`trio_fuse_uring.serve`.
    """
    if not isinstance(ops, Operations):
        raise TypeError(f"ops must be a trio_fuse_uring.Operations, not {type(ops).__name__}")
    proxy = asyncio_operations(ops, asyncio.get_running_loop())
    await run_trio_guest(lambda: _trio_serve(proxy, mountpoint, options))
