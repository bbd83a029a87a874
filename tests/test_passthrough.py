"""examples/passthrough.py: a mirror of SOURCE that nothing can make reach outside it.

Layout of every test (``tmp_path``)::

    a/src       SOURCE
    a/victim    outside SOURCE: must stay untouched
    mnt1...     mountpoints (made by mount_ops)

A symlink ``a/src/evil -> ../victim`` is the probe: the *daemon* resolving it (a
path-based passthrough doing ``open(SOURCE + "/evil/x")``) lands in ``a/victim``, while a
client resolves it in the mount's namespace, ``mnt1/../victim``, i.e. ``tmp_path/victim``,
which does not exist. So a file in ``a/victim`` can only come from the daemon following
a link. (An absolute link would resolve to the same place for both, proving nothing.)

In scope: names, ``..``, symlinks (relative, absolute, chained), directories swapped
for symlinks and renames racing client operations. Out of scope: an attacker who can
write both in SOURCE and outside (moving an already-served directory out, or hard-linking
an outside file in); such a pre-existing hard link is served as the file it is.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import mmap
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio
from helpers import REPO, client
from passthrough import Passthrough, ThreadedPassthrough

import trio_fuse_uring as tfu

ROOT = tfu.ROOT_INODE
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
_libc = ctypes.CDLL(None, use_errno=True)


def _renameat2(old: Path, new: Path, flags: int) -> None:
    if _libc.renameat2(-100, bytes(old), -100, bytes(new), flags) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _fallocate(fd: int, mode: int, off: int, length: int) -> None:
    if _libc.fallocate(fd, mode, ctypes.c_int64(off), ctypes.c_int64(length)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "a" / "src"
    victim = tmp_path / "a" / "victim"
    src.mkdir(parents=True)
    victim.mkdir()
    return src, victim


def _untouched(victim: Path, tmp_path: Path) -> None:
    assert list(victim.iterdir()) == [], "the daemon wrote outside SOURCE"
    assert not (tmp_path / "victim").exists()


# ---- the mirror --------------------------------------------------------------------------


def _mirror_scenario(mnt: Path, src: Path) -> None:
    # Files both ways.
    (mnt / "f").write_bytes(b"from the mount")
    assert (src / "f").read_bytes() == b"from the mount"
    (src / "g").write_bytes(b"from the source")
    assert (mnt / "g").read_bytes() == b"from the source"
    assert os.stat(mnt / "f").st_ino == os.stat(src / "f").st_ino
    # rename, link, symlink.
    os.rename(mnt / "f", mnt / "f2")
    assert not (src / "f").exists() and (src / "f2").read_bytes() == b"from the mount"
    os.link(mnt / "f2", mnt / "h")
    assert os.stat(src / "h").st_nlink == 2 == os.stat(mnt / "h").st_nlink
    assert os.stat(src / "h").st_ino == os.stat(src / "f2").st_ino
    os.symlink("f2", mnt / "s")
    assert os.readlink(src / "s") == "f2" and os.readlink(mnt / "s") == "f2"
    assert (mnt / "s").read_bytes() == b"from the mount"
    os.link(mnt / "s", mnt / "s_hard", follow_symlinks=False)  # a hard link to a symlink
    assert os.readlink(src / "s_hard") == "f2"
    (src / "a").write_bytes(b"A")
    (src / "b").write_bytes(b"B")
    _renameat2(mnt / "a", mnt / "b", RENAME_EXCHANGE)
    assert (src / "a").read_bytes() == b"B" and (src / "b").read_bytes() == b"A"
    with pytest.raises(FileExistsError):
        _renameat2(mnt / "a", mnt / "b", RENAME_NOREPLACE)
    _renameat2(mnt / "a", mnt / "c", RENAME_NOREPLACE)
    assert (src / "c").read_bytes() == b"B"
    # Directories and special files.
    os.mkdir(mnt / "dir", 0o750)
    assert stat.S_IMODE(os.stat(src / "dir").st_mode) == 0o750 & ~_umask()
    (mnt / "dir" / "inner").write_bytes(b"x")
    with pytest.raises(OSError) as exc:
        os.rmdir(mnt / "dir")
    assert exc.value.errno == errno.ENOTEMPTY
    os.unlink(mnt / "dir" / "inner")
    os.rmdir(mnt / "dir")
    assert not (src / "dir").exists()
    os.mkfifo(mnt / "fifo")
    assert stat.S_ISFIFO(os.stat(src / "fifo").st_mode)
    # Metadata.
    os.chmod(mnt / "f2", 0o640)
    assert stat.S_IMODE(os.stat(src / "f2").st_mode) == 0o640
    os.utime(mnt / "f2", ns=(1_000_000_001, 2_000_000_002))
    st = os.stat(src / "f2")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_001, 2_000_000_002)
    os.utime(mnt / "s", ns=(3_000_000_000, 4_000_000_000), follow_symlinks=False)
    assert os.lstat(src / "s").st_mtime_ns == 4_000_000_000
    assert os.stat(src / "f2").st_mtime_ns == 2_000_000_002  # the target is untouched
    os.chown(mnt / "f2", 1234, 5678)
    assert (os.stat(src / "f2").st_uid, os.stat(src / "f2").st_gid) == (1234, 5678)
    os.chown(mnt / "f2", 0, 0)
    # Extended attributes.
    os.setxattr(mnt / "f2", "user.k", b"value")
    assert os.getxattr(src / "f2", "user.k") == b"value"
    assert "user.k" in os.listxattr(mnt / "f2")
    os.setxattr(src / "f2", "user.k2", b"v2")
    assert os.getxattr(mnt / "f2", "user.k2") == b"v2"
    os.removexattr(mnt / "f2", "user.k")
    with pytest.raises(OSError) as exc:
        os.getxattr(src / "f2", "user.k")
    assert exc.value.errno == errno.ENODATA
    with pytest.raises(OSError) as exc:
        # (user.* on a symlink is refused by the VFS; trusted.* reaches the daemon.)
        os.getxattr(mnt / "s", "trusted.k", follow_symlinks=False)
    assert exc.value.errno == errno.EOPNOTSUPP
    # Sizes: truncate, ftruncate, fallocate, holes, copy_file_range.
    os.truncate(mnt / "f2", 4)
    assert (src / "f2").read_bytes() == b"from"
    fd = os.open(mnt / "sparse", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"d" * 4096, 0)
        os.pwrite(fd, b"e" * 4096, 1 << 20)
        os.ftruncate(fd, 2 << 20)
        assert os.stat(src / "sparse").st_size == 2 << 20
        sfd = os.open(src / "sparse", os.O_RDONLY)
        try:
            for off in (0, 4096, 8192, 1 << 20):
                for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                    assert os.lseek(fd, off, whence) == os.lseek(sfd, off, whence)
        finally:
            os.close(sfd)
        with pytest.raises(OSError) as exc:
            os.lseek(fd, (2 << 20) + 1, os.SEEK_DATA)
        assert exc.value.errno == errno.ENXIO
        _fallocate(fd, 0, 0, 3 << 20)
        assert os.stat(src / "sparse").st_size == 3 << 20
        _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)
        assert (src / "sparse").read_bytes()[:4097] == bytes(4096) + b"\0"
        out = os.open(mnt / "copy", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"copy me", 100)
            assert os.copy_file_range(fd, out, 7, 100, 0) == 7
        finally:
            os.close(out)
        assert (src / "copy").read_bytes() == b"copy me"
    finally:
        os.close(fd)
    # An unlinked open file stays usable.
    fd = os.open(mnt / "gone", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.unlink(mnt / "gone")
        os.pwrite(fd, b"still here", 0)
        assert os.pread(fd, 10, 0) == b"still here"
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    # Directory listings, long enough to take several READDIR(PLUS) rounds.
    (src / "big").mkdir()
    names = {f"entry-{i:04d}-{'x' * 40}" for i in range(600)}
    for n in names:
        (src / "big" / n).touch()
    assert set(os.listdir(mnt / "big")) == names
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(src))
    assert os.statvfs(mnt).f_blocks == os.statvfs(src).f_blocks
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "nope")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("cls", [Passthrough, ThreadedPassthrough])
async def test_mirror(mount_ops, tree, cls):
    src, victim = tree
    fs = cls(src)
    m = await mount_ops(fs)
    await client(_mirror_scenario, Path(m.mountpoint), src)
    _untouched(victim, src.parent.parent)
    assert m.stats()["handler_failures"] == 0
    # Every lookup the kernel made is given back once it drops its caches.
    await client(Path("/proc/sys/vm/drop_caches").write_text, "2")
    with trio.fail_after(10):
        while len(fs._inodes) > 1:
            await trio.sleep(0.02)


def _direct_io_round_trip(mnt: Path, data: bytes) -> bytes:
    buf = mmap.mmap(-1, len(data))  # O_DIRECT wants aligned memory
    buf[:] = data
    path = mnt / "direct"
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
    try:
        assert os.pwritev(fd, [buf], 0) == len(data)
        out = mmap.mmap(-1, len(data))
        for off in range(0, len(data), 4096):  # 4 KiB reads, then one big one
            assert os.preadv(fd, [memoryview(out)[off : off + 4096]], off) == 4096
        assert out[:] == data
        out2 = mmap.mmap(-1, len(data))
        assert os.preadv(fd, [out2], 0) == len(data)
        return out2[:]
    finally:
        os.close(fd)


async def test_o_direct_reads_and_writes(mount_ops, tree):
    # The daemon opens the source file with the caller's O_DIRECT, and the source
    # (tmp_path: ext4 here and in CI) then wants page-aligned buffers: /dev/fuse's
    # used to be bytearrays, and every such read and write failed with EINVAL.
    src, _ = tree
    m = await mount_ops(Passthrough(src))
    data = os.urandom(1 << 20)
    assert await client(_direct_io_round_trip, Path(m.mountpoint), data) == data
    assert (src / "direct").read_bytes() == data
    assert m.stats()["handler_failures"] == 0


# Run in a process of its own: a page fault on our own mount from the serving process
# can deadlock it (the faulting thread holds the address space's lock while it waits
# for the reply, and the serving thread may need that lock to map memory).
_CACHED_WRITES_THROUGH_O_DIRECT = """
import mmap, os, sys
mnt = sys.argv[1]
# An mmap of a file opened only with O_DIRECT: msync writes the page back through
# the O_DIRECT handle, at offset 0 and a length that is no multiple of 512.
fd = os.open(mnt + "/mapped", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
os.ftruncate(fd, 2300)
with mmap.mmap(fd, 2300) as m:
    m[1000:1013] = b"hello, world\\n"
    m.flush()
os.fsync(fd)
os.close(fd)
# A cached write while an O_DIRECT handle of the same file is open: with
# writeback_cache the kernel may write the page back through either handle.
fd = os.open(mnt + "/cached", os.O_RDWR | os.O_CREAT, 0o644)
direct = os.open(mnt + "/cached", os.O_RDWR | os.O_DIRECT)
os.pwrite(fd, b"z" * 1300, 1000)
os.fsync(fd)
os.close(direct)
os.close(fd)
"""


@pytest.mark.parametrize("writeback", [False, True], ids=["cached", "writeback"])
@pytest.mark.parametrize("cls", [Passthrough, ThreadedPassthrough])
async def test_cached_writes_through_an_o_direct_handle(mount_ops, tree, cls, writeback):
    """The kernel writes cached pages back through any writable handle, O_DIRECT
    ones included, unaligned: the source (ext4) refused them with EINVAL, and the data
    was lost (msync and fsync failed, the source file stayed empty)."""
    src, _ = tree
    m = await mount_ops(cls(src), writeback_cache=writeback)
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-c", _CACHED_WRITES_THROUGH_O_DIRECT, m.mountpoint],
            capture_stderr=True, check=False,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert (src / "mapped").read_bytes() == bytes(1000) + b"hello, world\n" + bytes(1287)
    assert (src / "cached").read_bytes() == bytes(1000) + b"z" * 1300


async def test_zero_timeouts_and_external_changes(mount_ops, tree):
    src, _ = tree
    m = await mount_ops(Passthrough(src), entry_timeout=0, attr_timeout=0)
    mnt = Path(m.mountpoint)

    def scenario() -> None:
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "later")
        (src / "later").write_bytes(b"123")
        assert os.stat(mnt / "later").st_size == 3
        (src / "later").write_bytes(b"12345")
        assert os.stat(mnt / "later").st_size == 5
        os.rename(src / "later", src / "moved")
        assert not (mnt / "later").exists() and (mnt / "moved").read_bytes() == b"12345"

    await client(scenario)


_AS_USER = """
import os, sys
root = int(sys.argv[1])  # the mount's root, inherited: the test's tmp_path is private
os.umask(0o027)
os.close(os.open("pub/file", os.O_CREAT | os.O_WRONLY, 0o666, dir_fd=root))
os.mkdir("pub/dir", 0o777, dir_fd=root)
os.symlink("file", "pub/link", dir_fd=root)
os.mknod("pub/fifo", 0o10666, dir_fd=root)
os.close(os.open("sgid/file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=root))
os.close(os.open("suid_file", os.O_WRONLY | os.O_TRUNC, dir_fd=root))
try:
    os.chmod("root_file", 0o777, dir_fd=root)
except PermissionError:
    pass
else:
    sys.exit("chmod of root's file was allowed")
"""


async def test_other_users_get_their_ids_and_umask(mount_ops, tree):
    src, _ = tree
    (src / "pub").mkdir(mode=0o777)
    os.chmod(src / "pub", 0o777)
    (src / "sgid").mkdir()
    os.chown(src / "sgid", 0, 4242)
    os.chmod(src / "sgid", 0o2777)
    (src / "root_file").write_bytes(b"")
    (src / "suid_file").write_bytes(b"#!/bin/sh")
    os.chmod(src / "suid_file", 0o6777)
    m = await mount_ops(Passthrough(src), allow_other=True)
    root = await client(os.open, m.mountpoint, os.O_PATH | os.O_DIRECTORY)
    try:
        r = await client(
            functools.partial(
                subprocess.run, [sys.executable, "-c", _AS_USER, str(root)], pass_fds=[root],
                user=65534, group=65534, extra_groups=[], capture_output=True, timeout=30,
            )
        )  # fmt: skip
    finally:
        os.close(root)
    assert r.returncode == 0, r.stderr.decode()
    for name, mode in (("file", 0o640), ("dir", 0o750), ("fifo", 0o640), ("link", None)):
        st = os.lstat(src / "pub" / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534), name
        if mode is not None:
            assert stat.S_IMODE(st.st_mode) == mode, (name, oct(st.st_mode))
    st = os.stat(src / "sgid" / "file")
    assert (st.st_uid, st.st_gid) == (65534, 4242)  # the set-group-ID directory's group
    assert stat.S_IMODE(os.stat(src / "root_file").st_mode) == 0o644
    # Truncated by an unprivileged user: set-user-ID and set-group-ID are gone.
    assert stat.S_IMODE(os.stat(src / "suid_file").st_mode) == 0o777
    assert os.stat(src / "suid_file").st_size == 0


async def test_writeback_cache(mount_ops, tree):
    """The kernel caches writes and sends them (and mtime updates) through any open
    handle; write-only and append opens must still work."""
    src, _ = tree
    m = await mount_ops(ThreadedPassthrough(src), writeback_cache=True)
    mnt = Path(m.mountpoint)

    def scenario() -> None:
        (mnt / "f").write_bytes(b"abc")
        with open(mnt / "f", "ab") as f:
            f.write(b"def")
        fd = os.open(mnt / "f", os.O_WRONLY)
        try:
            os.pwrite(fd, b"Z", 1)
            os.utime(fd, ns=(10**9, 2 * 10**9))
        finally:
            os.close(fd)
        (mnt / "big").write_bytes(b"y" * (3 << 20))
        os.sync()

    await client(scenario)
    assert (src / "f").read_bytes() == b"aZcdef"
    assert (src / "big").read_bytes() == b"y" * (3 << 20)


# ---- escapes -----------------------------------------------------------------------------


def _escape_attempts(mnt: Path) -> list[str]:
    """Try to write through links that only a link-following daemon would resolve
    to a/victim; return what unexpectedly succeeded."""
    succeeded = []
    attempts = {
        "create through ../victim": lambda: os.close(
            os.open(mnt / "evil" / "x", os.O_CREAT | os.O_WRONLY, 0o644)
        ),
        "create through ../../victim": lambda: os.close(
            os.open(mnt / "d" / "evil2" / "x", os.O_CREAT | os.O_WRONLY, 0o644)
        ),
        "create through a chain of links": lambda: os.close(
            os.open(mnt / "chain" / "x", os.O_CREAT | os.O_WRONLY, 0o644)
        ),
        "mkdir through ../victim": lambda: os.mkdir(mnt / "evil" / "y"),
        "symlink through ../victim": lambda: os.symlink("t", mnt / "evil" / "z"),
        "mknod through ../victim": lambda: os.mkfifo(mnt / "evil" / "p"),
        "rename into ../victim": lambda: os.rename(mnt / "plain", mnt / "evil" / "plain"),
        "link into ../victim": lambda: os.link(mnt / "plain", mnt / "evil" / "l"),
        "create via a dangling file link": lambda: os.close(
            os.open(mnt / "evil_file", os.O_CREAT | os.O_WRONLY, 0o644)
        ),
        "truncate the outside file": lambda: os.truncate(mnt / "evil_target", 0),
    }
    for what, attempt in attempts.items():
        try:
            attempt()
        except OSError:
            continue
        succeeded.append(what)
    return succeeded


async def test_symlinks_are_never_followed_by_the_daemon(mount_ops, tree, tmp_path):
    src, victim = tree
    (victim / "target").write_bytes(b"outside")
    os.symlink("../victim", src / "evil")
    (src / "d").mkdir()
    os.symlink("../../victim", src / "d" / "evil2")
    os.symlink("d/evil2", src / "chain")
    os.symlink("../victim/newfile", src / "evil_file")
    os.symlink("../victim/target", src / "evil_target")
    (src / "plain").write_bytes(b"p")
    m = await mount_ops(Passthrough(src))
    mnt = Path(m.mountpoint)
    # The client's kernel resolves them in the mount's namespace: nothing there.
    assert await client(os.readlink, mnt / "evil") == "../victim"
    assert await client(_escape_attempts, mnt) == []
    assert not (tmp_path / "victim").exists()
    assert sorted(p.name for p in victim.iterdir()) == ["target"]
    assert (victim / "target").read_bytes() == b"outside"
    assert (src / "plain").read_bytes() == b"p"
    # ".." from the mount root is the kernel's business (the mount's parent).
    assert await client(os.stat, mnt / "..") == os.stat(tmp_path)


async def test_hard_links_across_the_boundary(mount_ops, tree):
    src, victim = tree
    (victim / "secret").write_bytes(b"outside")
    os.link(victim / "secret", src / "pre_existing")  # placed by someone with both rights
    m = await mount_ops(Passthrough(src))
    mnt = Path(m.mountpoint)
    for a, b in ((victim / "secret", mnt / "hl"), (mnt / "pre_existing", victim / "hl")):
        with pytest.raises(OSError) as exc:
            await client(os.link, a, b)
        assert exc.value.errno == errno.EXDEV
    assert not (src / "hl").exists() and not (victim / "hl").exists()
    # Out of scope, documented: a hard link that already exists inside is that file.
    assert await client((mnt / "pre_existing").read_bytes) == b"outside"


def _swap_race(src: Path, mnt: Path, rounds: int) -> int:
    """Swap ``d`` (a directory) with ``l`` (a symlink to ../victim) in SOURCE while
    the client creates, renames and removes under ``mnt/d``. Returns how many client
    operations succeeded."""
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            _renameat2(src / "d", src / "l", RENAME_EXCHANGE)

    t = threading.Thread(target=swapper)
    t.start()
    ok = 0
    try:
        for i in range(rounds):
            for op in (
                lambda i=i: os.close(os.open(mnt / "d" / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)),
                lambda i=i: os.mkdir(mnt / "d" / f"m{i}"),
                lambda i=i: os.symlink("x", mnt / "d" / f"s{i}"),
                lambda i=i: os.rename(mnt / "d" / f"f{i}", mnt / "d" / f"g{i}"),
                lambda i=i: (mnt / f"top{i}").write_bytes(b"t"),
                lambda i=i: os.rename(mnt / f"top{i}", mnt / "d" / f"top{i}"),
                lambda i=i: os.link(mnt / "d" / f"g{i}", mnt / "d" / f"h{i}"),
                lambda i=i: os.unlink(mnt / "d" / f"g{i}"),
            ):
                try:
                    op()
                    ok += 1
                except OSError:
                    pass
    finally:
        stop.set()
        t.join()
    return ok


@pytest.mark.parametrize("entry_timeout", [0, 60])
async def test_swap_race_stays_inside(mount_ops, tree, tmp_path, entry_timeout):
    """With entry_timeout 60 the kernel keeps sending requests for the directory it
    looked up first, whatever name it has now: a daemon that rebuilt paths would
    follow ``d -> ../victim``. With 0 the kernel re-looks ``d`` up and sometimes
    follows the symlink itself, in the mount's namespace (to nothing)."""
    src, victim = tree
    (src / "d").mkdir()
    os.symlink("../victim", src / "l")
    m = await mount_ops(Passthrough(src), entry_timeout=entry_timeout, attr_timeout=entry_timeout)
    mnt = Path(m.mountpoint)
    await client(os.stat, mnt / "d")
    ok = await client(_swap_race, src, mnt, 150, timeout=60)
    _untouched(victim, tmp_path)
    inside = [p for p in src.rglob("*") if not p.is_symlink() or p.name.startswith("s")]
    assert ok > 0 and len(inside) > 1, (ok, inside)
    assert m.stats()["handler_failures"] == 0


# ---- the handlers themselves, with hostile requests no kernel would send -------------------


async def test_hostile_requests(tree):
    src, victim = tree
    os.symlink("../victim/newfile", src / "evil_file")
    os.symlink("../victim", src / "evil")
    (src / "sub").mkdir()
    fs = Passthrough(src)
    ctx = tfu.RequestContext(uid=0, gid=0, pid=os.getpid(), umask=0o022)
    try:

        async def fails(errno_: int, coro) -> None:  # type: ignore[no-untyped-def]
            with pytest.raises(tfu.FUSEError) as exc:
                await coro
            assert exc.value.errno == errno_, exc.value

        for name in (b"../victim", b"..", b".", b"a/b", b"/etc", b"", b"x\0y"):
            await fails(errno.EINVAL, fs.create(ROOT, name, 0o644, os.O_WRONLY, ctx))
            await fails(errno.EINVAL, fs.mkdir(ROOT, name, 0o755, ctx))
            await fails(errno.EINVAL, fs.unlink(ROOT, name, ctx))
            await fails(errno.EINVAL, fs.rename(ROOT, b"sub", ROOT, name, 0, ctx))
        for name in (b"../victim", b"a/b", b"/etc", b""):
            await fails(errno.EINVAL, fs.lookup(ROOT, name, ctx))
        # Exclusive creation of a name that appeared behind the kernel's back fails.
        (src / "appeared").write_bytes(b"")
        await fails(errno.EEXIST, fs.create(ROOT, b"appeared", 0o644, os.O_WRONLY | os.O_EXCL, ctx))
        # ".." of the root is the root; elsewhere only an inode already served.
        assert (await fs.lookup(ROOT, b"..", ctx)).st_ino == ROOT
        sub = (await fs.lookup(ROOT, b"sub", ctx)).st_ino
        assert (await fs.lookup(sub, b"..", ctx)).st_ino == ROOT
        # A served directory moved out of SOURCE behind our back (out of scope: keeps
        # being served), but its ".." -- outside -- is not an inode the daemon serves.
        os.rename(src / "sub", victim / "sub")
        await fails(errno.ENOENT, fs.lookup(sub, b"..", ctx))
        os.rename(victim / "sub", src / "sub")
        # A dangling link is never created through, opened, truncated or chmodded.
        link = (await fs.lookup(ROOT, b"evil_file", ctx)).st_ino
        await fails(errno.ELOOP, fs.create(ROOT, b"evil_file", 0o644, os.O_WRONLY, ctx))
        await fails(errno.ENXIO, fs.open(link, os.O_WRONLY, ctx))
        await fails(errno.ENOTDIR, fs.lookup(link, b"x", ctx))
        await fails(errno.ENOTDIR, fs.create(link, b"x", 0o644, os.O_WRONLY, ctx))
        await fails(errno.ENOTDIR, fs.mkdir(link, b"x", 0o755, ctx))
        await fails(errno.EINVAL, fs.setattr(link, tfu.SetattrFields(st_size=0), None, ctx))
        await fails(errno.EOPNOTSUPP, fs.setattr(link, tfu.SetattrFields(st_mode=0o777), None, ctx))
        await fails(errno.EOPNOTSUPP, fs.getxattr(link, b"user.x", ctx))
        # chown and utimens of a symlink inode change the link itself.
        await fs.setattr(link, tfu.SetattrFields(st_uid=4321, st_mtime_ns=5 * 10**9), None, ctx)
        assert os.lstat(src / "evil_file").st_uid == 4321
        assert os.lstat(src / "evil_file").st_mtime_ns == 5 * 10**9
        # Directory symlink as a parent: ENOTDIR, never a path through it.
        evil = (await fs.lookup(ROOT, b"evil", ctx)).st_ino
        await fails(errno.ENOTDIR, fs.mknod(evil, b"n", stat.S_IFIFO | 0o644, 0, ctx))
        await fails(errno.ENOTDIR, fs.symlink(evil, b"n", b"t", ctx))
        await fails(errno.ENOTDIR, fs.rename(ROOT, b"sub", evil, b"n", 0, ctx))
        await fails(errno.ENOTDIR, fs.link(sub, evil, b"n", ctx))
        await fails(errno.ENOTDIR, fs.opendir(evil, ctx))
        # Unknown inodes are stale, not guessed.
        await fails(errno.ESTALE, fs.getattr(999_999_999, ctx))
        await fs.forget([(link, 1), (evil, 1), (sub, 2)])
        assert set(fs._inodes) == {ROOT}
        assert list(victim.iterdir()) == []
    finally:
        await fs.destroy()
        fs.close()


# ---- the command line --------------------------------------------------------------------


EXAMPLE = str(REPO / "examples" / "passthrough.py")


def _mounted(path: Path) -> bool:
    """Also true for a dead mount (where os.path.ismount fails with ENOTCONN)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.mark.parametrize("stop", ["umount", "SIGTERM"])
async def test_cli(tmp_path, tree, transport, stop):
    src, _ = tree
    (src / "hello").write_bytes(b"hi")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [sys.executable, EXAMPLE, str(src), str(mnt), "--transport", transport,
         "--entry-timeout", "0", "--attr-timeout", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with trio.fail_after(15):
            while not _mounted(mnt):
                assert proc.poll() is None, proc.communicate()
                await trio.sleep(0.05)
        assert await client((mnt / "hello").read_bytes) == b"hi"
        await client((mnt / "new").write_bytes, b"new")
        assert (src / "new").read_bytes() == b"new"
        fsname = [ln.split()[0] for ln in Path("/proc/mounts").read_text().splitlines()
                  if ln.split()[1] == str(mnt)]  # fmt: skip
        assert fsname == [str(src)]
        if stop == "umount":
            await client(functools.partial(subprocess.run, ["umount", str(mnt)], check=True))
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = await client(proc.communicate, timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if _mounted(mnt):  # the daemon died: do not leave a dead mount behind
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert proc.returncode == 0, err
    assert not _mounted(mnt)
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["requests"][transport] > 0 and "errors" in stats


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "fsname=a\\,allow_other"], "fsname"),
        (["-o", "subtype=x=y"], "subtype"),
        (["-o", "user_id=1001"], "user_id= is not accepted"),
        (["-o", "rootmode=40000,allow_other"], "rootmode= is not accepted"),
        (["-o", "subtype=x/y"], "contains '/'"),
        (["--entry-timeout", "-1"], "timeout"),
    ],
)
def test_cli_rejects_unsafe_options(tree, tmp_path, args, message):
    src, _ = tree
    r = subprocess.run(
        [sys.executable, EXAMPLE, str(src), str(tmp_path), *args], capture_output=True, timeout=30
    )
    assert r.returncode == 2 and message in r.stderr.decode(), r


def test_cli_rejects_bad_sources(tmp_path):
    comma = tmp_path / "with,comma"
    comma.mkdir()
    r = subprocess.run(
        [sys.executable, EXAMPLE, str(comma), str(tmp_path)], capture_output=True, timeout=30
    )
    assert r.returncode == 2 and "fsname" in r.stderr.decode() and "','" in r.stderr.decode(), r
    inner = tmp_path / "src" / "mnt"
    inner.mkdir(parents=True)
    r = subprocess.run(
        [sys.executable, EXAMPLE, str(tmp_path / "src"), str(inner)],
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 2 and "inside" in r.stderr.decode(), r
    assert not os.path.ismount(inner)
