"""Replies the kernel would refuse are not silent: the log names the handler, the
request and what is wrong, and ``Mount.stats()["invalid_replies"]`` counts them.

The kernel turns such replies into EIO on its own (the caller gets EIO, the daemon
sees nothing), so each case here checks the log line and the counter, through the
real kernel on both transports.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from helpers import MountOps, client

import trio_fuse_uring as tfu

DIR = stat.S_IFDIR | 0o755


class Careless(tfu.Operations):
    """Each creating handler returns something the kernel refuses."""

    async def getattr(self, inode: int, ctx: tfu.RequestContext) -> tfu.EntryAttributes:
        if inode == tfu.ROOT_INODE:
            return tfu.EntryAttributes(st_ino=inode, st_mode=DIR, attr_timeout=0)
        attr = tfu.EntryAttributes(st_ino=inode, attr_timeout=0)
        attr.st_mode = 0o644  # no file type: set after construction, so not caught there
        return attr

    async def lookup(self, parent_inode: int, name: bytes, ctx: tfu.RequestContext) -> Any:
        if name == b"typeless":
            return await self.getattr(7, ctx)
        if name == b"rootgen":
            return tfu.EntryAttributes(st_ino=tfu.ROOT_INODE, st_mode=DIR, generation=3)
        raise tfu.FUSEError(errno.ENOENT)

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        # The trap: mode has no S_IFDIR, and this makes a "regular file" entry.
        return tfu.EntryAttributes(st_ino=5, st_mode=stat.S_IFREG | mode)

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        return tfu.EntryAttributes(st_ino=6, st_mode=stat.S_IFREG | 0o644)  # asked: a fifo

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        return tfu.EntryAttributes(st_ino=0, st_mode=stat.S_IFLNK | 0o777)  # inode 0


CASES = [
    ("mkdir", lambda mnt: os.mkdir(mnt / "d"), "handler mkdir() returned a regular file", "S_IFDIR"),
    ("mknod", lambda mnt: os.mkfifo(mnt / "p"), "handler mknod() returned a regular file", "a fifo"),
    ("symlink", lambda mnt: os.symlink("t", mnt / "l"), "handler symlink() returned st_ino 0", "other than 0 and 1"),
    ("lookup", lambda mnt: os.stat(mnt / "typeless"), "handler lookup() returned st_mode 0o644", "no valid file type"),
    ("root generation", lambda mnt: os.stat(mnt / "rootgen"), "handler lookup() returned the root inode with generation 3", "must be 0"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "call", "says", "hint"), CASES, ids=[c[0] for c in CASES])
async def test_refused_reply_is_logged_and_counted(
    mount_ops: MountOps,
    caplog: pytest.LogCaptureFixture,
    case: str,
    call: Any,
    says: str,
    hint: str,
) -> None:
    m = await mount_ops(Careless(), entry_timeout=0, attr_timeout=0)
    mnt = Path(m.mountpoint)
    with (
        caplog.at_level(logging.ERROR, logger="trio_fuse_uring"),
        pytest.raises(OSError) as exc_info,
    ):
        await client(call, mnt)
    assert exc_info.value.errno == errno.EIO
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(says in e and hint in e and "answering EIO to" in e for e in errors), errors
    assert m.stats()["invalid_replies"] >= 1
