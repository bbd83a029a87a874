"""A daemon's life from outside: signals, unprivileged mounts, aborts, a killed daemon."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hello import HELLO_DATA, HelloFS
from helpers import IN_CI, REPO, client

import trio_fuse_uring as tfu
from trio_fuse_uring import _mountlib
from trio_fuse_uring._mountlib import connection_id, is_mountpoint

NOBODY = 65534
HELLO = str(REPO / "examples" / "hello.py")


async def _wait_mounted(path: str, proc: trio.Process | None = None, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while not is_mountpoint(path):
            if proc is not None and proc.returncode is not None:
                pytest.fail(f"daemon exited with {proc.returncode} before mounting")
            await trio.sleep(0.02)


@asynccontextmanager
async def _daemon(cmd: list[str], mnt: str) -> AsyncIterator[trio.Process]:
    """Start a daemon process, wait until it has mounted ``mnt``; kill it if still alive
    at the end."""
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await _wait_mounted(mnt, proc)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        assert proc.stderr is not None
        await proc.stderr.aclose()


def _as_nobody() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A mountpoint another uid can reach (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="tfu-", dir="/tmp"))
    os.chmod(d, 0o755)
    mnt = d / "mnt"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    yield mnt
    if is_mountpoint(str(mnt)):
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_signal_unmounts_and_exits_zero(transport, public_dir, signum):
    mnt = str(public_dir)
    async with _daemon([sys.executable, HELLO, mnt, "--transport", transport], mnt) as proc:
        assert await client(Path(mnt, "hello").read_bytes) == HELLO_DATA
        proc.send_signal(signum)
        with trio.fail_after(15):
            await proc.wait()
    assert proc.returncode == 0
    assert not is_mountpoint(mnt)


_SLOW_DESTROY_DAEMON = """
import sys, trio
sys.path.insert(0, sys.argv[3])
import logging, trio_fuse_uring as tfu
from hello import HelloFS
logging.basicConfig(level=logging.INFO)

class SlowDestroyFS(HelloFS):
    async def destroy(self):  # e.g. saving state at unmount
        print("destroying", file=sys.stderr, flush=True)
        await trio.sleep(1)

