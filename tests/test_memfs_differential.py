"""Differential test: the same random operations on memfs and on a real tmpfs must give
the same results, the same errnos and the same resulting trees.

Hypothesis draws a list of operations; each example runs it against both filesystems
from a worker thread (the test's trio thread serves the memfs mount meanwhile).
``HYPOTHESIS_PROFILE=long`` (or ``MEMFS_FUZZ_EXAMPLES=N``) runs a longer search.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memfs import CHUNK, MemFS

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_FLAGS = [0, 1, 2]  # 0, RENAME_NOREPLACE, RENAME_EXCHANGE


def _examples() -> int:
    if "MEMFS_FUZZ_EXAMPLES" in os.environ:
        return int(os.environ["MEMFS_FUZZ_EXAMPLES"])
    return 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 25


# ---- the operations ---------------------------------------------------------------------------

PATHS = ["a", "b", "c", "d", "e", "d/a", "d/b", "d/e", "d/e/a", "e/a", "e/d"]
SYMLINK_TARGETS = ["a", "b", "d", "../a", "d/a", "missing", "/nonexistent/x"]
XATTR_NAMES = ["user.x", "user.y", "user.long." + "n" * 40]

# Every example starts from this tree, so that most operations meet existing files.
SETUP: list[tuple[Any, ...]] = [
    ("mkdir", "d", 0o755), ("mkdir", "e", 0o755), ("mkdir", "d/e", 0o755),
    ("create", "a", 0o644), ("write", "a", 0, b"hello"), ("create", "d/a", 0o600),
    ("write", "d/a", CHUNK - 2, b"across a chunk"), ("symlink", "a", "c"),
    ("link", "a", "e/a"), ("setxattr", "a", "user.x", b"1", 0),
]  # fmt: skip

paths = st.sampled_from(PATHS)
data = st.binary(min_size=0, max_size=300)
offsets = st.one_of(
    st.integers(0, 600), st.integers(CHUNK - 300, CHUNK + 300), st.integers(0, 3 * CHUNK)
)
modes = st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o2755, 0o1777, 0o000, 0o777])
fd_index = st.integers(0, 3)

operations = st.one_of(
    st.tuples(st.just("create"), paths, modes),
    st.tuples(st.just("write"), paths, offsets, data),
    st.tuples(st.just("truncate"), paths, offsets),
    st.tuples(st.just("read"), paths),
    st.tuples(st.just("rename"), paths, paths, st.sampled_from(RENAME_FLAGS)),
    st.tuples(st.just("link"), paths, paths),
    st.tuples(st.just("unlink"), paths),
    st.tuples(st.just("mkdir"), paths, modes),
    st.tuples(st.just("rmdir"), paths),
    st.tuples(st.just("symlink"), st.sampled_from(SYMLINK_TARGETS), paths),
    st.tuples(st.just("readlink"), paths),
    st.tuples(st.just("chmod"), paths, modes),
    st.tuples(st.just("utime"), paths, st.integers(0, 2**40)),
    st.tuples(
        st.just("setxattr"),
        paths,
        st.sampled_from(XATTR_NAMES),
        st.binary(max_size=40),
        st.sampled_from([0, os.XATTR_CREATE, os.XATTR_REPLACE]),
    ),
    st.tuples(st.just("getxattr"), paths, st.sampled_from(XATTR_NAMES)),
    st.tuples(st.just("removexattr"), paths, st.sampled_from(XATTR_NAMES)),
    st.tuples(st.just("listxattr"), paths),
    st.tuples(st.just("readdir"), st.sampled_from(["", "d", "e", "d/e", "a"])),
    st.tuples(st.just("stat"), paths),
    # Open files, so that unlink/rename while open is exercised.
    st.tuples(st.just("open"), paths),
    st.tuples(st.just("fdwrite"), fd_index, offsets, data),
    st.tuples(st.just("fdread"), fd_index),
    st.tuples(st.just("fdstat"), fd_index),
    st.tuples(st.just("fdtruncate"), fd_index, offsets),
    st.tuples(st.just("close"), fd_index),
)


def _apply(root: Path, op: tuple[Any, ...], fds: list[int]) -> Any:
    """Run one operation under ``root``; return its result (never inode numbers or
    times), or the errno name it failed with."""
    kind, *args = op
    p = lambda rel: root / rel  # noqa: E731
    try:
        match kind:
            case "create":
                os.close(os.open(p(args[0]), os.O_CREAT | os.O_EXCL | os.O_WRONLY, args[1]))
            case "write":
                fd = os.open(p(args[0]), os.O_WRONLY)
                try:
                    return os.pwrite(fd, args[2], args[1])
                finally:
                    os.close(fd)
            case "truncate":
                os.truncate(p(args[0]), args[1])
            case "read":
                return p(args[0]).read_bytes()
            case "rename":
                src, dst = bytes(p(args[0])), bytes(p(args[1]))
                if libc.renameat2(AT_FDCWD, src, AT_FDCWD, dst, args[2]) < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            case "link":
                os.link(p(args[0]), p(args[1]), follow_symlinks=False)
            case "unlink":
                os.unlink(p(args[0]))
            case "mkdir":
                os.mkdir(p(args[0]), args[1])
            case "rmdir":
                os.rmdir(p(args[0]))
            case "symlink":
                os.symlink(args[0], p(args[1]))
            case "readlink":
                return os.readlink(p(args[0]))
            case "chmod":
                os.chmod(p(args[0]), args[1])
            case "utime":
                os.utime(p(args[0]), ns=(args[1], args[1] + 1))
            case "setxattr":
                os.setxattr(p(args[0]), args[1], args[2], args[3])
            case "getxattr":
                return os.getxattr(p(args[0]), args[1])
            case "removexattr":
                os.removexattr(p(args[0]), args[1])
            case "listxattr":
                return sorted(n for n in os.listxattr(p(args[0])) if n.startswith("user."))
            case "readdir":
                return sorted(os.listdir(p(args[0])))
            case "stat":
                s = os.lstat(p(args[0]))
                return _stat_summary(s)
            case "open":
                if len(fds) >= 4:
                    return "full"
                fds.append(os.open(p(args[0]), os.O_RDWR))
                return len(fds) - 1
            case "fdwrite" | "fdread" | "fdstat" | "fdtruncate" | "close":
                if args[0] >= len(fds):
                    return "nofd"
                fd = fds[args[0]]
                if kind == "fdwrite":
                    return os.pwrite(fd, args[2], args[1])
                if kind == "fdread":
                    return os.pread(fd, 4 * CHUNK, 0)
                if kind == "fdstat":
                    return _stat_summary(os.fstat(fd))
                if kind == "fdtruncate":
                    os.ftruncate(fd, args[1])
                    return None
                os.close(fds.pop(args[0]))
            case _:
                raise AssertionError(kind)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)
    return None


def _stat_summary(s: os.stat_result) -> tuple[int, int, int, int | None]:
    # Directory sizes are compared too: memfs mimics tmpfs's 20 bytes per entry.
    return (s.st_mode, s.st_nlink, s.st_size, s.st_uid)


def snapshot(root: Path) -> dict[str, Any]:
    """The tree under ``root``: for each path its type, mode, link count, size, content
    or target, user xattrs, and which paths are hard links of one another."""
    tree: dict[str, Any] = {}
    inode_ids: dict[int, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            s = os.lstat(path)
            entry: dict[str, Any] = {
                "mode": oct(s.st_mode), "nlink": s.st_nlink, "size": s.st_size,
                "uid": s.st_uid, "gid": s.st_gid,
                "link_group": inode_ids.setdefault(s.st_ino, len(inode_ids)),
            }  # fmt: skip
            if stat.S_ISREG(s.st_mode):
                entry["data"] = path.read_bytes()
            elif stat.S_ISLNK(s.st_mode):
                entry["target"] = os.readlink(path)
            if not stat.S_ISLNK(s.st_mode):
                entry["xattrs"] = {
                    n: os.getxattr(path, n)
                    for n in sorted(os.listxattr(path))
                    if n.startswith("user.")
                }
            tree[str(path.relative_to(root))] = entry
    return tree


def clear(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            os.chmod(child, 0o755)
            for sub, dirs, _files in os.walk(child):
                for d in dirs:
                    os.chmod(Path(sub) / d, 0o755, follow_symlinks=False)
            shutil.rmtree(child)
        else:
            child.unlink()


@contextmanager
def tmpfs_at(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=755", "memfs-ref", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def run_differential(memfs_root: Path, tmpfs_root: Path, fs: MemFS) -> None:
    """Called in a worker thread: the hypothesis search itself."""
    seen: Counter[str] = Counter()

    @settings(
        max_examples=_examples(), deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip
    @given(st.lists(operations, min_size=3, max_size=50))
    def check(ops: list[tuple[Any, ...]]) -> None:
        fds: dict[Path, list[int]] = {memfs_root: [], tmpfs_root: []}
        try:
            for i, op in enumerate(SETUP + ops):
                results = [_apply(root, op, fds[root]) for root in (memfs_root, tmpfs_root)]
                outcome = (
                    results[0] if isinstance(results[0], str) and results[0].isupper() else "ok"
                )
                seen[f"{op[0]} {outcome}"] += 1
                assert results[0] == results[1], (
                    f"op {i} {op}: memfs {results[0]!r} != tmpfs {results[1]!r}"
                )
            # Files still open (maybe unlinked) must agree too.
            open_files = [
                [(_stat_summary(os.fstat(fd)), os.pread(fd, 4 * CHUNK, 0)) for fd in fds[root]]
                for root in (memfs_root, tmpfs_root)
            ]
            assert open_files[0] == open_files[1]
            trees = [snapshot(root) for root in (memfs_root, tmpfs_root)]
            assert trees[0] == trees[1]
            trio.from_thread.run_sync(fs.check_invariants)
        finally:
            for root in fds:
                for fd in fds[root]:
                    os.close(fd)
            clear(memfs_root)
            clear(tmpfs_root)

    check()
    # With -s: what the search covered (operations and how they ended).
    print(
        f"\n{sum(seen.values())} operations:",
        ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())),
    )


async def test_memfs_matches_tmpfs(mount_ops, tmp_path):
    fs = MemFS()
    m = await mount_ops(fs)
    memfs_root = Path(m.mountpoint)
    with tmpfs_at(tmp_path / "tmpfs") as tmpfs_root:
        # Both roots alike: tmpfs's root was made with mode 755 and root's owner.
        await client(os.chmod, memfs_root, 0o755)
        old = os.umask(0o022)
        try:
            await client(run_differential, memfs_root, tmpfs_root, fs, timeout=3600)
        finally:
            os.umask(old)
    fs.check_invariants()
    # The kernel still holds references to some inodes; everything else was freed.
    assert len(fs.inodes) <= 1 + sum(1 for i in fs.inodes.values() if i.lookups)


@pytest.mark.parametrize("rel", ["a", "d/e/a"])
def test_snapshot_helper(tmp_path, rel):
    """The comparison sees content, modes and hard-link topology."""
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"x")
    os.link(tmp_path / rel, tmp_path / "h")
    snap = snapshot(tmp_path)
    assert snap[rel]["link_group"] == snap["h"]["link_group"] and snap[rel]["data"] == b"x"
