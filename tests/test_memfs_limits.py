"""memfs under requests meant to exhaust it: one huge copy, endless extended attributes.

Answers are compared with tmpfs's on this kernel (see docs/reliability.md, section 4).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import trio
from helpers import client
from memfs import COPY_MAX, XATTR_INODE_MAX, MemFS
from test_memfs import mount_memfs

import trio_fuse_uring as tfu

CTX = tfu.RequestContext(uid=0, gid=0, pid=0)


def _copy(mnt: Path, length: int) -> tuple[int, int]:
    """A sparse source of 2**62 bytes; one copy_file_range of ``length`` bytes."""
    with open(mnt / "huge", "wb") as f:
        f.truncate(1 << 62)
        f.seek(1 << 20)
        f.write(b"data in the middle")
    fin = os.open(mnt / "huge", os.O_RDONLY)
    fout = os.open(mnt / "copy", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        n = os.copy_file_range(fin, fout, length, 0, 0)
    finally:
        os.close(fin)
        os.close(fout)
    return n, os.stat(mnt / "copy").st_size


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:  # closed here: an unclosed file is a ResourceWarning
        return f.read(size)


async def test_one_copy_file_range_is_capped_like_tmpfs(mount_ops):
    """Before the cap, a copy of 2**62 bytes never ended and stopped the daemon."""
    fs, mnt = await mount_memfs(mount_ops)
    n, size = await client(_copy, mnt, 1 << 62, timeout=120)
    assert n == size == COPY_MAX == 2147479552  # what tmpfs copies per call
    head = await client(_read_head, mnt / "copy", 1 << 21)
    assert head[1 << 20 :].startswith(b"data in the middle")
    assert (
        await client(os.stat, mnt / "copy")
    ).st_blocks <= 256  # holes stay holes (one 64 KiB chunk copied)
    fs.check_invariants()


async def test_a_long_copy_lets_other_requests_run():
    """The handler yields between steps: another task runs while one copy goes on."""
    fs = MemFS()
    root = tfu.ROOT_INODE
    fi, _ = await fs.create(root, b"src", 0o644, os.O_RDWR, CTX)
    fo, _ = await fs.create(root, b"dst", 0o644, os.O_RDWR, CTX)
    await fs.write(fi.fh, 0, memoryview(b"x" * (8 << 20)))
    ran_during_copy = 0
    copying = True

    async def other() -> None:
        nonlocal ran_during_copy
        while copying:
            ran_during_copy += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()
        start = ran_during_copy
        assert await fs.copy_file_range(fi.fh, 0, fo.fh, 0, 8 << 20, 0) == 8 << 20
        copying = False
    assert ran_during_copy - start >= 4  # 128 steps of 64 KiB, a checkpoint every 16
    fs.check_invariants()


def _fill_xattrs(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"set": 0}
    value = b"v" * 65536
    try:
        while out["set"] < 100:
            os.setxattr(path, f"user.a{out['set']}", value)
            out["set"] += 1
    except OSError as exc:
        out["error"] = exc.errno
    try:
        os.setxattr(path, "user.too_big", b"v" * 65537)
    except OSError as exc:
        out["too_big"] = exc.errno
    out["listed"] = len(os.listxattr(path))
    return out


async def test_xattrs_are_bounded_per_inode_and_charged_to_the_size(mount_ops):
    """Before: 10,000 values of 64 KiB on one file were kept, uncounted by df."""
    fs, mnt = await mount_memfs(mount_ops, capacity=64 << 20)
    f = mnt / "f"
    await client(f.write_bytes, b"")
    free_before = (await client(os.statvfs, mnt)).f_bfree
    got = await client(_fill_xattrs, f)
    per_inode = XATTR_INODE_MAX // (65536 + len("user.aNN") + 32)
    assert got == {
        "set": per_inode, "error": errno.ENOSPC, "too_big": errno.E2BIG, "listed": per_inode,
    }  # fmt: skip
    used = (free_before - (await client(os.statvfs, mnt)).f_bfree) * 4096
    assert per_inode * 65536 <= used <= XATTR_INODE_MAX + 4096
    fs.check_invariants()
    # Freed with the file.
    await client(os.unlink, f)
    assert (await client(os.statvfs, mnt)).f_bfree == free_before
    fs.check_invariants()


def _fill_files(mnt: Path) -> tuple[int, int]:
    made = 0
    try:
        for i in range(100):
            p = mnt / f"f{i}"
            p.write_bytes(b"")
            made += 1
            for j in range(16):
                os.setxattr(p, f"user.{j}", b"v" * 65536)
    except OSError as exc:
        return made, exc.errno or 0
    return made, 0


async def test_xattrs_run_out_with_the_filesystem_size(mount_ops):
    fs, mnt = await mount_memfs(mount_ops, capacity=4 << 20)
    made, err = await client(_fill_files, mnt)
    assert err == errno.ENOSPC and made <= 5  # 4 MiB hold at most 4 inodes' worth
    assert fs.used <= fs.capacity
    fs.check_invariants()
