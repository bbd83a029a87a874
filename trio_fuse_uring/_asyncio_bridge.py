"""Serving from an asyncio program: trio as a guest on the running asyncio loop.

The transports, the dispatcher and :func:`mount` are trio code. Inside an asyncio
program they run in trio's *guest mode* (:func:`trio.lowlevel.start_guest_run`): trio
steps on the asyncio loop's thread, between asyncio callbacks, and blocks for I/O in a
helper thread of its own. Handlers written for asyncio cannot be awaited by trio (they
yield asyncio futures), so each call runs as an asyncio task, and the trio task that
serves the request waits for that task; a FUSE interrupt (trio cancellation) cancels
the asyncio task, so the handler sees :class:`asyncio.CancelledError` where it awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import outcome
import trio

from .ops import FUSEError, Operations

T = TypeVar("T")


async def await_in_asyncio(loop: asyncio.AbstractEventLoop, aw: Awaitable[T]) -> T:
    """From trio (a guest on ``loop``), run ``aw`` as an asyncio task and return its result.

    Cancelling the trio caller cancels the task and waits for it to end.
    """
    coro: Coroutine[Any, Any, T] = aw if inspect.iscoroutine(aw) else _as_coroutine(aw)
    task = loop.create_task(coro)
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # trio ended first
            token.run_sync_soon(done.set)

    task.add_done_callback(wake)
    try:
        await done.wait()
    except trio.Cancelled:
        task.cancel()
        with trio.CancelScope(shield=True):
            await done.wait()
        raise
    if task.cancelled():
        # The handler was cancelled by asyncio code of its own, not by an interrupt.
        raise FUSEError(errno.EINTR)
    return task.result()


async def _as_coroutine(aw: Awaitable[T]) -> T:
    return await aw


_GENERATOR_HANDLERS = frozenset({"readdir"})
_HANDLERS = tuple(
    name
    for name, fn in vars(Operations).items()
    if inspect.iscoroutinefunction(fn) or name in _GENERATOR_HANDLERS
)


def asyncio_operations(ops: Operations, loop: asyncio.AbstractEventLoop) -> Operations:
    """An :class:`Operations` whose handlers run ``ops``'s asyncio handlers as tasks.

    Only the handlers ``ops``'s class overrides are wrapped; the rest keep the base
    class's defaults, so capability detection (which handlers exist) is unchanged.
    """
    cls = type(ops)
    namespace: dict[str, Any] = {"__slots__": ("_ops", "_loop")}
    for name in _HANDLERS:
        if getattr(cls, name, None) is getattr(Operations, name):
            continue
        if name in _GENERATOR_HANDLERS and inspect.isasyncgenfunction(getattr(cls, name)):
            namespace[name] = _generator_handler(name)
        else:
            namespace[name] = _coroutine_handler(name)
    proxy_cls = type(f"Asyncio{cls.__name__}", (_AsyncioProxy,), namespace)
    proxy: _AsyncioProxy = proxy_cls()
    proxy._ops = ops
    proxy._loop = loop
    return proxy


class _AsyncioProxy(Operations):
    _ops: Operations
    _loop: asyncio.AbstractEventLoop


def _coroutine_handler(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def handler(self: _AsyncioProxy, *args: Any) -> Any:
        return await await_in_asyncio(self._loop, getattr(self._ops, name)(*args))

    handler.__name__ = handler.__qualname__ = name
    return handler


def _generator_handler(name: str) -> Callable[..., AsyncIterator[Any]]:
    async def handler(self: _AsyncioProxy, *args: Any) -> AsyncGenerator[Any, Any]:
        agen = getattr(self._ops, name)(*args)
        if not hasattr(agen, "asend"):
            yield await await_in_asyncio(self._loop, agen)  # not a generator: let it fail
            return
        try:
            item = await await_in_asyncio(self._loop, agen.__anext__())
            while True:
                accepted = yield item
                item = await await_in_asyncio(self._loop, agen.asend(accepted))
        except StopAsyncIteration:
            return
        finally:
            with trio.CancelScope(shield=True):
                await await_in_asyncio(self._loop, agen.aclose())

    handler.__name__ = handler.__qualname__ = name
    return handler


async def run_trio_guest(async_fn: Callable[[], Awaitable[T]]) -> T:
    """Run trio ``async_fn`` as a guest of the running asyncio loop and return its result.

    Cancelling the awaiting asyncio task cancels ``async_fn`` (which then cleans up,
    e.g. unmounts) and re-raises :class:`asyncio.CancelledError` once it has ended.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[outcome.Outcome[T]] = loop.create_future()
    scope = trio.CancelScope()
    token: list[trio.lowlevel.TrioToken] = []

    async def guest() -> T:
        token.append(trio.lowlevel.current_trio_token())
        with scope:
            return await async_fn()
        # Cancelled from asyncio: the awaiting task re-raises its CancelledError.
        raise RuntimeError("cancelled by the asyncio task that ran it")

    def done(result: outcome.Outcome[T]) -> None:
        if not finished.done():
            finished.set_result(result)

    trio.lowlevel.start_guest_run(
        guest,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        done_callback=done,
        host_uses_signal_set_wakeup_fd=True,
    )
    try:
        result = await asyncio.shield(finished)
    except asyncio.CancelledError:
        if token:
            token[0].run_sync_soon(scope.cancel)
        else:
            loop.call_soon(scope.cancel)
        await _wait_uncancellable(finished)
        raise
    return result.unwrap()


async def _wait_uncancellable(fut: asyncio.Future[Any]) -> None:
    """Wait for ``fut`` even if this task is cancelled again meanwhile (a second Ctrl-C)."""
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            continue
