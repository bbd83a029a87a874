"""Mounting a path filesystem: :func:`mount`, :func:`serve`, :func:`run`, :class:`PathMount`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._options import Options
from .._session import Mount
from .._session import mount as _mount_inodes
from .._session import run as _run_inodes
from .._types import MountStats
from ._adapter import PathAdapter, adapter_for
from ._operations import Operations


class PathMount:
    """A mounted path filesystem, as yielded by :func:`mount`: the inode-level
    :class:`~trio_fuse_uring.Mount` (``.inodes``) plus notifications by path."""

    def __init__(self, inodes: Mount, adapter: PathAdapter) -> None:
        self.inodes = inodes
        self._adapter = adapter

    def __repr__(self) -> str:
        return f"<trio_fuse_uring.paths.PathMount of {self.inodes!r}>"

    @property
    def mountpoint(self) -> str:
        return self.inodes.mountpoint

    @property
    def transport(self) -> str:
        return self.inodes.transport

    @property
    def transport_reason(self) -> str:
        return self.inodes.transport_reason

    def stats(self) -> dict[str, Any]:
        """The inode mount's counters (:class:`~trio_fuse_uring.MountStats`) plus
        ``nodes``: how many nodes the path table holds."""
        return {**self.inodes.stats(), "nodes": len(self._adapter.table)}

    async def wait_unmounted(self) -> None:
        await self.inodes.wait_unmounted()

    def invalidate_path(
        self, path: str, offset: int = 0, length: int = 0, *, attr_only: bool = False
    ) -> bool:
        """Drop the kernel's cached attributes (and data in [offset, offset+length),
        ``length`` 0: to the end) of ``path``. Returns False if the kernel has no node
        for it (then it caches nothing of it). Never blocks."""
        node = self._adapter.table.find(path)
        if node is None:
            return False
        self.inodes.invalidate_inode(node.id, offset, length, attr_only=attr_only)
        return True

    def invalidate_entry(self, path: str, *, expire_only: bool = False) -> bool:
        """Drop the kernel's cached lookup of ``path``'s last component (after changing
        the tree behind the kernel's back). Returns False if its directory is unknown."""
        parent_path, _, name = path.rstrip("/").rpartition("/")
        parent = self._adapter.table.find(parent_path or "/")
        if parent is None or not name:
            return False
        self.inodes.invalidate_entry(parent.id, os.fsencode(name), expire_only=expire_only)
        return True


@asynccontextmanager
async def mount(
    ops: Operations, mountpoint: str | os.PathLike[str], options: Options | None = None
) -> AsyncIterator[PathMount]:
    """Mount the path filesystem ``ops`` and serve it while the ``async with`` body runs.

    Everything :func:`trio_fuse_uring.mount` says holds (transports, options, errors,
    clean-up); this yields a :class:`PathMount`.
    """
    adapter = adapter_for(ops)
    async with _mount_inodes(adapter, mountpoint, options) as m:
        yield PathMount(m, adapter)


async def serve(
    ops: Operations,
    mountpoint: str | os.PathLike[str],
    options: Options | None = None,
    *,
    task_status: trio.TaskStatus[PathMount] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Mount and serve until unmounted; for ``await nursery.start(serve, ops, path)``."""
    async with mount(ops, mountpoint, options) as m:
        task_status.started(m)
        await m.wait_unmounted()


def run(
    ops: Operations, mountpoint: str | os.PathLike[str], options: Options | None = None
) -> MountStats:
    """Mount, serve until SIGINT, SIGTERM or an unmount, clean up; returns the stats."""
    return _run_inodes(adapter_for(ops), mountpoint, options)
