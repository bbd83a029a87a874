"""Generic mount flags (suid, dev, noexec, sync, dirsync and the atime options): what
the kernel applied is read back from /proc/self/mountinfo and compared with a tmpfs
mounted with the same options, and their effects are checked through the kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio
from helpers import REPO, client
from memfs import MemFS

import trio_fuse_uring as tfu
from trio_fuse_uring._mountlib import is_mountpoint

NOBODY = 65534
MEMFS = str(REPO / "examples" / "memfs.py")
_PER_MOUNT = {"ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime"}
_PER_SUPER = {"sync", "dirsync"}


def flags_of(path: Path) -> set[str]:
    """The generic flags of the mount at ``path``, straight from mountinfo."""
    with open("/proc/self/mountinfo") as f:
        lines = [line.split() for line in f]
    fields = [fl for fl in lines if fl[4] == str(path)][-1]
    sep = fields.index("-", 6)
    return (set(fields[5].split(",")) & _PER_MOUNT) | (set(fields[sep + 3].split(",")) & _PER_SUPER)


@contextmanager
def tmpfs_at(path: Path, options: tuple[str, ...]) -> Iterator[Path]:
    path.mkdir()
    opts = ",".join(("size=16m", "mode=777", *options))
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "flags-ref", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@asynccontextmanager
async def memfs_at(
    path: Path, transport: str, options: tuple[str, ...]
) -> AsyncIterator[tuple[MemFS, Path]]:
    path.mkdir()
    fs = MemFS()
    opts = tfu.Options(transport=transport, allow_other=True, attr_timeout=0.0, extra=options)
    async with trio.open_nursery() as nursery:
        m = await nursery.start(tfu.serve, fs, path, opts)
        if "ro" not in options:
            await client(os.chmod, path, 0o777)
        yield fs, Path(m.mountpoint)
        nursery.cancel_scope.cancel()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory another uid can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="tfu-flags-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "options",
    [
        ("suid", "dev"),
        ("suid", "dev", "noexec", "noatime"),
        ("suid", "dev", "nodiratime", "strictatime"),
        ("suid", "dev", "sync", "dirsync", "relatime"),
        ("nosuid", "nodev", "exec", "ro"),
        ("noatime", "atime", "suid", "nosuid", "dev"),  # a later option wins
    ],
    ids=lambda o: ",".join(o),
)
async def test_flags_as_root_read_back_as_tmpfs(transport, public_dir, options):
    with tmpfs_at(public_dir / "tmpfs", options) as ref:
        async with memfs_at(public_dir / "memfs", transport, options) as (fs, mnt):
            got, want = flags_of(mnt), flags_of(ref)
            policy = fs.atime_policy
    assert got == want
    # The filesystem learned the atime policy (InitInfo.mount_flags): the last one given.
    last = [o for o in options if o in ("noatime", "atime", "relatime", "strictatime")]
    assert policy == (last[-1] if last and last[-1] != "atime" else "relatime")


async def test_nosuid_and_nodev_by_default(transport, public_dir):
    async with memfs_at(public_dir / "memfs", transport, ()) as (fs, mnt):
        assert flags_of(mnt) >= {"nosuid", "nodev", "relatime"}
        assert fs.atime_policy == "relatime"


_EXEC = """
import os, subprocess, sys
mnt = sys.argv[1]
out = []
for name in ("id-suid", "script"):
    try:
        r = subprocess.run([os.path.join(mnt, name)], capture_output=True, text=True)
        out.append("euid=0" in r.stdout if name == "id-suid" else r.stdout.strip())
    except OSError as exc:
        out.append(exc.errno)
try:
    with open(os.path.join(mnt, "null"), "wb") as f:
        out.append(f.write(b"gone!"))
except OSError as exc:
    out.append(exc.errno)
