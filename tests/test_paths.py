"""trio_fuse_uring.paths through the real kernel, on both transports.

The filesystem is tests/pathmem.py (a tree in memory on the path API): the tests check
what a client sees and which paths the handlers were called with.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import client
from pathmem import HardRemoveMem, InoMem, PathMem

import trio_fuse_uring as tfu
from trio_fuse_uring import paths

_libc = ctypes.CDLL(None, use_errno=True)
MountPaths = Callable[..., Awaitable[paths.PathMount]]


def _renameat2(old: str, new: str, flags: int) -> None:
    if _libc.renameat2(-100, old.encode(), -100, new.encode(), flags) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.fixture
async def mount_paths(tmp_path: Path, transport: str) -> AsyncIterator[MountPaths]:
    """``await mount_paths(ops, **options)``: a path filesystem on a fresh directory."""
    counter = 0
    async with trio.open_nursery() as nursery:

        async def _mount(ops: paths.Operations, **options: Any) -> paths.PathMount:
            nonlocal counter
            counter += 1
            path = tmp_path / f"mnt{counter}"
            path.mkdir()
            options.setdefault("transport", transport)
            m: paths.PathMount = await nursery.start(paths.serve, ops, path, tfu.Options(**options))
            assert m.transport == transport, m.transport_reason
            return m

        yield _mount
        nursery.cancel_scope.cancel()


async def _eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for something the kernel does after a syscall returned (a RELEASE after close)."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.01)


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    """Like _eventually, for a check that touches the mount (run in a worker thread)."""
    with trio.fail_after(timeout):
        while not await client(check):
            await trio.sleep(0.01)


def _tree_scenario(mnt: str) -> None:
    p = functools.partial(os.path.join, mnt)
    os.makedirs(p("a/b"))
    with open(p("a/b/f"), "wb") as f:
        f.write(b"hello world")
    assert Path(p("a/b/f")).read_bytes() == b"hello world"
    os.rename(p("a"), p("c"))  # a directory with a file below it
    assert Path(p("c/b/f")).read_bytes() == b"hello world"
    assert not os.path.exists(p("a"))
    os.symlink("b/f", p("c/s"))
    assert os.readlink(p("c/s")) == "b/f"
    assert Path(p("c/s")).read_bytes() == b"hello world"
    os.link(p("c/b/f"), p("hard"))
    assert os.stat(p("hard")).st_nlink == 2
    assert Path(p("hard")).read_bytes() == b"hello world"
    os.chmod(p("hard"), 0o600)
    os.chown(p("hard"), 1234, 5678)
    os.utime(p("hard"), ns=(1_500_000_000, 12_500_000_000))
    st = os.stat(p("hard"))
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (1234, 5678)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_500_000_000, 12_500_000_000)
    os.truncate(p("hard"), 5)
    assert Path(p("c/b/f")).read_bytes() == b"hello"
    os.setxattr(p("hard"), "user.k", b"v")
    assert os.getxattr(p("hard"), "user.k") == b"v"
    assert os.listxattr(p("hard")) == ["user.k"]
    os.removexattr(p("hard"), "user.k")
    with pytest.raises(OSError) as e:
        os.getxattr(p("hard"), "user.k")
    assert e.value.errno == errno.ENODATA
    assert sorted(os.listdir(mnt)) == ["c", "hard"]
    assert sorted(os.listdir(p("c"))) == ["b", "s"]
    vfs = os.statvfs(mnt)
    assert (vfs.f_bsize, vfs.f_blocks, vfs.f_bavail) == (512, 1000, 400)
    with pytest.raises(OSError) as e:
        os.rmdir(p("c"))
    assert e.value.errno == errno.ENOTEMPTY
    os.unlink(p("c/s"))
    os.unlink(p("c/b/f"))
    os.rmdir(p("c/b"))
    os.rmdir(p("c"))
    os.unlink(p("hard"))
    assert os.listdir(mnt) == []


async def test_tree_operations(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    await client(_tree_scenario, m.mountpoint)
    assert ("rename", "/a -> /c") in ops.calls
    assert ("read", "/c/b/f") in ops.calls  # the file's path follows its directory


async def test_rename_flags(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint

    def scenario() -> None:
        Path(mnt, "x").write_bytes(b"x")
        Path(mnt, "y").write_bytes(b"y")
        with pytest.raises(OSError) as e:
            _renameat2(f"{mnt}/x", f"{mnt}/y", 1)  # RENAME_NOREPLACE
        assert e.value.errno == errno.EEXIST
        with open(f"{mnt}/x", "rb") as fx:
            _renameat2(f"{mnt}/x", f"{mnt}/y", 2)  # RENAME_EXCHANGE
            assert Path(mnt, "x").read_bytes() == b"y"
            assert Path(mnt, "y").read_bytes() == b"x"
            assert fx.read() == b"x"

    await client(scenario)
    assert ("read", "/y") in ops.calls  # the open file followed the exchange


async def test_open_file_follows_renames(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint

    def scenario() -> None:
        os.mkdir(f"{mnt}/d")
        fd = os.open(f"{mnt}/d/f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.rename(f"{mnt}/d/f", f"{mnt}/d/g")
            os.rename(f"{mnt}/d", f"{mnt}/e")
            os.pwrite(fd, b"moved", 0)
        finally:
            os.close(fd)
        assert Path(mnt, "e/g").read_bytes() == b"moved"

    await client(scenario)
    assert ("write", "/e/g") in ops.calls


async def test_unlinked_open_file_is_hidden_until_released(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint
    fd = await client(os.open, f"{mnt}/f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        await client(os.pwrite, fd, b"still here", 0)
        await client(os.unlink, f"{mnt}/f")
        assert await client(os.listdir, mnt) == []  # the hidden name is not listed
        assert not await client(os.path.exists, f"{mnt}/f")
        hidden = [n for n in ops.root.children if n.startswith(".fuse_hidden")]
        assert len(hidden) == 1
        assert await client(os.pread, fd, 100, 0) == b"still here"
        await client(os.pwrite, fd, b"STILL", 0)
        assert ("write", f"/{hidden[0]}") in ops.calls
        # A new file may take the old name meanwhile.
        await client(Path(mnt, "f").write_bytes, b"new")
        assert await client(os.pread, fd, 100, 0) == b"STILL here"
    finally:
        await client(os.close, fd)
    await _eventually(lambda: ("unlink", f"/{hidden[0]}") in ops.calls)
    assert list(ops.root.children) == ["f"]
    assert await client(Path(mnt, "f").read_bytes) == b"new"


async def test_replacing_an_open_file_by_rename_hides_it(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint
    await client(Path(mnt, "old").write_bytes, b"old")
    await client(Path(mnt, "new").write_bytes, b"new")
    fd = await client(os.open, f"{mnt}/old", os.O_RDONLY)
    try:
        await client(os.rename, f"{mnt}/new", f"{mnt}/old")
        assert await client(Path(mnt, "old").read_bytes) == b"new"
        assert await client(os.pread, fd, 10, 0) == b"old"
        assert sorted(await client(os.listdir, mnt)) == ["old"]
    finally:
        await client(os.close, fd)
    await _eventually(lambda: list(ops.root.children) == ["old"])


async def test_hard_remove_passes_no_path(mount_paths: MountPaths) -> None:
    ops = HardRemoveMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint
    fd = await client(os.open, f"{mnt}/f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        await client(os.pwrite, fd, b"data", 0)
        await client(os.unlink, f"{mnt}/f")
        assert not any(n.startswith(".fuse_hidden") for n in ops.root.children)
        assert await client(os.pread, fd, 10, 0) == b"data"
        assert await client(os.fstat, fd)  # getattr on the unlinked file: through its fh
    finally:
        await client(os.close, fd)
    assert ("read", None) in ops.calls


@pytest.mark.parametrize("use_ino", [False, True])
async def test_inode_numbers(mount_paths: MountPaths, use_ino: bool) -> None:
    ops = InoMem() if use_ino else PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint
    await client(Path(mnt, "f").write_bytes, b"")
    await client(os.mkdir, f"{mnt}/d")
    root_ino = (await client(os.stat, mnt)).st_ino
    f_ino = (await client(os.stat, f"{mnt}/f")).st_ino
    listed = {e.name: e.inode() for e in await client(lambda: list(os.scandir(mnt)))}
    if use_ino:
        assert (root_ino, f_ino) == (31, 100)
        assert listed == {"f": 100, "d": 101}
        # The filesystem's numbers are only shown: even the root's is fine for a new file.
        ops.next_ino = 1
        await client(Path(mnt, "one").write_bytes, b"")
        assert (await client(os.stat, f"{mnt}/one")).st_ino == 1
    else:
        assert root_ino == 1 and f_ino not in (0, 100)


async def test_many_entries_and_attributes_in_listings(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint

    def scenario() -> None:
        for i in range(1500):
            os.close(os.open(f"{mnt}/file-with-a-long-name-{i:05d}", os.O_CREAT | os.O_WRONLY))
        names = os.listdir(mnt)
        assert len(names) == len(set(names)) == 1500
        sizes = {e.name: e.stat(follow_symlinks=False).st_size for e in os.scandir(mnt)}
        assert len(sizes) == 1500

    await client(scenario, timeout=120)


async def test_callers_ids(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops, allow_other=True)
    mnt = m.mountpoint
    await client(os.chmod, mnt, 0o777)
    ops.root.mode = stat.S_IFDIR | 0o777
    # The mount's parent is private to root: the other user gets the mount as an fd.
    code = (
        "import os, sys; d = int(sys.argv[1])\n"
        "fd = os.open('mine', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=d)\n"
        "os.write(fd, b'x'); os.close(fd); os.mkdir('d', dir_fd=d)\n"
    )
    root = await client(os.open, mnt, os.O_PATH | os.O_DIRECTORY)
    try:
        r = await client(
            functools.partial(
                subprocess.run, ["/usr/bin/python3", "-c", code, str(root)], pass_fds=[root],
                user=65534, group=65534, extra_groups=[], capture_output=True, timeout=30,
            )
        )  # fmt: skip
    finally:
        os.close(root)
    assert r.returncode == 0, r.stderr.decode()
    for op in ("create", "write", "mkdir"):
        uids = {(u, g) for o, u, g, _ in ops.contexts if o == op}
        assert uids == {(65534, 65534)}, (op, uids)
    st = await client(os.stat, f"{mnt}/mine")
    assert (st.st_uid, st.st_gid) == (65534, 65534)


async def test_interrupt_cancels_the_path_handler(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops)
    mnt = m.mountpoint
    ops.block_mkdir = True  # (reads cannot be interrupted: the kernel waits them out)
    code = (
        "import os, signal, sys\n"
        "def stop(*_): sys.exit(3)\n"
        "signal.signal(signal.SIGUSR1, stop)\n"
        "print('start', flush=True)\n"
        f"os.mkdir({mnt + '/d'!r})\n"
    )
    with trio.fail_after(20):
        await _interrupt_scenario(ops, code)


async def _interrupt_scenario(ops: PathMem, code: str) -> None:
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            functools.partial(
                trio.run_process, [sys.executable, "-c", code], stdout=subprocess.PIPE, check=False
            )
        )
        assert proc.stdout is not None
        assert b"start" in await proc.stdout.receive_some()
        await _eventually(lambda: ("mkdir", "/d") in ops.calls)
        proc.send_signal(signal.SIGUSR1)
        await ops.cancelled.wait()
        assert await proc.wait() == 3


async def test_invalidate_by_path(mount_paths: MountPaths) -> None:
    ops = PathMem()
    m = await mount_paths(ops, attr_timeout=3600, entry_timeout=3600)
    mnt = m.mountpoint
    await client(os.mkdir, f"{mnt}/d")
    await client(Path(mnt, "d/f").write_bytes, b"1234")
    assert (await client(os.stat, f"{mnt}/d/f")).st_size == 4
    ops.resolve("/d/f").data.extend(b"5678")  # behind the kernel's back
    assert (await client(os.stat, f"{mnt}/d/f")).st_size == 4  # cached
    assert m.invalidate_path("/d/f")
    await _until(lambda: os.stat(f"{mnt}/d/f").st_size == 8)  # notifications are queued
    d = ops.resolve("/d")
    d.children["g"] = d.children.pop("f")
    assert await client(os.path.exists, f"{mnt}/d/f")  # the name is cached
    assert m.invalidate_entry("/d/f")
    await _until(lambda: not os.path.exists(f"{mnt}/d/f"))
    assert not m.invalidate_path("/never/seen")


async def test_errors_from_handlers(mount_paths: MountPaths) -> None:
    class Broken(PathMem):
        async def mkdir(self, path: str, mode: int) -> None:
            raise PermissionError(errno.EPERM, "no")  # an OSError keeps its errno

        async def readlink(self, path: str) -> str:
            raise RuntimeError("bug")  # anything else is EIO

    ops = Broken()
    m = await mount_paths(ops)
    mnt = m.mountpoint
    with pytest.raises(PermissionError):
        await client(os.mkdir, f"{mnt}/d")
    await client(os.symlink, "t", f"{mnt}/s")
    with pytest.raises(OSError) as e:
        await client(os.readlink, f"{mnt}/s")
    assert e.value.errno == errno.EIO
    assert await client(os.listdir, mnt) == ["s"]  # still serving


def test_wrong_operations_type_is_refused() -> None:
    with pytest.raises(TypeError, match=r"paths\.Operations"):
        paths._adapter.adapter_for(tfu.Operations())  # type: ignore[arg-type]
