"""pyfuse3's module-level functions: one filesystem per process, as in pyfuse3.

``init()`` records what to mount, ``main()`` mounts and serves it (over io-uring when
the kernel offers it), ``terminate()`` ends ``main()``, ``close()`` cleans up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import trio

import trio_fuse_uring as _tfu

from ..._asyncio_bridge import asyncio_operations, run_trio_guest
from ._adapter import Pyfuse3Adapter
from ._types import EntryAttributes, FileNameT, InodeT, ReaddirToken

if TYPE_CHECKING:
    from ._operations import Operations

log = logging.getLogger("pyfuse3")

#: The options pyfuse3 recommends as a base: the kernel checks permissions.
default_options: frozenset[str] = frozenset(("default_permissions",))

#: Environment variable choosing the transport: ``auto`` (default), ``uring``, ``devfuse``.
TRANSPORT_ENV = "TRIO_FUSE_URING_TRANSPORT"

# readdir_reply() accepts at most this many entries per readdir request: more than a
# reply buffer of the kernel holds (see _adapter.Pyfuse3Adapter.readdir).
_READDIR_BATCH = 1024


class _State:
    adapter: Pyfuse3Adapter | None = None
    mountpoint: str | None = None
    options: _tfu.Options | None = None
    mount: _tfu.Mount | None = None
    scope: trio.CancelScope | None = None
    asyncio_mode: bool = False


_state = _State()


def _module() -> Any:
    return sys.modules[__name__.rpartition(".")[0]]


def init(ops: Operations, mountpoint: str, options: Iterable[str] = default_options) -> None:
    """Prepare to mount ``ops`` at ``mountpoint`` with libfuse-style ``options``.

    The mount itself happens when :func:`main` starts (pyfuse3 mounts here). Options
    are ``-o`` names such as ``default_permissions``, ``allow_other``, ``fsname=x``,
    ``debug``; the environment variable ``TRIO_FUSE_URING_TRANSPORT`` may force
    ``uring`` or ``devfuse``.
    """
    if not isinstance(mountpoint, str):
        raise TypeError("*mountpoint_* argument must be of type str")
    if _state.adapter is not None:
        raise RuntimeError("init() was already called; call close() first")
    transport = os.environ.get(TRANSPORT_ENV, "auto") or "auto"
    opts = _tfu.Options.parse(
        sorted(options),
        fsname="pyfuse3",
        default_permissions=False,
        writeback_cache=bool(getattr(ops, "enable_writeback_cache", False)),
        posix_acl=bool(getattr(ops, "enable_acl", False)),
        transport=transport,
    )
    _state.adapter = Pyfuse3Adapter(ops)
    _state.mountpoint = os.path.abspath(mountpoint)
    _state.options = opts
    log.debug("initialized pyfuse3 shim for %s", _state.mountpoint)


async def main(min_tasks: int = 1, max_tasks: int = 99) -> None:
    """Mount and serve until unmounted or :func:`terminate` is called.

    ``min_tasks``/``max_tasks`` are accepted for compatibility; trio-fuse-uring
    starts a task only for a handler that blocks, with no upper bound.
    """
    if _state.adapter is None:
        raise RuntimeError("Need to call init() before main()")
    _adapter().trio_mode = not _state.asyncio_mode
    if _state.asyncio_mode:
        loop = asyncio.get_running_loop()
        await run_trio_guest(lambda: _serve(asyncio_operations(_adapter(), loop)))
    else:
        await _serve(_adapter())


def _adapter() -> Pyfuse3Adapter:
    assert _state.adapter is not None
    return _state.adapter


async def _serve(ops: _tfu.Operations) -> None:
    assert _state.mountpoint is not None
    module = _module()
    module.trio_token = trio.lowlevel.current_trio_token()
    try:
        with trio.CancelScope() as scope:
            _state.scope = scope
            async with _tfu.mount(ops, _state.mountpoint, _state.options) as m:
                _state.mount = m
                _adapter().mount = m
                await m.wait_unmounted()
    finally:
        _state.scope = None
        _state.mount = None
        _adapter().mount = None
        module.trio_token = None


def terminate() -> None:
    """End :func:`main` (it unmounts on its way out).

    Call it from a handler or other code of the trio thread; from other threads use
    ``trio.from_thread.run_sync(pyfuse3.terminate, trio_token=pyfuse3.trio_token)``.
    """
    if _state.scope is not None:
        _state.scope.cancel()


def close(unmount: bool = True) -> None:
    """Clean up after :func:`main`, so that :func:`init` may be called again.

    :func:`main` already unmounted on its way out, whatever ``unmount`` says.
    """
    _state.adapter = None
    _state.mountpoint = None
    _state.options = None


def _current_mount() -> _tfu.Mount:
    m = _state.mount
    if m is None:
        raise RuntimeError("no filesystem is being served: call this while main() runs")
    return m


def _on_trio_thread(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` now if this is the serving thread, else soon on it."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        token = _module().trio_token
        if token is None:
            raise RuntimeError("no filesystem is being served") from None
        token.run_sync_soon(lambda: fn(*args))
    else:
        fn(*args)


def invalidate_inode(inode: InodeT, attr_only: bool = False) -> None:
    """Drop the kernel's cached attributes (and data, unless ``attr_only``) of ``inode``.

    Queued and sent without blocking, so it is safe inside handlers.
    """
    m = _current_mount()
    _on_trio_thread(lambda: m.invalidate_inode(inode, attr_only=attr_only))
    _adapter().notified = True


def invalidate_entry(inode_p: InodeT, name: FileNameT, deleted: InodeT = 0) -> None:
    """Drop the kernel's cached lookup of ``name`` in ``inode_p``; with ``deleted`` (the
    entry's inode) also tell inotify watchers that it was deleted. Never blocks."""
    m = _current_mount()
    if deleted:
        _on_trio_thread(lambda: m.notify_delete(inode_p, deleted, name))
    else:
        _on_trio_thread(lambda: m.invalidate_entry(inode_p, name))


