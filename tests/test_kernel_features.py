"""Kernel features newer than io-uring itself, through the real kernel on both transports:
cache notifications (epoch, prune), 64-bit copy_file_range, synchronous INIT; and the
mountpoint argument's types."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import pytest
import trio
from helpers import client, no_ring_threads, open_fds

import trio_fuse_uring as tfu
from trio_fuse_uring import _mountlib
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


# ---- synchronous INIT (FUSE_DEV_IOC_SYNC_INIT, Linux 6.18) ---------------------------------


class WatchInitFS(CountingFS):
    """Records, during INIT, whether the mount was already visible in mountinfo."""

    def __init__(self, path: Path, fail: bool = False) -> None:
        super().__init__()
        self.path = path
        self.fail = fail
        self.visible_during_init: bool | None = None

    async def init(self, info):
        self.visible_during_init = _mountlib.is_mountpoint(str(self.path))
        if self.fail:
            raise RuntimeError("init refuses")


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("synchronous INIT is used for mount(2) as root (fusermount3 opens the fd)")


def _sync_init_available() -> bool:
    fd = _mountlib.open_for_sync_init()
    if fd is None:
        return False
    os.close(fd)
    return True


async def test_sync_init_mount_is_invisible_until_init_is_answered(tmp_path, transport):
    _needs_root()
    if not _sync_init_available():
        pytest.skip("this kernel lacks FUSE_DEV_IOC_SYNC_INIT (Linux 6.18+)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    ops = WatchInitFS(mnt)
    async with tfu.mount(ops, mnt, tfu.Options(transport=transport)) as m:
        assert m.synchronous_init and m.transport == transport
        assert ops.visible_during_init is False
        assert _mountlib.is_mountpoint(str(mnt))
        await client(os.stat, mnt / "a")
        assert m._s.handle.conn == _mountlib.connection_id(str(mnt))
    assert not _mountlib.is_mountpoint(str(mnt))


async def test_without_sync_init_the_mount_is_visible_during_init(tmp_path, transport, monkeypatch):
    # A kernel without the ioctl (ENOTTY): mount(2) returns before INIT, as before 6.18.
    monkeypatch.setattr(_mountlib, "open_for_sync_init", lambda: None)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    ops = WatchInitFS(mnt)
    async with tfu.mount(ops, mnt, tfu.Options(transport=transport)) as m:
        assert not m.synchronous_init
        assert ops.visible_during_init is True
        await client(os.stat, mnt / "a")


async def test_init_failing_under_sync_init_leaves_nothing(tmp_path, transport):
    _needs_root()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fds = open_fds()
    with trio.fail_after(20), pytest.raises(RuntimeError, match="init refuses"):
        async with tfu.mount(WatchInitFS(mnt, fail=True), mnt, tfu.Options(transport=transport)):
            pytest.fail("mounted although init() raised")
    assert not _mountlib.is_mountpoint(str(mnt))
    await no_ring_threads()
    assert open_fds() <= fds


async def test_mount_error_under_sync_init_is_raised_and_leaks_nothing(tmp_path):
    fds = open_fds()
    with trio.fail_after(20), pytest.raises(tfu.MountError) as info:
        async with tfu.mount(CountingFS(), tmp_path / "missing"):
            pytest.fail("mounted on a missing directory")
    assert info.value.errno == errno.ENOENT
    assert open_fds() <= fds


# ---- mountpoint types -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bytes", "pathlike-bytes", "pathlike-str"])
async def test_mountpoint_may_be_bytes_or_pathlike(tmp_path, kind):
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    class BytesPath:
        def __fspath__(self) -> bytes:
            return os.fsencode(mnt)

    arg = {"bytes": os.fsencode(mnt), "pathlike-bytes": BytesPath(), "pathlike-str": mnt}[kind]
    async with tfu.mount(CountingFS(), arg) as m:  # type: ignore[arg-type]
        assert m.mountpoint == str(mnt)
        await client(os.stat, mnt / "a")


async def test_mountpoint_of_another_type_is_a_clear_type_error():
    with pytest.raises(
        TypeError, match=r"mountpoint must be a path \(str, bytes or os.PathLike\), not int"
    ):
        async with tfu.mount(CountingFS(), 3):  # type: ignore[arg-type]
            pass
