"""memfs against a real tmpfs, side by side, on every transport.

Each test runs the same client code on a memfs mount and on a tmpfs mounted next to it
and asserts the two give the same results: the behaviours where memfs (or the
framework under it) used to differ from tmpfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import client
from memfs import MemFS

import trio_fuse_uring as tfu

libc = ctypes.CDLL(None, use_errno=True)
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # root's venv python may live where nobody can read it
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


@contextlib.contextmanager
def tmpfs_at(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "memfs-ref", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
async def roots(transport: str) -> Any:
    """(memfs, memfs root, tmpfs root): both roots mode 0777, owned by root, in a
    directory another user can reach (pytest's tmp_path is private to root). memfs has
    POSIX ACLs (-o posix_acl), as tmpfs always does.

    memfs is mounted with attr_timeout=0, so that a change it makes on its own (such as
    clearing set-group-ID on a write) is seen at once, as on tmpfs, not after the
    kernel's attribute cache expires.
    """
    base = Path(tempfile.mkdtemp(prefix="memfs-vs-tmpfs-"))
    base.chmod(0o755)
    (base / "memfs").mkdir()
    fs = MemFS()
    try:
        with tmpfs_at(base / "tmpfs") as ref:
            async with trio.open_nursery() as nursery:
                options = tfu.Options(
                    transport=transport, allow_other=True, attr_timeout=0.0, posix_acl=True
                )
                m = await nursery.start(tfu.serve, fs, base / "memfs", options)
                for root in (Path(m.mountpoint), ref):
                    await client(os.chmod, root, 0o777)
                yield fs, Path(m.mountpoint), ref
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def same(roots: Any, work: Callable[[Path], Any]) -> Any:
    """Run ``work`` under each root (in a worker thread) and assert equal results."""
    _fs, mem, ref = roots
    got_mem = await client(work, mem)
    got_ref = await client(work, ref)
    assert got_mem == got_ref, f"memfs {got_mem!r} != tmpfs {got_ref!r}"
    return got_mem


# ---- timestamps before 1970 -------------------------------------------------------------------


async def test_timestamps_before_1970(roots):
    def work(root: Path) -> list[Any]:
        f = root / "old"
        f.write_bytes(b"")
        out: list[Any] = []
        subprocess.run(["touch", "-d", "1960-01-01 12:00:00.25 UTC", str(f)], check=True)
        s = os.stat(f)
        out.append((s.st_atime_ns, s.st_mtime_ns))
        for ns in (-1, -(10**9) - 1, -(2**33) * 10**9 + 999_999_999):
            os.utime(f, ns=(ns, ns))
            s = os.stat(f)
            out.append((s.st_atime_ns, s.st_mtime_ns))
        return out

    out = await same(roots, work)
    assert out[0][1] == -315_575_999_750_000_000  # 1960-01-01 12:00:00.25


# ---- file handles (NFS export) -----------------------------------------------------------------

MAX_HANDLE_SZ = 128


def _name_to_handle(path: Path) -> bytes:
    buf = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)
    struct.pack_into("I", buf, 0, MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    _check(libc.name_to_handle_at(-100, bytes(path), buf, ctypes.byref(mount_id), 0))
    (size,) = struct.unpack_from("I", buf, 0)
    return buf.raw[: 8 + size]


def _open_by_handle(mount_fd: int, handle: bytes, flags: int) -> int:
    buf = ctypes.create_string_buffer(handle, len(handle))
    return _check(libc.open_by_handle_at(mount_fd, buf, flags))


async def test_open_by_handle_after_the_kernel_forgot_the_inode(roots):
    fs, mem, _ref = roots

    def make(root: Path) -> tuple[bytes, bytes]:
        (root / "d").mkdir()
        (root / "d" / "f").write_bytes(b"by handle")
        return _name_to_handle(root / "d" / "f"), _name_to_handle(root / "d")

    def use(root: Path, handles: tuple[bytes, bytes]) -> list[Any]:
        mount_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = _open_by_handle(mount_fd, handles[0], os.O_RDONLY)
            try:
                data = os.read(fd, 100)
            finally:
                os.close(fd)
            fd = _open_by_handle(mount_fd, handles[1], os.O_RDONLY | os.O_DIRECTORY)
            try:
                names = sorted(os.listdir(fd))
                parent = os.stat("..", dir_fd=fd).st_ino == os.stat(root).st_ino
            finally:
                os.close(fd)
            return [data, names, parent]
        finally:
            os.close(mount_fd)

    results = []
    for root in roots[1:]:
        handles = await client(make, root)
        if root == mem:
            ino = (await client(os.stat, root / "d" / "f")).st_ino
            # The kernel forgets the inodes (FORGET reaches memfs): the handle must be
            # resolved by LOOKUP(inode, ".") and the directory's parent by "..".
            deadline = time.monotonic() + 20
            while fs.inodes[ino].lookups and time.monotonic() < deadline:
                await client(Path("/proc/sys/vm/drop_caches").write_text, "2\n")
            assert not fs.inodes[ino].lookups, "the kernel kept its reference"
        results.append(await client(use, root, handles))
    assert results[0] == results[1] == [b"by handle", ["f"], True]


# ---- locks -------------------------------------------------------------------------------------


def _ofd(fd: int, typ: int, cmd: int = F_OFD_SETLK) -> None:
    fcntl.fcntl(fd, cmd, struct.pack("hhqqi", typ, 0, 0, 0, 0))


async def test_ofd_locks_end_with_the_last_close_of_their_file(roots):
    """Threads share one descriptor table (CLONE_FILES): an OFD lock taken and closed
    in one of them must be gone, and a waiter must get the lock once it is."""

    def work(root: Path) -> list[Any]:
        f = root / "lk"
        f.write_bytes(b"")
        out: list[Any] = []

        def lock_and_close() -> None:
            fd = os.open(f, os.O_RDWR)
            _ofd(fd, fcntl.F_WRLCK)
            os.close(fd)

        t = threading.Thread(target=lock_and_close)
        t.start()
        t.join()
        held = os.open(f, os.O_RDWR)  # another open file: another OFD owner
        try:
            _ofd(held, fcntl.F_WRLCK)
            out.append("relocked")
            other = os.open(f, os.O_RDWR)
            try:
                try:
                    _ofd(other, fcntl.F_WRLCK)
                except OSError as exc:
                    out.append(errno.errorcode[exc.errno])
                got: list[str] = []
                waiter = threading.Thread(
                    target=lambda: (_ofd(other, fcntl.F_WRLCK, F_OFD_SETLKW), got.append("got"))
                )
                waiter.start()
                time.sleep(0.2)
                out.append(list(got))
                dup = os.dup(held)
                os.close(held)  # the dup keeps the open file: still locked
                time.sleep(0.2)
                out.append(list(got))
                os.close(dup)  # the last close: the waiter gets it
                held = -1
                waiter.join(10)
                out.append(got)
            finally:
                os.close(other)
        finally:
            if held >= 0:
                os.close(held)
        return out

    assert await same(roots, work) == ["relocked", "EAGAIN", [], [], ["got"]]


def _flocks_of(ino: int) -> int:
    with open("/proc/locks") as f:
        return sum(1 for line in f if " FLOCK " in line and line.split()[5].endswith(f":{ino}"))


async def test_flock_locks_are_kept_by_the_kernel(roots):
    """As on tmpfs, flock locks are the kernel's: listed in /proc/locks."""

    def work(root: Path) -> list[Any]:
        f = root / "fl"
        f.write_bytes(b"")
        a, b = os.open(f, os.O_RDONLY), os.open(f, os.O_RDONLY)
        ino = os.fstat(a).st_ino
        try:
            fcntl.flock(a, fcntl.LOCK_EX)
            try:
                fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
                blocked = False
            except BlockingIOError:
                blocked = True
            return [blocked, _flocks_of(ino)]
        finally:
            os.close(a)
            os.close(b)

    assert await same(roots, work) == [True, 1]


# ---- set-group-ID ------------------------------------------------------------------------------

_WRITERS = """
import os, sys
root = sys.argv[1]
out = []
for name in sorted(os.listdir(root)):
    kind = name.split("-")[0]
    fd = os.open(os.path.join(root, name), os.O_RDWR)
    try:
        if kind == "write":
            os.pwrite(fd, b"x", 0)
        elif kind == "fallocate":
            os.posix_fallocate(fd, 0, 4096)
        else:
            os.ftruncate(fd, 10)
        out.append((name, oct(os.fstat(fd).st_mode)))
    finally:
        os.close(fd)
print(out)
"""


async def test_set_group_id_cleared_for_writers_outside_the_group(roots):
    """write, fallocate and truncate by an unprivileged user clear set-user-ID, and
    set-group-ID unless it only marks mandatory locking and the writer is in the group."""

    def work(root: Path) -> str:
        d = root / "sg"
        d.mkdir(mode=0o777)
        os.chmod(d, 0o777)
        for kind in ("write", "fallocate", "truncate"):
            for mode, gid in ((0o2666, 0), (0o2777, 0), (0o6777, 0), (0o2666, NOBODY)):
                f = d / f"{kind}-{mode:o}-{gid}"
                f.write_bytes(b"")
                os.chown(f, 0, gid)
                os.chmod(f, mode)
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c", _WRITERS, str(d)], user=NOBODY, group=NOBODY, cwd="/",
            extra_groups=[], capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = await same(roots, work)
    assert "('fallocate-2666-0', '0o100666')" in out and "'write-2666-65534', '0o102666'" in out


# ---- readdir while entries are renamed ---------------------------------------------------------


def _getdents(fd: int, size: int) -> list[tuple[int, str]]:
    buf = ctypes.create_string_buffer(size)
    n = _check(libc.syscall(217, fd, buf, size))  # getdents64
    out, pos = [], 0
    while pos < n:
        ino, _off, reclen, _typ = struct.unpack_from("QqHB", buf, pos)
        name = buf.raw[pos + 19 : pos + reclen].split(b"\0", 1)[0].decode()
        out.append((ino, name))
        pos += reclen
    return out


def _list_while_renaming(d: Path, rename: Callable[[int], None]) -> int:
    """List ``d`` in small getdents calls, calling ``rename(i)`` for every entry after
    the first call; returns how many inodes were listed more than once."""
    for i in range(200):
        (d / f"f{i:03}").write_bytes(b"")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen = _getdents(fd, 1024)  # the first few entries
        for i in range(200):
            rename(i)
        while batch := _getdents(fd, 1024):
            seen += batch
    finally:
        os.close(fd)
    inodes = [ino for ino, name in seen if name not in (".", "..")]
    return len(inodes) - len(set(inodes))


async def test_readdir_sees_each_entry_once_while_they_are_renamed(roots):
    def over(root: Path) -> int:
        # Renamed over an existing name: the entry takes a place the listing already
        # had (tmpfs: the replaced entry's offset), never a second one.
        d = root / "over"
        d.mkdir()

        def rename(i: int) -> None:
            if i % 2 == 0:
                os.rename(d / f"f{i:03}", d / f"f{i + 1:03}")

        return _list_while_renaming(d, rename)

    def fresh(root: Path) -> int:
        d = root / "fresh"
        d.mkdir()
        return _list_while_renaming(d, lambda i: os.rename(d / f"f{i:03}", d / f"g{i:03}"))

    assert await same(roots, over) == 0
    # To a new name, memfs keeps the entry's place too (tmpfs gives it a new offset at
    # the end, so a listing in progress shows it twice: POSIX allows either).
    assert await client(fresh, roots[1]) == 0


# ---- sparse files ------------------------------------------------------------------------------


async def test_seek_data_and_blocks_at_page_granularity(roots):
    def work(root: Path) -> list[Any]:
        fd = os.open(root / "sparse", os.O_CREAT | os.O_RDWR, 0o644)
        out: list[Any] = []
        try:
            os.pwrite(fd, b"a", 8192 + 10)
            os.pwrite(fd, b"b", 70_000)
            os.pwrite(fd, b"c" * 9000, 200_000)
            _check(libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
                                  ctypes.c_long(204_800), ctypes.c_long(4096)))  # fmt: skip
            _check(libc.fallocate(fd, 0, ctypes.c_long(300_000), ctypes.c_long(5000)))
            os.ftruncate(fd, 302_000)
            out.append(os.fstat(fd).st_blocks)
            for off in (0, 8192, 8203, 12288, 65536, 70_000, 71_000, 200_000, 204_800, 300_000):
                for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                    try:
                        out.append(os.lseek(fd, off, whence))
                    except OSError as exc:
                        out.append(errno.errorcode[exc.errno])
        finally:
            os.close(fd)
        return out

    await same(roots, work)


