"""examples/loopback_paths.py: the path API's passthrough, through the kernel, confined.

Layout (``tmp_path``): ``a/src`` is SOURCE, ``a/victim`` is outside it and must stay
empty; a symlink ``a/src/evil -> ../victim`` lands in ``a/victim`` only if the *daemon*
follows it (a client resolves it in the mount, to ``tmp_path/victim``, which does not
exist).
"""

from __future__ import annotations

import functools
import os
import stat
import subprocess
from pathlib import Path

import pytest
import trio
from helpers import client
from loopback_paths import LoopbackPaths

import trio_fuse_uring as tfu
from trio_fuse_uring import paths


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    src, victim = tmp_path / "a" / "src", tmp_path / "a" / "victim"
    src.mkdir(parents=True)
    victim.mkdir()
    return src, victim


async def _serve(
    nursery: trio.Nursery, src: Path, mnt: Path, transport: str, **kw: object
) -> paths.PathMount:
    mnt.mkdir()
    fs = LoopbackPaths(src)
    m: paths.PathMount = await nursery.start(
        paths.serve,
        fs,
        mnt,
        tfu.Options(transport=transport, **kw),  # type: ignore[arg-type]
    )
    assert m.transport == transport
    return m


def _mirror(mnt: Path, src: Path) -> None:
    (mnt / "f").write_bytes(b"from the mount")
    assert (src / "f").read_bytes() == b"from the mount"
    (src / "g").write_bytes(b"from the source")
    assert (mnt / "g").read_bytes() == b"from the source"
    big = os.urandom(1 << 20)
    (mnt / "big").write_bytes(big)
    assert (mnt / "big").read_bytes() == big  # large reads are FileRange replies
    (mnt / "d" / "e").mkdir(parents=True)
    os.rename(mnt / "f", mnt / "d" / "e" / "f")
    os.rename(mnt / "d", mnt / "D")
    assert (src / "D" / "e" / "f").read_bytes() == b"from the mount"
    os.symlink("../g", mnt / "D" / "s")
    assert os.readlink(src / "D" / "s") == "../g"  # stored as given
    assert (mnt / "D" / "s").read_bytes() == b"from the source"
    os.link(mnt / "g", mnt / "h")
    assert os.stat(mnt / "h").st_nlink == 2 == os.stat(src / "g").st_nlink
    os.truncate(mnt / "h", 4)
    assert (src / "g").read_bytes() == b"from"
    os.chmod(mnt / "h", 0o640)
    os.utime(mnt / "h", ns=(1_000_000_000, 2_000_000_000))
    st = os.stat(src / "g")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 2_000_000_000
    assert os.stat(mnt / "g").st_ino == st.st_ino  # use_ino-like: the source's numbers
    with open(mnt / "h", "rb") as f:
        os.unlink(mnt / "h")
        os.unlink(mnt / "g")
        assert f.read() == b"from"  # kept under a hidden name until closed
        assert sorted(os.listdir(mnt)) == ["D", "big"]
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(src)) == ["D", "big"]
    os.mkfifo(mnt / "fifo", 0o600)
    assert stat.S_ISFIFO(os.stat(src / "fifo").st_mode)
    assert os.statvfs(mnt).f_blocks == os.statvfs(src).f_blocks


async def test_mirror(tree: tuple[Path, Path], tmp_path: Path, transport: str) -> None:
    src, victim = tree
    async with trio.open_nursery() as nursery:
        m = await _serve(nursery, src, tmp_path / "mnt", transport)
        await client(_mirror, Path(m.mountpoint), src)
        await trio.sleep(0.2)  # the hidden file's release
        assert sorted(os.listdir(src)) == ["D", "big", "fifo"]
        nursery.cancel_scope.cancel()
    assert list(victim.iterdir()) == []


def _escape_attempts(mnt: Path, src: Path) -> list[str]:
    """Things that reach ``victim`` only if the daemon follows a link; returns what
    unexpectedly succeeded."""
    done = []
    os.symlink("../victim", src / "evil")
    for attempt in ("evil/x", "evil/sub"):
        try:
            (mnt / attempt).write_bytes(b"x")
            done.append(attempt)
        except OSError:
            pass
    # A directory the kernel has looked up is swapped for a link behind its back.
    (mnt / "d").mkdir()
    assert os.path.isdir(mnt / "d")
    os.rmdir(src / "d")
    os.symlink("../victim", src / "d")
    for action, fn in (
        ("create", lambda: (mnt / "d" / "x").write_bytes(b"x")),
        ("mkdir", lambda: os.mkdir(mnt / "d" / "y")),
        ("symlink", lambda: os.symlink("t", mnt / "d" / "z")),
    ):
        try:
            fn()
            done.append(action)
        except OSError:
            pass
    return done


async def test_never_follows_links_out(
    tree: tuple[Path, Path], tmp_path: Path, transport: str
) -> None:
    src, victim = tree
    async with trio.open_nursery() as nursery:
        m = await _serve(
            nursery, src, tmp_path / "mnt", transport, entry_timeout=3600, attr_timeout=3600
        )
        done = await client(_escape_attempts, Path(m.mountpoint), src)
        nursery.cancel_scope.cancel()
    assert list(victim.iterdir()) == [], "the daemon wrote outside SOURCE"
    assert done == []


_AS_USER = """
import os, sys
d = int(sys.argv[1])
os.umask(0o022)
fd = os.open("pub/file", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666, dir_fd=d); os.close(fd)
os.mkdir("pub/dir", 0o777, dir_fd=d)
os.symlink("file", "pub/link", dir_fd=d)
os.mkfifo("pub/fifo", 0o666, dir_fd=d)
fd = os.open("sgid/file", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=d); os.close(fd)
try:
    os.open("root_file", os.O_WRONLY | os.O_TRUNC, dir_fd=d)
    sys.exit("wrote root's file")
except PermissionError:
    pass
"""


async def test_other_users_own_what_they_create(
    tree: tuple[Path, Path], tmp_path: Path, transport: str
) -> None:
    src, _ = tree
    (src / "pub").mkdir()
    os.chmod(src / "pub", 0o777)
    (src / "sgid").mkdir()
    os.chown(src / "sgid", 0, 4242)
    os.chmod(src / "sgid", 0o2777)
    (src / "root_file").write_bytes(b"root's")
    async with trio.open_nursery() as nursery:
        m = await _serve(nursery, src, tmp_path / "mnt", transport, allow_other=True)
        root = await client(os.open, m.mountpoint, os.O_PATH | os.O_DIRECTORY)
        try:
            r = await client(
                functools.partial(
                    subprocess.run, ["/usr/bin/python3", "-c", _AS_USER, str(root)],
                    pass_fds=[root], user=65534, group=65534, extra_groups=[],
                    capture_output=True, timeout=30,
                )
            )  # fmt: skip
        finally:
            os.close(root)
        nursery.cancel_scope.cancel()
    assert r.returncode == 0, r.stderr.decode()
    for name, mode in (("file", 0o644), ("dir", 0o755), ("fifo", 0o644), ("link", None)):
        st = os.lstat(src / "pub" / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534), name
        if mode is not None:
            assert stat.S_IMODE(st.st_mode) == mode, (name, oct(st.st_mode))
    st = os.stat(src / "sgid" / "file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 4242, 0o600)
    assert (src / "root_file").read_bytes() == b"root's"
