"""pyfuse3 programs on trio-fuse-uring: pyfuse3's own examples and test suite, unmodified.

pyfuse3's sdist is fetched at test time (``tests/pyfuse3_sdist.py``); its files import
``pyfuse3``, which resolves to ``trio_fuse_uring.compat.pyfuse3`` through the runner or
the alias path entry. The shim's own translations (modes, setattr fields, readdir's
lookup counting, access, xattr flags) are tested in-process through the kernel.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import IN_CI, client
from pyfuse3_sdist import sdist_dir

import trio_fuse_uring.compat.pyfuse3 as pyfuse3
from trio_fuse_uring.compat.pyfuse3 import _alias, _api

RUNNER = [sys.executable, "-m", "trio_fuse_uring.compat.pyfuse3"]

# pyfuse3 tests that cannot pass here, with why (also listed in docs/porting-pyfuse3.md).
# None so far: every test of pyfuse3 3.5.0's suite runs.
SKIPPED_PYFUSE3_TESTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def sdist() -> Path:
    root, why = sdist_dir()
    if root is None:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    return root


def _env(transport: str) -> dict[str, str]:
    env = dict(os.environ, TRIO_FUSE_URING_TRANSPORT=transport)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_alias.ALIAS_PATH, env.get("PYTHONPATH")]))
    return env


def test_pyfuse3_test_suite_passes(sdist: Path, transport: str) -> None:
    # pyfuse3's tst_rename compares whole-second ctimes before and after a rename, which
    # sets the ctime: on a loaded machine the rename may cross a second boundary, and the
    # test fails on native pyfuse3 too. So a failing run is repeated once; both outputs
    # are shown if the repeat fails as well.
    deselect = [a for name in SKIPPED_PYFUSE3_TESTS for a in ("--deselect", name)]
    tails = []
    for _ in range(2):
        cp = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *deselect],
            cwd=sdist / "test", env=_env(transport), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        tail = "\n".join(cp.stdout.splitlines()[-40:])
        if cp.returncode == 0:
            break
        tails.append(f"{tail}\n{cp.stderr[-3000:]}")
    assert cp.returncode == 0, "\n\n".join(tails)
    assert " passed" in tail and "skipped" not in tail, tail


def _mounted(mnt: Path) -> bool:
    # From mountinfo: root may not even stat another user's FUSE mount.
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(mnt) for line in f)


def _wait_mounted(proc: subprocess.Popen[str], mnt: Path) -> None:
    deadline = time.monotonic() + 30
    while not _mounted(mnt):
        if proc.poll() is not None:
            pytest.fail(f"the filesystem exited early: {proc.communicate()}")
        assert time.monotonic() < deadline, "the mountpoint did not come up"
        time.sleep(0.05)


def _start(args: Iterable[str | Path], transport: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RUNNER, "--transport", transport, *map(str, args)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_runner_serves_unmodified_tmpfs(sdist: Path, tmp_path: Path, transport: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _start([sdist / "examples" / "tmpfs.py", mnt], transport)
    try:
        _wait_mounted(proc, mnt)
        (mnt / "dir").mkdir()
        assert stat.S_ISDIR((mnt / "dir").stat().st_mode)
        (mnt / "dir" / "f").write_bytes(b"data" * 1000)
        assert (mnt / "dir" / "f").read_bytes() == b"data" * 1000
        (mnt / "dir" / "f").rename(mnt / "g")
        assert sorted(os.listdir(mnt)) == ["dir", "g"]
        assert (mnt / "g").read_bytes() == b"data" * 1000
        (mnt / "g").unlink()
        (mnt / "dir").rmdir()
        assert os.listdir(mnt) == []
        subprocess.run(["umount", str(mnt)], check=True)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    assert proc.returncode == 0, err
    assert f"over {transport}" in err, err  # the program's INFO logging shows our line


def test_runner_ctrl_c_ends_main_and_unmounts(sdist: Path, tmp_path: Path, transport: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _start([sdist / "examples" / "hello.py", mnt], transport)
    try:
        _wait_mounted(proc, mnt)
        assert (mnt / "message").read_text() == "hello world\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # As under pyfuse3: KeyboardInterrupt leaves trio.run and the program exits with it.
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    assert not os.path.ismount(mnt)


def test_runner_refuses_bad_usage() -> None:
    cp = subprocess.run([*RUNNER], capture_output=True, text=True)
    assert cp.returncode == 2 and "usage:" in cp.stderr
    cp = subprocess.run([*RUNNER, "--transport", "carrier-pigeon", "x.py"], capture_output=True, text=True)  # fmt: skip
    assert cp.returncode == 2 and "auto, uring or devfuse" in cp.stderr
    cp = subprocess.run([*RUNNER, "/nonexistent/fs.py"], capture_output=True, text=True)
    assert cp.returncode == 2 and "no such file" in cp.stderr


def test_alias_resolves_pyfuse3_names() -> None:
    code = (
        "import pyfuse3, pyfuse3.asyncio, pyfuse3_asyncio, sys;"
        "import trio_fuse_uring.compat.pyfuse3 as shim;"
        "assert pyfuse3 is shim and pyfuse3.asyncio is pyfuse3_asyncio is shim.asyncio;"
        "print('ok')"
    )
    cp = subprocess.run(
        [sys.executable, "-c", code], env=_env("auto"), capture_output=True, text=True
    )
    assert cp.stdout.strip() == "ok", cp.stderr


# ---- the shim's translations, in-process through the kernel ----------------------------


class RecordingFs(pyfuse3.Operations):
    """A flat directory of ``n`` files that records what its handlers receive."""

    def __init__(self, n: int = 0) -> None:
        super().__init__()
        self.n = n
        self.calls: list[tuple[str, Any]] = []
        self.lookups: Counter[int] = Counter()
        self.xattrs: dict[bytes, bytes] = {}
        self.allow_write = True

    def attr(self, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.st_mode = (stat.S_IFDIR | 0o755) if ino == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o666)
        a.entry_timeout = a.attr_timeout = 0
        return a

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.attr(inode)

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if name.startswith(b"f") and name[1:].isdigit() and int(name[1:]) < self.n:
            ino = 10 + int(name[1:])
            self.lookups[ino] += 1
            return self.attr(ino)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def forget(self, inode_list: Any) -> None:
        for ino, n in inode_list:
            self.lookups[ino] -= n

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for i in range(start_id, self.n):
            if not pyfuse3.readdir_reply(token, b"f%d" % i, self.attr(10 + i), i + 1):
                break
            self.lookups[10 + i] += 1

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self.calls.append(("mkdir", mode))
        a = self.attr(5)
        a.st_mode = mode
        return a

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self.calls.append(("create", mode))
        a = self.attr(6)
        a.st_mode = mode
        return pyfuse3.FileInfo(fh=6), a

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        changed = {n: getattr(fields, n) for n in fields.__slots__ if getattr(fields, n)}
        self.calls.append(("setattr", (changed, attr.st_mode, attr.st_size, attr.st_atime_ns)))
        return self.attr(inode)

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        return self.allow_write or not mode & os.W_OK

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if name not in self.xattrs:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return self.xattrs[name]

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        self.xattrs[name] = value


StartFs = Callable[..., Awaitable[Path]]


@pytest.fixture
async def serve_pyfuse3(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartFs]:
    monkeypatch.setenv(_api.TRANSPORT_ENV, transport)
    async with trio.open_nursery() as nursery:

        async def start(ops: pyfuse3.Operations, options: Iterable[str] = ()) -> Path:
            mnt = tmp_path / "mnt"
            mnt.mkdir()
            pyfuse3.init(ops, str(mnt), set(options))
            nursery.start_soon(pyfuse3.main)
            with trio.fail_after(30):
                while _api._state.mount is None:
                    await trio.sleep(0.01)
            assert _api._state.mount.transport == transport
            return mnt

        try:
            yield start
        finally:
            pyfuse3.terminate()
    pyfuse3.close()


async def test_modes_are_given_as_pyfuse3_gives_them(serve_pyfuse3: StartFs) -> None:
    fs = RecordingFs()
    mnt = await serve_pyfuse3(fs)
    old = os.umask(0o027)
    try:
        await client(os.mkdir, mnt / "d", 0o777)
        fd = await client(os.open, mnt / "f", os.O_CREAT | os.O_WRONLY, 0o666)
        await client(os.close, fd)
    finally:
        os.umask(old)
    # S_IFDIR included for mkdir, and the umask applied (the kernel does that for
    # libfuse, whose default pyfuse3 keeps).
    assert fs.calls == [("mkdir", stat.S_IFDIR | 0o750), ("create", stat.S_IFREG | 0o640)]


async def test_setattr_gets_fields_and_new_values(serve_pyfuse3: StartFs) -> None:
    fs = RecordingFs(n=1)
    mnt = await serve_pyfuse3(fs)
    f = mnt / "f0"
    await client(os.chmod, f, 0o600)
    await client(os.truncate, f, 42)
    before = time.time_ns()
    await client(os.utime, f)  # both times "now": pyfuse3 fills in the time
    (c1, m1, _, _), (c2, _, s2, _), (c3, _, _, a3) = (c[1] for c in fs.calls)
    assert c1 == {"update_mode": True} and m1 == stat.S_IFREG | 0o600
    assert c2 == {"update_size": True} and s2 == 42
    assert c3 == {"update_atime": True, "update_mtime": True}
    assert before - 10**9 < a3 < time.time_ns() + 10**9


async def test_readdir_lookup_counts_stay_balanced(serve_pyfuse3: StartFs) -> None:
    # More entries than one reply holds: readdir_reply() accepts entries that the
    # kernel's buffer then cannot take, or takes without a lookup (plain READDIR);
    # the shim gives those lookups back with forget(), so counts match the kernel's.
    fs = RecordingFs(n=3000)
    mnt = await serve_pyfuse3(fs)
    names = await client(os.listdir, mnt)
    assert sorted(names) == sorted(f"f{i}" for i in range(3000))
    assert set(fs.lookups.values()) <= {0, 1}, Counter(fs.lookups.values())
    assert sum(fs.lookups.values()) > 0  # the readdirplus entries did count


async def test_access_false_means_eacces(serve_pyfuse3: StartFs) -> None:
    fs = RecordingFs(n=1)
    fs.allow_write = False
    mnt = await serve_pyfuse3(fs, options=())  # no default_permissions: access() is asked
    assert await client(os.access, mnt / "f0", os.R_OK)
    assert not await client(os.access, mnt / "f0", os.W_OK)


async def test_xattr_create_and_replace_are_checked_with_getxattr(
    serve_pyfuse3: StartFs,
) -> None:
    fs = RecordingFs(n=1)
    mnt = await serve_pyfuse3(fs)
    f = str(mnt / "f0")
    with pytest.raises(OSError) as e:
        await client(os.setxattr, f, "user.a", b"1", os.XATTR_REPLACE)
    assert e.value.errno == errno.ENODATA
    await client(os.setxattr, f, "user.a", b"1", os.XATTR_CREATE)
    with pytest.raises(OSError) as e:
        await client(os.setxattr, f, "user.a", b"2", os.XATTR_CREATE)
    assert e.value.errno == errno.EEXIST
    await client(os.setxattr, f, "user.a", b"3", os.XATTR_REPLACE)
    assert await client(os.getxattr, f, "user.a") == b"3"
    with pytest.raises(OSError) as e:
        await client(os.getxattr, f, "user.b")
    assert e.value.errno == errno.ENODATA


NOBODY = 65534
_AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def public_mnt() -> Iterator[Path]:
    """A mountpoint owned by another uid (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="tfu-pyfuse3-", dir="/tmp"))
    os.chmod(d, 0o755)
    mnt = d / "mnt"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    yield mnt
    if _mounted(mnt):
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    shutil.rmtree(d, ignore_errors=True)


