"""Kernel features newer than io-uring itself, through the real kernel on both transports:
cache notifications (epoch, prune)."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import pytest
import trio
from conftest import client

import trio_fuse_uring as tfu
from trio_fuse_uring import _protocol as P
from trio_fuse_uring._abi import FUSE_NOTIFY_PRUNE_OUT, NotifyCode

ROOT = tfu.ROOT_INODE
#: Names and attributes stay cached this long unless a notification drops them.
CACHED = 300.0


class CountingFS(tfu.Operations):
    """Files ``a`` (inode 2) and ``b`` (inode 3), cached for 300 s; counts LOOKUPs."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[bytes] = []

    def attr(self, ino: int) -> tfu.EntryAttributes:
        if ino == ROOT:
            return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return tfu.EntryAttributes(
            st_ino=ino, st_mode=stat.S_IFREG | 0o644, entry_timeout=CACHED, attr_timeout=CACHED
        )

    async def lookup(self, parent_inode, name, ctx):
        self.lookups.append(name)
        if parent_inode == ROOT and name in (b"a", b"b"):
            return self.attr(2 if name == b"a" else 3)
        raise tfu.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx):
        return self.attr(inode)


async def _settle(m: tfu.Mount) -> None:
    notifier = m._s.notifier
    with trio.fail_after(10):
        while notifier.sent < notifier.queued:
            await trio.sleep(0.005)


async def _stat_all(m: tfu.Mount) -> None:
    for name in ("a", "b"):
        await client(os.stat, Path(m.mountpoint, name))


async def test_invalidate_all_entries_makes_every_name_looked_up_again(mount_ops):
    ops = CountingFS()
    m = await mount_ops(ops)
    await _stat_all(m)
    await _stat_all(m)
    assert sorted(ops.lookups) == [b"a", b"b"]  # cached: looked up once each
    m.invalidate_all_entries()
    await _settle(m)
    await _stat_all(m)
    assert sorted(ops.lookups) == [b"a", b"a", b"b", b"b"]
    await _stat_all(m)  # the new epoch's lookups are cached again
    assert len(ops.lookups) == 4


async def test_prune_inodes_drops_only_their_names(mount_ops, caplog):
    ops = CountingFS()
    m = await mount_ops(ops)
    await _stat_all(m)
    await _stat_all(m)
    assert sorted(ops.lookups) == [b"a", b"b"]
    with caplog.at_level(logging.WARNING, logger="trio_fuse_uring"):
        m.prune_inodes([2])
        await _settle(m)
    if "does not support FUSE_NOTIFY_PRUNE" in caplog.text:
        pytest.skip("this kernel lacks FUSE_NOTIFY_PRUNE (Linux 6.18+)")
    await _stat_all(m)
    assert sorted(ops.lookups) == [b"a", b"a", b"b"]  # b's name is still cached
    # Unknown inodes and an empty list are no error.
    m.prune_inodes([])
    m.prune_inodes([999_999])
    await _settle(m)
    assert "prune" not in caplog.text


def test_prune_message_layout():
    msg = P.notify_prune([5, 1 << 63])
    length, code, unique = tfu._abi.FUSE_OUT_HEADER.unpack_from(msg)
    assert (length, code, unique) == (len(msg), NotifyCode.PRUNE, 0)
    count, _pad, _spare = FUSE_NOTIFY_PRUNE_OUT.unpack_from(msg, 16)
    assert count == 2
    assert msg[16 + FUSE_NOTIFY_PRUNE_OUT.size :] == (5).to_bytes(8, "little") + (1 << 63).to_bytes(
        8, "little"
    )
    assert P.notify_inc_epoch() == tfu._abi.FUSE_OUT_HEADER.pack(16, NotifyCode.INC_EPOCH, 0)


GiB = 1 << 30


class HugeFS(tfu.Operations):
    """``src`` and ``dst`` of 8 GiB each (no data); copy_file_range claims every byte."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[int] = []

    def attr(self, ino: int) -> tfu.EntryAttributes:
        if ino == ROOT:
            return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return tfu.EntryAttributes(st_ino=ino, st_mode=stat.S_IFREG | 0o666, st_size=8 * GiB)

    async def lookup(self, parent_inode, name, ctx):
        if name in (b"src", b"dst"):
            return self.attr(2 if name == b"src" else 3)
        raise tfu.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx):
        return self.attr(inode)

    async def open(self, inode, flags, ctx):
        return tfu.FileInfo(fh=inode)

    async def copy_file_range(self, fh_in, off_in, fh_out, off_out, length, flags):
        self.copies.append(length)
        return length


def _copy(src: Path, dst: Path, length: int) -> int:
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY)
    try:
        return os.copy_file_range(fin, fout, length, 0, 0)
    finally:
        os.close(fin)
        os.close(fout)


async def test_copy_file_range_of_4_gib_and_more_in_one_request(mount_ops):
    # With the 32-bit COPY_FILE_RANGE the kernel caps one copy below 4 GiB; a result of
    # 5 GiB in one call can only have come back through COPY_FILE_RANGE_64.
    ops = HugeFS()
    m = await mount_ops(ops)
    src, dst = Path(m.mountpoint, "src"), Path(m.mountpoint, "dst")
    assert await client(_copy, src, dst, 5 * GiB) == 5 * GiB
    assert ops.copies == [5 * GiB]
