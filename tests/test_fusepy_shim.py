"""trio_fuse_uring.compat.fusepy: fusepy/mfusepy filesystems, unmodified, on both transports.

The filesystems here are written against fusepy's API (synchronous handlers, dicts,
negative errno returns) and served by ``FUSE(...)`` in a thread of the test process, or
by the runner ``python -m trio_fuse_uring.compat.fusepy`` in a child process.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from trio_fuse_uring.compat import fusepy as fuse


class Tree(fuse.LoggingMixIn, fuse.Operations):
    """A multi-level in-memory filesystem in fusepy's style (paths as dict keys)."""

    use_ns = True

    def __init__(self) -> None:
        now = time.time_ns()
        self.files: dict[str, dict[str, Any]] = {
            "/": {
                "st_mode": stat.S_IFDIR | 0o755,
                "st_nlink": 2,
                "st_mtime": now,
                "st_atime": now,
                "st_ctime": now,
            }
        }
        self.data: dict[str, bytes] = {}
        self.contexts: list[tuple[str, tuple[int, int, int]]] = []
        self.threads: set[int] = set()
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.fd = 0

    def _enter(self, op: str) -> None:
        self.contexts.append((op, fuse.fuse_get_context()))
        with self.lock:
            self.threads.add(threading.get_ident())

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        if path not in self.files:
            raise fuse.FuseOSError(errno.ENOENT)
        return self.files[path]

    def readdir(self, path: str, fh: int) -> Iterator[Any]:
        yield "."
        yield ".."
        prefix = path.rstrip("/") + "/"
        for p, attrs in list(self.files.items()):
            if p.startswith(prefix) and p != prefix and "/" not in p[len(prefix) :]:
                yield (p[len(prefix) :], attrs, 0)

    def _new(self, path: str, mode: int) -> None:
        uid, gid, _ = fuse.fuse_get_context()
        now = time.time_ns()
        self.files[path] = {"st_mode": mode, "st_nlink": 1, "st_size": 0, "st_uid": uid, "st_gid": gid,
                            "st_mtime": now, "st_atime": now, "st_ctime": now}  # fmt: skip

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self._enter("create")
        self._new(path, stat.S_IFREG | mode)
        self.data[path] = b""
        self.fd += 1
        return self.fd

    def mkdir(self, path: str, mode: int) -> int:
        self._enter("mkdir")
        self._new(path, stat.S_IFDIR | mode)
        return 0

    def open(self, path: str, flags: int) -> int:
        self._enter("open")
        self.fd += 1
        return self.fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._enter("read")
        if path == "/slow":
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            time.sleep(0.3)
            with self.lock:
                self.active -= 1
        return self.data[path][offset : offset + size]

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._enter("write")
        if path == "/exit":
            fuse.fuse_exit()
        if path == "/crash":
            raise SystemExit("handler gave up")
        old = self.data[path]
        self.data[path] = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data) :]
        self.files[path]["st_size"] = len(self.data[path])
        return len(data)

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        self.data[path] = self.data[path][:length].ljust(length, b"\0")
        self.files[path]["st_size"] = length
        return 0

    def unlink(self, path: str) -> int:
        self.files.pop(path)
        self.data.pop(path, None)
        return 0

    def rmdir(self, path: str) -> int:
        if any(p.startswith(path + "/") for p in self.files):
            return -errno.ENOTEMPTY  # fusepy's other error convention
        self.files.pop(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        for p in sorted(self.files):
            if p == old or p.startswith(old + "/"):
                q = new + p[len(old) :]
                self.files[q] = self.files.pop(p)
                if p in self.data:
                    self.data[q] = self.data.pop(p)
        return 0

    def symlink(self, target: str, source: str) -> int:
        self._new(target, stat.S_IFLNK | 0o777)
        self.data[target] = source.encode()
        return 0

    def readlink(self, path: str) -> str:
        return self.data[path].decode()

    def chmod(self, path: str, mode: int) -> int:
        self.files[path]["st_mode"] = stat.S_IFMT(self.files[path]["st_mode"]) | stat.S_IMODE(mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        if uid != -1:
            self.files[path]["st_uid"] = uid
        if gid != -1:
            self.files[path]["st_gid"] = gid
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        atime, mtime = times or (time.time_ns(), time.time_ns())
        self.files[path]["st_atime"], self.files[path]["st_mtime"] = atime, mtime
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 512, "f_blocks": 4096, "f_bavail": 2048}


class RawFiTree(Tree):
    def open(self, path: str, fi: Any) -> int:  # type: ignore[override]
        self._enter("open")
        self.fd += 1
        fi.fh = self.fd
        fi.direct_io = 1
        return 0


def _serve(
    ops: Any, mnt: Path, transport: str, **kwargs: Any
) -> tuple[threading.Thread, list[BaseException]]:
    mnt.mkdir(exist_ok=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fuse.FUSE(ops, str(mnt), foreground=True, transport=transport, **kwargs)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 20
    while not os.path.ismount(mnt):
        assert t.is_alive(), errors
        assert time.monotonic() < deadline, "not mounted after 20 s"
        time.sleep(0.02)
    return t, errors


def _stop(t: threading.Thread, mnt: Path) -> None:
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-l", str(mnt)], check=True)
    t.join(20)
    assert not t.is_alive()


def _scenario(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "d" / "f").write_bytes(b"hello")
    assert (mnt / "d" / "f").read_bytes() == b"hello"
    os.rename(mnt / "d", mnt / "e")
    assert (mnt / "e" / "f").read_bytes() == b"hello"
    os.symlink("e/f", mnt / "s")
    assert os.readlink(mnt / "s") == "e/f"
    os.chmod(mnt / "e" / "f", 0o600)
    os.chown(mnt / "e" / "f", 12345, 23456)
    st = os.stat(mnt / "e" / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 12345, 23456)
    os.utime(mnt / "e" / "f", ns=(1_500_000_000, 12_500_000_000))
    assert os.stat(mnt / "e" / "f").st_mtime_ns == 12_500_000_000
    os.truncate(mnt / "e" / "f", 2)
    assert (mnt / "e" / "f").read_bytes() == b"he"
    assert sorted(os.listdir(mnt)) == ["e", "s"]
    with pytest.raises(OSError) as e:
        os.rmdir(mnt / "e")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        os.rename(mnt / "s", mnt / "e" / "f", dst_dir_fd=None) if False else _noreplace(mnt)
    assert e.value.errno == errno.EINVAL  # fusepy's rename has no flags: never a plain rename
    assert os.statvfs(mnt).f_bavail == 2048
    os.unlink(mnt / "e" / "f")
    os.rmdir(mnt / "e")
    os.unlink(mnt / "s")
    assert os.listdir(mnt) == []


def _noreplace(mnt: Path) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, bytes(mnt / "s"), -100, bytes(mnt / "t"), 1) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def test_tree(tmp_path: Path, transport: str) -> None:
    ops = Tree()
    tmp_path = tmp_path / "mnt"
    t, errors = _serve(ops, tmp_path, transport)
    try:
        _scenario(tmp_path)
    finally:
        _stop(t, tmp_path)
    assert not errors
    # Handlers ran in worker threads, each told who was asking.
    assert threading.get_ident() not in ops.threads
    assert {ctx for op, ctx in ops.contexts if op in ("mkdir", "create", "write")} == {
        (0, 0, os.getpid())
    }


def test_raw_fi(tmp_path: Path, transport: str) -> None:
    ops = RawFiTree()
    tmp_path = tmp_path / "mnt"
    t, errors = _serve(ops, tmp_path, transport, raw_fi=True)
    try:
        (tmp_path / "f").write_bytes(b"abc")
        assert (tmp_path / "f").read_bytes() == b"abc"
    finally:
        _stop(t, tmp_path)
    assert not errors


@pytest.mark.parametrize("nothreads", [True, False])
def test_worker_threads(tmp_path: Path, transport: str, nothreads: bool) -> None:
    ops = Tree()
    ops.files["/slow"] = {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": 4}
    ops.data["/slow"] = b"slow"
    tmp_path = tmp_path / "mnt"
    t, errors = _serve(ops, tmp_path, transport, nothreads=nothreads, direct_io=True)
    try:
        readers = [threading.Thread(target=(tmp_path / "slow").read_bytes) for _ in range(4)]
        for r in readers:
            r.start()
        for r in readers:
            r.join(30)
    finally:
        _stop(t, tmp_path)
    assert not errors
    assert ops.max_active == 1 if nothreads else ops.max_active > 1


def test_fuse_exit_and_critical_errors(tmp_path: Path, transport: str) -> None:
    ops = Tree()
    for name in ("exit", "crash"):
        ops.files[f"/{name}"] = {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1}
        ops.data[f"/{name}"] = b""
    tmp_path = tmp_path / "mnt"
    t, errors = _serve(ops, tmp_path, transport)
    try:
        (tmp_path / "exit").write_bytes(b"x")  # answered, then unmounted
        t.join(20)
        assert not t.is_alive() and not os.path.ismount(tmp_path)  # fuse_exit unmounted
        assert not errors
        t, errors = _serve(ops, tmp_path, transport)
        with pytest.raises(OSError) as e:
            (tmp_path / "crash").write_bytes(b"x")
        assert e.value.errno == errno.EFAULT
        t.join(20)
        assert not t.is_alive() and not os.path.ismount(tmp_path)
        assert len(errors) == 1 and isinstance(errors[0], SystemExit)  # raised by FUSE()
    finally:
        _stop(t, tmp_path)


def test_bad_options_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsname"):
        fuse.FUSE(Tree(), str(tmp_path), foreground=True, fsname="a,b")


_CLASSIC = """
import logging, sys
logging.basicConfig(level=logging.INFO)
from fuse import FUSE, Operations, LoggingMixIn
if not hasattr(__builtins__, 'bytes'):
    raise SystemExit('__builtins__ is not the builtins module, as under python SCRIPT')

class Hello(LoggingMixIn, Operations):
    def getattr(self, path, fh=None):
        if path == '/':
            return dict(st_mode=0o40755, st_nlink=2)
        if path == '/hello':
            return dict(st_mode=0o100444, st_nlink=1, st_size=6)
        raise OSError(2, 'no')
    def readdir(self, path, fh):
        return ['.', '..', 'hello']
    def read(self, path, size, offset, fh):
        return b'hello\\n'[offset:offset + size]

FUSE(Hello(), sys.argv[1], foreground=True)
"""


@pytest.mark.parametrize("module", ["fuse", "mfusepy"])
def test_runner_runs_programs_unmodified(tmp_path: Path, transport: str, module: str) -> None:
    script = tmp_path / "hello.py"
    script.write_text(_CLASSIC.replace("from fuse import", f"from {module} import"))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-W", "ignore::DeprecationWarning", "-m",
           "trio_fuse_uring.compat.fusepy", "--transport", transport, str(script), str(mnt)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert (mnt / "hello").read_text() == "hello\n"
        # fusepy's Operations offers every default (utimens succeeds); mfusepy's only
        # what is overridden (the kernel's ENOSYS fallback).
        assert os.listdir(mnt) == ["hello"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"over {transport}" in err
