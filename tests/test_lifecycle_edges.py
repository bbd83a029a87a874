"""Leaving a mount in awkward states: busy for a moment, or covered by another mount."""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess

import pytest
import trio
from helpers import client

import trio_fuse_uring as tfu
from trio_fuse_uring import _mountlib

ROOT = tfu.ROOT_INODE


class OneFileFS(tfu.Operations):
    def attr(self, ino: int) -> tfu.EntryAttributes:
        if ino == ROOT:
            return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return tfu.EntryAttributes(st_ino=ino, st_mode=stat.S_IFREG | 0o644)

    async def lookup(self, parent_inode, name, ctx):
        if name == b"f":
            return self.attr(2)
        raise tfu.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx):
        return self.attr(inode)


async def test_mount_busy_for_a_moment_is_unmounted_not_aborted(tmp_path, transport, caplog):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    closed: list[float] = []

    async def close_soon(fd: int) -> None:
        await trio.sleep(0.3)
        await client(os.close, fd)
        closed.append(trio.current_time())

    with caplog.at_level(logging.INFO, logger="trio_fuse_uring"):
        async with trio.open_nursery() as nursery:
            async with tfu.mount(OneFileFS(), mnt, tfu.Options(transport=transport)):
                fd = await client(os.open, mnt / "f", os.O_RDONLY)
                nursery.start_soon(close_soon, fd)
            left = trio.current_time()
    assert closed and closed[0] <= left  # the unmount waited for the close
    assert "is busy" not in caplog.text  # not detached, not aborted
    assert not _mountlib.is_mountpoint(str(mnt))


async def test_mount_covered_by_another_is_aborted_and_the_other_left_alone(tmp_path, transport):
    """The kernel refuses to unmount a mount that has another on top (EBUSY), and a lazy
    unmount would take the one on top with it; so ours is aborted (its users get
    ENOTCONN), the mount on top keeps working, and leaving does not wait."""
    if os.geteuid() != 0:
        pytest.skip("stacking a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        with trio.fail_after(10):  # leaving is prompt: nothing waits for UNMOUNT_TIMEOUT
            async with tfu.mount(OneFileFS(), mnt, tfu.Options(transport=transport)) as m:
                conn = m._s.handle.conn
                cmd = ["mount", "-t", "tmpfs", "cover", str(mnt)]
                await trio.run_process(cmd)
                (mnt / "mine").write_text("still here")
        assert (mnt / "mine").read_text() == "still here"  # the tmpfs on top is intact
    finally:
        subprocess.run(["umount", str(mnt)], check=False)  # the tmpfs
    # Ours was below it all along, and it is dead (aborted), not hanging its users.
    try:
        assert _mountlib.connection_id(str(mnt)) == conn
        assert _mountlib.is_dead(str(mnt))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