print(out)
"""


@pytest.mark.parametrize(
    "options, expected",
    [
        (("suid", "dev"), [True, "ran", 5]),
        ((), [False, "ran", 13]),  # nosuid: the set-user-ID bit is ignored; nodev: EACCES
        (("suid", "dev", "noexec"), [13, 13, 5]),
    ],
    ids=["suid,dev", "default", "noexec"],
)
async def test_suid_dev_and_noexec_take_effect(transport, public_dir, options, expected):
    async with memfs_at(public_dir / "memfs", transport, options) as (_fs, mnt):

        def setup() -> None:
            shutil.copy("/usr/bin/id", mnt / "id-suid")
            os.chmod(mnt / "id-suid", 0o4755)
            (mnt / "script").write_text("#!/bin/sh\necho ran\n")
            os.chmod(mnt / "script", 0o755)
            os.mknod(mnt / "null", 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null
            os.chmod(mnt / "null", 0o666)

        await client(setup)
        proc = await client(
            lambda: subprocess.run(
                ["/usr/bin/python3", "-c", _EXEC, str(mnt)], user=NOBODY, group=NOBODY,
                extra_groups=[], capture_output=True, text=True, timeout=30, cwd="/",
            )
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(expected)


def _atime_effects(root: Path) -> list[bool]:
    """Which accesses update atime: a read when atime is older than mtime, a second
    read (atime now newer than mtime and ctime), a listing of a directory whose atime
    is older than its mtime."""
    now = time.time_ns()
    old, older = now - 60 * 10**9, now - 120 * 10**9
    f, d = root / "f", root / "d"
    f.write_bytes(b"data")
    d.mkdir()
    out = []
    os.utime(f, ns=(older, old))
    f.read_bytes()
    first = os.stat(f).st_atime_ns
    out.append(first != older)
    time.sleep(0.05)
    f.read_bytes()
    out.append(os.stat(f).st_atime_ns != first)
    os.utime(d, ns=(older, old))
    os.listdir(d)
    out.append(os.stat(d).st_atime_ns != older)
    return out


@pytest.mark.parametrize(
    "options, expected",
    [
        ((), [True, False, True]),
        (("noatime",), [False, False, False]),
        (("strictatime",), [True, True, True]),
        (("nodiratime",), [True, False, False]),
        (("strictatime", "nodiratime"), [True, True, False]),
    ],
    ids=["relatime", "noatime", "strictatime", "nodiratime", "strict+nodiratime"],
)
async def test_atime_follows_the_mount_flags_as_on_tmpfs(transport, public_dir, options, expected):
    with tmpfs_at(public_dir / "tmpfs", options) as ref:
        async with memfs_at(public_dir / "memfs", transport, options) as (_fs, mnt):
            got = await client(_atime_effects, mnt)
        want = await client(_atime_effects, ref)
    assert want == expected  # what the kernel does for tmpfs
    assert got == want


async def test_unprivileged_mounts_keep_fusermount3_rules(transport, public_dir):
    """fusermount3 refuses suid and dev to other users (always nosuid,nodev) but
    applies the harmless flags."""
    if shutil.which("setpriv") is None or shutil.which("fusermount3") is None:
        pytest.skip("needs setpriv and fusermount3")
    mnt = public_dir / "m"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    cmd = [*as_nobody, sys.executable, MEMFS, str(mnt), "--transport", transport,
           "-o", "suid,dev,noexec,noatime"]  # fmt: skip
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with trio.fail_after(15):
            while not is_mountpoint(str(mnt)):
                assert proc.returncode is None, "memfs exited before mounting"
                await trio.sleep(0.02)
        flags = flags_of(mnt)
        await trio.run_process([*as_nobody, "fusermount3", "-u", str(mnt)])
        with trio.fail_after(15):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        assert proc.stderr is not None
        await proc.stderr.aclose()
    assert flags >= {"nosuid", "nodev", "noexec", "noatime"}


def test_flag_parsing_unit() -> None:
    from trio_fuse_uring import _mountlib as M

    def flags(*extra: str, ro: bool = False) -> int:
        return M._split_flags(tfu.Options(extra=extra, read_only=ro))[0]

    assert flags() == M.MS_NOSUID | M.MS_NODEV
    assert flags("suid", "dev") == 0
    assert flags("suid", "nosuid") == M.MS_NOSUID | M.MS_NODEV
    assert flags("noatime", "strictatime", "dev", "suid") == M.MS_STRICTATIME
    assert flags("ro", "rw", "suid", "dev") == 0
    assert flags(ro=True) & M.MS_RDONLY
    assert M._split_flags(tfu.Options(extra=("max_read=4096", "dev")))[1] == ["max_read=4096"]