def invalidate_entry_async(
    inode_p: InodeT, name: FileNameT, deleted: InodeT = 0, ignore_enoent: bool = False
) -> None:
    """Same as :func:`invalidate_entry` (which never blocks here either)."""
    invalidate_entry(inode_p, name, deleted)


def notify_store(inode: InodeT, offset: int, data: bytes) -> None:
    """Put ``data`` into the kernel's page cache of ``inode`` at ``offset``."""
    m = _current_mount()
    _on_trio_thread(lambda: m.notify_store(inode, offset, bytes(data)))
    _adapter().notified = True


def readdir_reply(
    token: ReaddirToken, name: FileNameT, attr: EntryAttributes, next_id: int
) -> bool:
    """Report one directory entry from ``readdir``. Returns False once the reply is full:
    then stop, and count no lookup for this entry."""
    if token.full or len(token.entries) >= _READDIR_BATCH:
        token.full = True
        return False
    token.entries.append((name, attr, next_id))
    return True


class PollHandle:
    """Given to ``Operations.poll``: :meth:`notify` wakes the pollers of that file."""

    __slots__ = ("_adapter", "_kh")
    _adapter: Pyfuse3Adapter
    _kh: int

    def __init__(self) -> None:
        raise TypeError("PollHandle cannot be instantiated directly")

    @classmethod
    def _create(cls, adapter: Pyfuse3Adapter, kh: int) -> PollHandle:
        self = object.__new__(cls)
        self._adapter = adapter
        self._kh = kh
        return self

    def __getstate__(self) -> None:
        from pickle import PicklingError

        raise PicklingError("PollHandle instances can't be pickled")

    def notify(self) -> None:
        """Wake processes waiting in poll/select/epoll on the file; use once."""
        m = self._adapter.mount
        if m is None:
            raise RuntimeError("PollHandle is no longer valid")
        _on_trio_thread(m.notify_poll_wakeup, self._kh)