# ---- inode flags (chattr) ----------------------------------------------------------------------

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NOATIME_FL = 0x10, 0x20, 0x80


def _setflags(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags))
    finally:
        os.close(fd)


def _getflags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0])
    finally:
        os.close(fd)


def _attempts(root: Path) -> list[Any]:
    """Every kind of change to an immutable, then an append-only, file and directory."""
    out: list[Any] = []

    def attempt(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
            out.append("ok")
        except OSError as exc:
            out.append(errno.errorcode[exc.errno])

    def write(path: Path, flags: int) -> None:
        fd = os.open(path, os.O_WRONLY | flags)
        try:
            os.write(fd, b"more")
        finally:
            os.close(fd)

    for flag in (FS_IMMUTABLE_FL, FS_APPEND_FL):
        f, d = root / f"f{flag}", root / f"d{flag}"
        f.write_bytes(b"data")
        d.mkdir()
        (d / "inside").write_bytes(b"")
        for path in (f, d):
            _setflags(path, flag)
            out.append(_getflags(path))
        attempt(write, f, 0)
        attempt(write, f, os.O_APPEND)
        attempt(write, f, os.O_TRUNC)
        attempt(os.truncate, f, 1)
        attempt(os.chmod, f, 0o600)
        attempt(os.chown, f, 1, 1)
        attempt(os.utime, f, (1, 1))
        attempt(os.utime, f, None)
        attempt(os.setxattr, f, "user.x", b"1")
        attempt(os.link, f, root / f"link{flag}")
        attempt(os.rename, f, root / f"moved{flag}")
        attempt(os.unlink, f)
        attempt((d / "new").write_bytes, b"")
        attempt(os.mkdir, d / "sub")
        attempt(os.unlink, d / "inside")
        attempt(os.rename, d / "inside", d / "renamed")
        attempt(os.rmdir, d)
        out.append(f.read_bytes())
        for path in (f, d):
            _setflags(path, 0)
    # noatime (+A): reads leave atime alone, and new files inherit the flag.
    d = root / "noatime"
    d.mkdir()
    _setflags(d, FS_NOATIME_FL)
    f = d / "f"
    f.write_bytes(b"x")
    out.append(_getflags(f))
    os.utime(f, ns=(10**9, 2 * 10**9))
    f.read_bytes()
    out.append(os.stat(f).st_atime_ns)
    return out


async def test_inode_flags_like_tmpfs(roots):
    out = await same(roots, _attempts)
    assert out[:4] == [FS_IMMUTABLE_FL, FS_IMMUTABLE_FL, "EPERM", "EPERM"]
    assert out[-2:] == [FS_NOATIME_FL, 10**9]


# ---- RENAME_WHITEOUT ---------------------------------------------------------------------------

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4


async def test_rename_whiteout_like_tmpfs(roots):
    def work(root: Path) -> list[Any]:
        out: list[Any] = []
        d = root / "w"
        d.mkdir(mode=0o2777)
        os.chown(d, 0, NOBODY)  # set-group-ID directory: the whiteout takes its group
        os.chmod(d, 0o2777)
        for name in ("a", "b", "c"):
            (d / name).write_bytes(name.encode())
        for old, new, flags in (
            ("a", "x", RENAME_WHITEOUT),
            ("b", "c", RENAME_WHITEOUT),  # over an existing file
            ("c", "x", RENAME_WHITEOUT | RENAME_NOREPLACE),
            ("c", "x", RENAME_WHITEOUT | RENAME_EXCHANGE),
        ):
            ret = libc.renameat2(-100, bytes(d / old), -100, bytes(d / new), flags)
            out.append(errno.errorcode[ctypes.get_errno()] if ret < 0 else "ok")
        for name in sorted(os.listdir(d)):
            s = os.lstat(d / name)
            out.append((name, oct(s.st_mode), s.st_rdev, s.st_nlink, s.st_uid, s.st_gid))
        return out

    out = await same(roots, work)
    assert ("a", "0o20000", 0, 1, 0, NOBODY) in out


# ---- creation time -----------------------------------------------------------------------------

STATX_BTIME = 0x800


def _btime(path: Path) -> int | None:
    buf = ctypes.create_string_buffer(256)
    _check(libc.statx(-100, bytes(path), 0, 0x7FF | STATX_BTIME, buf))
    (mask,) = struct.unpack_from("I", buf, 0)
    sec, nsec = struct.unpack_from("qI", buf, 80)
    return sec * 10**9 + nsec if mask & STATX_BTIME else None


async def test_creation_time_through_statx(roots):
    def work(root: Path) -> list[Any]:
        before = time.time_ns() - 20_000_000  # tmpfs's clock is coarse: a few ms behind
        f = root / "born"
        f.write_bytes(b"")
        after = time.time_ns()
        btime = _btime(f)
        assert btime is not None
        time.sleep(0.02)
        f.write_bytes(b"changed")
        os.chmod(f, 0o600)
        os.utime(f, ns=(1, 1))
        return [before <= btime <= after, _btime(f) == btime, os.stat(f).st_mtime_ns]

    assert await same(roots, work) == [True, True, 1]


# ---- POSIX ACLs --------------------------------------------------------------------------------

ACL_UNDEFINED = 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 1, 2, 4, 8, 16, 32


def acl(*entries: tuple[int, int, int]) -> bytes:
    """An ACL in the system.posix_acl_* xattr format (what setfacl writes)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


U = ACL_UNDEFINED
NAMED = acl((USER_OBJ, 6, U), (USER, 4, NOBODY), (GROUP_OBJ, 4, U), (MASK, 4, U), (OTHER, 0, U))
NAMED_RW = acl((USER_OBJ, 7, U), (USER, 6, NOBODY), (GROUP_OBJ, 5, U), (MASK, 7, U), (OTHER, 1, U))
PLAIN = acl((USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 5, U))
BAD = acl((USER_OBJ, 7, U), (USER, 6, NOBODY), (GROUP_OBJ, 5, U), (OTHER, 5, U))  # no mask

_READ_AS_NOBODY = """
import os, sys
out = []
for path in sys.argv[1:]:
    try:
        out.append(open(path, "rb").read())
    except OSError as exc:
        out.append(exc.errno)
try:  # the owner (nobody) sets an access ACL on a set-group-ID file of another group
    os.setxattr(sys.argv[-1], "system.posix_acl_access", bytes.fromhex(os.environ["ACL"]))
    out.append(oct(os.stat(sys.argv[-1]).st_mode))
except OSError as exc:
    out.append(exc.errno)
print(out)
"""


async def test_posix_acls_like_tmpfs(roots):
    """Stored and validated, the mode kept in step both ways, default ACLs inherited
    (instead of the umask), and enforced by the kernel for another user."""

    def work(root: Path) -> list[Any]:
        out: list[Any] = []

        def get(path: Path, name: str) -> Any:
            try:
                return os.getxattr(path, name).hex()
            except OSError as exc:
                return errno.errorcode[exc.errno]

        def attempt(fn: Callable[..., Any], *args: Any) -> None:
            try:
                fn(*args)
                out.append("ok")
            except OSError as exc:
                out.append(errno.errorcode[exc.errno])

        d = root / "acl"
        d.mkdir(mode=0o755)
        f = d / "f"
        f.write_bytes(b"secret")
        os.chmod(f, 0o600)
        attempt(os.setxattr, f, "system.posix_acl_access", NAMED)
        out += [oct(os.stat(f).st_mode), get(f, "system.posix_acl_access")]
        os.chmod(f, 0o640)  # the ACL's mask follows the group bits
        out.append(get(f, "system.posix_acl_access"))
        attempt(os.setxattr, f, "system.posix_acl_access", PLAIN)  # equivalent: mode only
        out += [oct(os.stat(f).st_mode), get(f, "system.posix_acl_access")]
        attempt(os.setxattr, f, "system.posix_acl_access", BAD)
        attempt(os.setxattr, f, "system.posix_acl_default", NAMED)  # not a directory
        attempt(os.setxattr, f, "system.posix_acl_access", NAMED)
        attempt(os.removexattr, f, "system.posix_acl_access")
        out += [oct(os.stat(f).st_mode), get(f, "system.posix_acl_access")]
        # Inheritance: the default ACL, not the umask, shapes new files and directories.
        attempt(os.setxattr, d, "system.posix_acl_default", NAMED_RW)
        old = os.umask(0o077)
        try:
            (d / "new").write_bytes(b"inherited")
            os.mkdir(d / "sub", 0o750)
            os.symlink("new", d / "link")
        finally:
            os.umask(old)
        for path in (d / "new", d / "sub"):
            out += [oct(os.stat(path).st_mode), get(path, "system.posix_acl_access")]
            out.append(get(path, "system.posix_acl_default"))
        out.append(sorted(os.listxattr(d / "sub")))
        # Enforced by the kernel: nobody may read f only through a named entry.
        os.chmod(f, 0o600)
        os.setxattr(f, "system.posix_acl_access", NAMED)
        g = d / "sgid"
        g.write_bytes(b"")
        os.chown(g, NOBODY, 0)
        os.chmod(g, 0o2660)
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c", _READ_AS_NOBODY, str(f), str(d / "new"), str(g)],
            user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True,
            timeout=30, cwd="/", env={"ACL": NAMED_RW.hex()},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout)
        return out

    out = await same(roots, work)
    assert out[:2] == ["ok", "0o100640"] and "EINVAL" in out
    # nobody owns sgid but is not in its group: its ACL set drops set-group-ID.
    assert out[-1].strip() == "[b'secret', b'inherited', b'', '0o100771']"


async def test_acls_refused_without_posix_acl(mount_ops):
    fs = MemFS()
    mnt = Path((await mount_ops(fs)).mountpoint)
    await client((mnt / "f").write_bytes, b"")
    with pytest.raises(OSError) as exc:
        await client(os.setxattr, mnt / "f", "system.posix_acl_access", NAMED)
    assert exc.value.errno == errno.EOPNOTSUPP