tfu.run(SlowDestroyFS(), sys.argv[1], tfu.Options(transport=sys.argv[2]))
print("returned", file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_repeated_signal_during_cleanup_still_exits_cleanly(transport, public_dir, signum):
    # People press Ctrl-C twice; `timeout` and service managers signal the process and
    # then its group. A signal that comes while run() cleans up must not become a
    # KeyboardInterrupt traceback or a death by SIGTERM halfway through.
    mnt = str(public_dir)
    cmd = [sys.executable, "-c", _SLOW_DESTROY_DAEMON, mnt, transport, str(REPO / "examples")]
    async with _daemon(cmd, mnt) as proc:
        assert await client(Path(mnt, "hello").read_bytes) == HELLO_DATA
        assert proc.stderr is not None
        proc.send_signal(signum)
        log = b""
        with trio.fail_after(15):
            while b"destroying" not in log:
                chunk = await proc.stderr.receive_some()
                assert chunk, log
                log += chunk
            proc.send_signal(signum)
            while chunk := await proc.stderr.receive_some():
                log += chunk
            await proc.wait()
    assert proc.returncode == 0, log
    assert b"again; still unmounting" in log
    assert b"Traceback" not in log and b"returned" in log
    assert not is_mountpoint(mnt)


_INSIDE = """
import os, sys, time
os.chdir(sys.argv[1])
print("in", flush=True)
time.sleep(60)
"""


async def test_unprivileged_busy_mount_is_detached_at_once(transport, public_dir):
    """fusermount3 -u -q also hid why it failed, so an unprivileged daemon never saw
    EBUSY: leaving a busy mount waited UNMOUNT_TIMEOUT instead of detaching it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not shutil.which("fusermount3"):
        pytest.skip("needs root (to become another uid), setpriv and fusermount3")
    mnt = str(public_dir)
    cmd = [*_as_nobody(), sys.executable, HELLO, mnt, "--transport", transport]
    inside = None
    try:
        async with _daemon(cmd, mnt) as proc:
            # A process of the same user whose working directory is in the mount.
            inside = await trio.lowlevel.open_process(
                [*_as_nobody(), sys.executable, "-c", _INSIDE, mnt], stdout=subprocess.PIPE
            )
            assert inside.stdout is not None
            said = b""
            with trio.fail_after(15):
                while not said.endswith(b"\n"):
                    said += await inside.stdout.receive_some()
            assert said == b"in\n"
            proc.send_signal(signal.SIGTERM)
            log = b""
            assert proc.stderr is not None
            with trio.fail_after(15):
                while chunk := await proc.stderr.receive_some():
                    log += chunk
                await proc.wait()
        assert proc.returncode == 0, log
        assert b"is busy; detaching it" in log, log
        assert not is_mountpoint(mnt)
    finally:
        if inside is not None:
            inside.kill()
            await inside.wait()
            assert inside.stdout is not None
            await inside.stdout.aclose()


async def test_unprivileged_user_mounts_through_fusermount3(transport, public_dir):
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not shutil.which("fusermount3"):
        pytest.skip("needs root (to become another uid), setpriv and fusermount3")
    mnt = str(public_dir)
    cmd = [*_as_nobody(), sys.executable, HELLO, mnt, "--transport", transport]
    async with _daemon(cmd, mnt) as proc:
        with open("/proc/self/mountinfo") as f:
            line = next(line for line in f if f" {mnt} " in line)
        assert f"user_id={NOBODY}" in line
        # Only the mounting user may enter a FUSE mount without allow_other; root too
        # is refused.
        cat = await trio.run_process([*_as_nobody(), "cat", f"{mnt}/hello"], capture_stdout=True)
        assert cat.stdout == HELLO_DATA
        with pytest.raises(PermissionError):
            await client(os.stat, f"{mnt}/hello")
        await trio.run_process([*_as_nobody(), "fusermount3", "-u", mnt])
        with trio.fail_after(15):
            await proc.wait()
        assert proc.stderr is not None
        log = await proc.stderr.receive_some()
    assert proc.returncode == 0, log
    assert f"over {'uring' if transport == 'uring' else 'devfuse'}".encode() in log
    assert not is_mountpoint(mnt)


class _DestroyRecorder(HelloFS):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.destroyed: list[bool] = []  # was it still mounted then?

    async def destroy(self) -> None:
        self.destroyed.append(is_mountpoint(str(self.path)))


@pytest.mark.parametrize("end", ["cancelled", "unmounted", "body raised"])
async def test_destroy_runs_once_after_the_unmount_however_serving_ends(transport, tmp_path, end):
    # libfuse calls destroy() whenever init() ran; cancelling the scope around mount()
    # (what run() does on a signal) used to skip it, and with it the handler's cleanup.
    path = tmp_path / "m"
    path.mkdir()
    fs = _DestroyRecorder(path)
    with trio.CancelScope() as scope:
        try:
            async with tfu.mount(fs, path, tfu.Options(transport=transport)) as m:
                assert await client(Path(path, "hello").read_bytes) == HELLO_DATA
                assert fs.destroyed == []
                if end == "cancelled":
                    scope.cancel()
                    await trio.sleep_forever()
                elif end == "unmounted":
                    await trio.run_process(["umount", str(path)])
                    with trio.fail_after(10):
                        await m.wait_unmounted()
                else:
                    raise KeyError("from the body")
        except KeyError:
            assert end == "body raised"
    assert fs.destroyed == [False]
    assert not is_mountpoint(str(path))


async def test_abort_through_fusectl_ends_the_session(transport, tmp_path):
    if not os.path.ismount("/sys/fs/fuse/connections"):
        if IN_CI:
            pytest.fail("fusectl is not mounted (scripts/bootstrap.sh mounts it)")
        pytest.skip("fusectl is not mounted")
    path = tmp_path / "m"
    path.mkdir()
    async with tfu.mount(HelloFS(), path, tfu.Options(transport=transport)) as m:
        assert await client(Path(path, "hello").read_bytes) == HELLO_DATA
        conn = connection_id(str(path))
        with open(f"/sys/fs/fuse/connections/{conn}/abort", "w") as f:
            f.write("1")
        with trio.fail_after(10):
            await m.wait_unmounted()
        with pytest.raises(OSError) as exc:
            await client(os.stat, path / "hello")
        assert exc.value.errno == errno.ENOTCONN
    assert not is_mountpoint(str(path))


_DAEMON = """
import sys
sys.path.insert(0, sys.argv[3])
import logging, trio_fuse_uring as tfu
from hello import HelloFS
logging.basicConfig(level=logging.INFO)
tfu.run(HelloFS(), sys.argv[1], tfu.Options(transport=sys.argv[2], auto_unmount=sys.argv[4] == "1"))
"""


async def test_killed_daemon_gives_enotconn_not_a_hang(transport, public_dir):
    mnt = str(public_dir)
    cmd = [sys.executable, "-c", _DAEMON, mnt, transport, str(REPO / "examples"), "0"]
    proc = await trio.lowlevel.open_process(cmd, stderr=subprocess.DEVNULL)
    await _wait_mounted(mnt, proc)
    assert await client(Path(mnt, "hello").read_bytes) == HELLO_DATA
    proc.kill()
    await proc.wait()
    with pytest.raises(OSError) as exc:
        await client(os.stat, f"{mnt}/hello", timeout=10)
    # ENOTCONN. Over io-uring, while the kernel tears the dead daemon's rings down,
    # requests already routed to them fail with ECANCELED or ECONNABORTED instead.
    gone = (errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED)
    assert exc.value.errno in gone
    with trio.fail_after(10):
        while True:
            with pytest.raises(OSError) as exc:
                await client(os.statvfs, mnt, timeout=10)
            assert exc.value.errno in gone
            if exc.value.errno == errno.ENOTCONN:
                break
            await trio.sleep(0.05)
    # Mounting on the dead mount is refused with a message that says how to clear it.
    with pytest.raises(tfu.MountError, match="fusermount3 -u"):
        async with tfu.mount(HelloFS(), mnt, tfu.Options(transport=transport)):
            pass


@pytest.mark.parametrize("user", ["root", "nobody"])
async def test_killed_daemon_gives_enotconn_and_auto_unmount_clears(transport, public_dir, user):
    """With auto_unmount, the watchdog clears the mount of a SIGKILLed daemon, so a new
    daemon can mount at the same place."""
    mnt = str(public_dir)
    cmd = [sys.executable, "-c", _DAEMON, mnt, transport, str(REPO / "examples"), "1"]
    if user == "nobody":  # mounts through fusermount3, unmounts with fusermount3 -u
        cmd = [*_as_nobody(), *cmd]
    proc = await trio.lowlevel.open_process(cmd, stderr=subprocess.DEVNULL)
    await _wait_mounted(mnt, proc)
    if user == "root":
        assert await client(Path(mnt, "hello").read_bytes) == HELLO_DATA
    proc.kill()
    await proc.wait()
    with trio.fail_after(10):
        while is_mountpoint(mnt):  # fusermount3 notices the dead daemon and unmounts
            await trio.sleep(0.05)
    # A new daemon mounts on the same mountpoint and serves.
    async with tfu.mount(HelloFS(), mnt, tfu.Options(transport=transport)):
        assert await client(Path(mnt, "hello").read_bytes) == HELLO_DATA


async def test_auto_unmount_covers_a_daemon_killed_right_after_mounting(transport, public_dir):
    """The watchdog used to start after the mount: a daemon killed in between (a
    fusermount3 mount takes a while) left a dead mount for good. It now starts first
    and, if the daemon dies before telling it the connection, takes the mount that
    appeared on the path since."""
    mnt = str(public_dir)
    watchdog = _mountlib.MountHandle(mnt, -1, via_fusermount=False)
    _mountlib._start_watchdog(watchdog)  # what mount() does first
    assert watchdog.watchdog is not None
    try:
        # The mount appears (here: a daemon without a watchdog of its own), then its
        # owner dies without writing the connection id: the pipe's last end closes.
        cmd = [sys.executable, "-c", _DAEMON, mnt, transport, str(REPO / "examples"), "0"]
        proc = await trio.lowlevel.open_process(cmd, stderr=subprocess.DEVNULL)
        await _wait_mounted(mnt, proc)
        proc.kill()
        await proc.wait()
        os.close(watchdog.watchdog_pipe)
        watchdog.watchdog_pipe = -1
        with trio.fail_after(15):
            while is_mountpoint(mnt):
                await trio.sleep(0.05)
            assert await trio.to_thread.run_sync(watchdog.watchdog.wait) == 0
    finally:
        _mountlib.release_helper(watchdog)
        if is_mountpoint(mnt):
            _mountlib.unmount(watchdog, lazy=True)


async def test_auto_unmount_watchdog_leaves_a_failed_mount_alone(public_dir):
    # The daemon dies before mounting: nothing new is on the path, nothing is touched.
    mnt = str(public_dir)
    watchdog = _mountlib.MountHandle(mnt, -1, via_fusermount=False)
    _mountlib._start_watchdog(watchdog)
    assert watchdog.watchdog is not None
    _mountlib.release_helper(watchdog)  # closes the pipe, waits for the exit
    assert watchdog.watchdog is None and not is_mountpoint(mnt)


# ---- which mount is ours -------------------------------------------------------------------


async def test_mountpoint_given_as_a_symlink(transport, tmp_path):
    """mount(2) follows the link; unmounting by the link's path found nothing, so
    leaving the mount stalled for UNMOUNT_TIMEOUT and left a dead mount behind."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    async with tfu.mount(HelloFS(), link, tfu.Options(transport=transport)) as m:
        assert m.mountpoint == str(real)
        assert await client(Path(link, "hello").read_bytes) == HELLO_DATA
    assert not is_mountpoint(str(real))


async def _hold(
    path: Path, opts: tfu.Options, scope: trio.CancelScope, *, task_status: Any
) -> None:
    with scope:
        async with tfu.mount(HelloFS(), path, opts) as m:
            task_status.started(m)
            await trio.sleep_forever()


async def test_leaving_a_mount_leaves_a_newer_mount_at_the_same_path_alone(transport, tmp_path):
    """Unmounted from outside, then a new daemon mounts at the same place (a service
    restart): the old one, leaving, used to lazily unmount the new one's mount."""
    path = tmp_path / "m"
    path.mkdir()
    opts = tfu.Options(transport=transport)
    async with trio.open_nursery() as nursery:
        new_scope = trio.CancelScope()
        async with tfu.mount(HelloFS(), path, opts) as old:
            await trio.run_process(["umount", str(path)])
            with trio.fail_after(10):
                await old.wait_unmounted()
            new = await nursery.start(_hold, path, opts, new_scope)
        assert connection_id(str(path)) == new._s.handle.conn
        assert await client(Path(path, "hello").read_bytes) == HELLO_DATA
        new_scope.cancel()
    assert not is_mountpoint(str(path))


async def test_unknown_mount_option_is_named(transport, tmp_path):
    # The kernel says only EINVAL; the error names the options the user added.
    with pytest.raises(tfu.MountError, match="check these mount options: bogus_opt"):
        async with tfu.mount(
            HelloFS(), tmp_path, tfu.Options(transport=transport, extra=("bogus_opt",))
        ):
            pass
    assert not is_mountpoint(str(tmp_path))


_HOLDER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
print("open", flush=True)
time.sleep(60)
"""


async def test_leaving_a_lazily_detached_busy_mount_aborts_it_at_once(transport, tmp_path, caplog):
    """Detached from outside (umount -l) while another process keeps a file open, the
    connection lives on; leaving the mount must end it at once. It used to try the path,
    wait UNMOUNT_TIMEOUT for an end that never came, and only then abort."""
    path = tmp_path / "m"
    path.mkdir()
    holder = None
    try:
        async with tfu.mount(HelloFS(), path, tfu.Options(transport=transport)) as m:
            # (Not in this process: its own forks would flush the file in the child
            # between fork and exec, while this process waits for that child.)
            holder = await trio.lowlevel.open_process(
                [sys.executable, "-c", _HOLDER, str(path / "hello")], stdout=subprocess.PIPE
            )
            assert holder.stdout is not None
            said = b""
            with trio.fail_after(15):
                while not said.endswith(b"\n"):
                    said += await holder.stdout.receive_some()
            await trio.run_process(["umount", "-l", str(path)])
            assert not is_mountpoint(str(path)) and not m._s.connection_gone
        assert "did not end after unmount" not in caplog.text
    finally:
        if holder is not None:
            holder.kill()
            await holder.wait()
            assert holder.stdout is not None
            await holder.stdout.aclose()