def test_runner_as_another_user(sdist: Path, public_mnt: Path, transport: str) -> None:
    # An unprivileged user runs tmpfs.py through the runner: the mount goes through
    # fusermount3, and only that user may use it.
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("fusermount3"):
        pytest.skip("needs root (to become another uid), setpriv and fusermount3")
    mnt = public_mnt
    proc = subprocess.Popen(
        [*_AS_NOBODY, *RUNNER, "--transport", transport, str(sdist / "examples" / "tmpfs.py"),
         str(mnt)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_mounted(proc, mnt)
        script = (
            f"import os; os.mkdir('{mnt}/d'); open('{mnt}/d/f', 'w').write('hi');"
            f"os.rename('{mnt}/d/f', '{mnt}/g'); print(open('{mnt}/g').read(),"
            f" os.stat('{mnt}/g').st_uid)"
        )
        cp = subprocess.run(
            [*_AS_NOBODY, sys.executable, "-c", script], capture_output=True, text=True
        )
        assert cp.stdout.split() == ["hi", str(NOBODY)], cp.stderr
        with pytest.raises(PermissionError):  # not even root, without allow_other
            os.stat(mnt / "g")
        subprocess.run([*_AS_NOBODY, "fusermount3", "-u", str(mnt)], check=True)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"over {transport}" in err, err
