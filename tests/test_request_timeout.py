"""Request timeouts (Linux 6.14+): a slow handler fails its caller, never the connection.

The kernel aborts a connection whose request stays unanswered past its timeout, checking
every 15 s. The fast tests here show the framework answering first (ETIMEDOUT) on both
transports, for ``Options(request_timeout=)`` and for an administrator's sysctl (read
from a stand-in directory, so that nothing global changes). One test waits out the
kernel's check on real timeouts, the sysctl included, and shows the same mount without
the framework's answer being aborted.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import pytest
import trio
from helpers import TRANSPORTS, client, require
from hypothesis import given
from hypothesis import strategies as st

import trio_fuse_uring as tfu
from trio_fuse_uring import _deadlines
from trio_fuse_uring import _protocol as P
from trio_fuse_uring._abi import FUSE_INIT_IN, FUSE_INIT_OUT, InitFlag, Opcode

ROOT = tfu.ROOT_INODE
#: The kernel's FUSE_TIMEOUT_TIMER_FREQ (fs/fuse/dev.c): how often it looks for expired
#: requests, so the latest an expired request aborts the connection.
KERNEL_CHECK_EVERY = 15


class SlowFS(tfu.Operations):
    """``slow`` never answers; ``f`` answers at once. Records cancelled handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    def attr(self, ino: int) -> tfu.EntryAttributes:
        if ino == ROOT:
            return tfu.EntryAttributes(st_ino=ROOT, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return tfu.EntryAttributes(st_ino=ino, st_mode=stat.S_IFREG | 0o644)

    async def lookup(self, parent_inode, name, ctx):
        if name == b"slow":
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                self.cancelled += 1
                raise
        if name == b"f":
            await trio.sleep(0)  # a handler that blocks briefly is not cut short
            return self.attr(2)
        raise tfu.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx):
        return self.attr(inode)


def _stat_errno(path: Path) -> int:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno or 0
    return 0


async def _timed_stat(path: Path) -> tuple[int, float]:
    t0 = trio.current_time()
    err = await client(_stat_errno, path, timeout=60)
    return err, trio.current_time() - t0


async def test_request_timeout_option_answers_a_stuck_handler(mount_ops, caplog):
    ops = SlowFS()
    with caplog.at_level(logging.INFO, logger="trio_fuse_uring"):
        m = await mount_ops(ops, request_timeout=1)
        err, took = await _timed_stat(Path(m.mountpoint, "slow"))
    assert err == errno.ETIMEDOUT
    assert 0.4 <= took < 5  # half of the 1 s deadline, long before the kernel checks
    assert ops.cancelled == 1
    assert m.stats()["timed_out"] == 1
    assert "the kernel aborts the connection after 1 s without a reply" in caplog.text
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1 and "handler lookup()" in logged[0]
    assert "LOOKUP" in logged[0] and "b'slow'" in logged[0]
    # The mount goes on serving.
    assert (await client(os.stat, Path(m.mountpoint, "f"))).st_ino == 2
    assert m.stats()["timed_out"] == 1


async def test_admin_default_timeout_is_read_and_beaten(mount_ops, tmp_path, monkeypatch, caplog):
    # The sysctls as an administrator might set them, in a stand-in directory: the
    # kernel's own (real) timeout stays off, so this test changes nothing global.
    fake = tmp_path / "sysctl"
    fake.mkdir()
    (fake / "default_request_timeout").write_text("2\n")
    (fake / "max_request_timeout").write_text("0\n")
    monkeypatch.setattr(_deadlines, "SYSCTL_DIR", str(fake))
    ops = SlowFS()
    with caplog.at_level(logging.INFO, logger="trio_fuse_uring"):
        m = await mount_ops(ops)  # no request_timeout option
        err, took = await _timed_stat(Path(m.mountpoint, "slow"))
    assert err == errno.ETIMEDOUT and 0.9 <= took < 5
    assert f"after 2 s without a reply (set by {fake}/*_request_timeout)" in caplog.text
    assert (await client(os.stat, Path(m.mountpoint, "f"))).st_ino == 2


async def test_admin_max_timeout_caps_the_option(mount_ops, tmp_path, monkeypatch, caplog):
    fake = tmp_path / "sysctl"
    fake.mkdir()
    (fake / "max_request_timeout").write_text("2\n")  # no default file: an older layout
    monkeypatch.setattr(_deadlines, "SYSCTL_DIR", str(fake))
    with caplog.at_level(logging.INFO, logger="trio_fuse_uring"):
        m = await mount_ops(SlowFS(), request_timeout=600)
        err, took = await _timed_stat(Path(m.mountpoint, "slow"))
    assert err == errno.ETIMEDOUT and took < 5
    assert f"after 2 s without a reply (capped by {fake}/max_request_timeout)" in caplog.text


async def test_no_timeout_anywhere_leaves_handlers_alone(mount_ops, tmp_path, monkeypatch):
    fake = tmp_path / "sysctl"
    fake.mkdir()
    monkeypatch.setattr(_deadlines, "SYSCTL_DIR", str(fake))
    ops = SlowFS()
    m = await mount_ops(ops)
    with trio.move_on_after(1.5):
        await _timed_stat(Path(m.mountpoint, "slow"))
        pytest.fail("a handler was answered although no timeout is set")
    assert m.stats()["timed_out"] == 0


def _sysctl(name: str) -> Path:
    return Path("/proc/sys/fs/fuse", name)


async def test_real_kernel_timeouts_do_not_abort_the_connection(tmp_path):
    """Waits out the kernel's 15 s check once for everything (both transports at once).

    Per transport: a mount with ``request_timeout=1``, one mounted while the system-wide
    ``default_request_timeout`` was set (for the moment of its INIT only: it applies to
    every connection initialized meanwhile), and a control with ``request_timeout=1``
    whose framework answer is switched off, which the kernel must abort.
    """
    for transport in TRANSPORTS:
        require(transport)
    if not _sysctl("default_request_timeout").exists():
        pytest.skip("this kernel has no request timeouts (Linux 6.14+)")
    if os.geteuid() != 0:
        pytest.skip("setting fs.fuse.default_request_timeout needs root")
    results: dict[str, tuple[int, float]] = {}
    mounts: dict[str, tfu.Mount] = {}
    async with trio.open_nursery() as nursery:

        async def serve(name: str, transport: str, **kw: object) -> None:
            path = tmp_path / name
            path.mkdir()
            opts = tfu.Options(transport=transport, **kw)  # type: ignore[arg-type]
            mounts[name] = await nursery.start(tfu.serve, SlowFS(), path, opts)

        for transport in TRANSPORTS:
            await serve(f"option-{transport}", transport, request_timeout=1)
            await serve(f"control-{transport}", transport, request_timeout=1)
            mounts[f"control-{transport}"]._s.dispatcher._budget = None
            knob = _sysctl("default_request_timeout")
            old = knob.read_text()
            try:
                knob.write_text("10")  # long enough not to hurt anyone else's mount
                await serve(f"sysctl-{transport}", transport)
            finally:
                knob.write_text(old)
        t0 = trio.current_time()

        async def stuck(name: str) -> None:
            results[name] = await _timed_stat(Path(mounts[name].mountpoint, "slow"))

        async with trio.open_nursery() as clients:
            for name in mounts:
                clients.start_soon(stuck, name)
        # Past the kernel's first check after every deadline (10 s for the sysctl).
        await trio.sleep(max(0.0, t0 + KERNEL_CHECK_EVERY + 2 - trio.current_time()))
        for transport in TRANSPORTS:
            for kind in ("option", "sysctl"):
                name = f"{kind}-{transport}"
                assert results[name][0] == errno.ETIMEDOUT, name
                f = Path(mounts[name].mountpoint, "f")
                assert (await client(os.stat, f)).st_ino == 2, name
            # Without the framework's answer the kernel aborts: the test can fail.
            control = f"control-{transport}"
            assert results[control][0] == errno.ECONNABORTED, results[control]
            with trio.fail_after(10):
                await mounts[control].wait_unmounted()  # the connection ended with it
        nursery.cancel_scope.cancel()
    assert results["sysctl-devfuse"][1] < 10


# ---- the arithmetic, without the kernel ------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "default", "maximum", "enforced"),
    [
        (0, 0, 0, 0),  # nothing anywhere
        (30, 0, 0, 30),  # the server's own
        (30, 60, 0, 30),  # the server's wins over the default
        (0, 60, 0, 60),  # the administrator's default
        (30, 0, 20, 20),  # capped
        (0, 60, 20, 20),  # a default above the cap is capped too
        (0, 0, 20, 20),  # a cap alone applies to servers that asked for nothing
    ],
)
def test_kernel_request_timeout(requested, default, maximum, enforced):
    assert _deadlines.kernel_request_timeout(requested, default, maximum) == enforced


@given(st.integers(min_value=1, max_value=_deadlines.MAX_REQUEST_TIMEOUT))
def test_answer_margin_is_bounded(timeout):
    margin = _deadlines.answer_margin(timeout)
    assert 0 < margin <= timeout / 2
    assert margin <= 30
    assert margin >= min(1.0, timeout / 2)
    assert _deadlines.handler_budget(timeout) == timeout - margin


def test_sysctls_missing_or_garbled_mean_unset(tmp_path):
    assert _deadlines.read_sysctls(str(tmp_path / "nowhere")) == (0, 0)
    (tmp_path / "default_request_timeout").write_text("junk")
    (tmp_path / "max_request_timeout").write_text("7\n")
    assert _deadlines.read_sysctls(str(tmp_path)) == (0, 7)


@pytest.mark.parametrize("bad", [0, -1, 65536, 1.5, "10"])
def test_request_timeout_option_is_checked(bad):
    with pytest.raises(tfu.OptionError, match="request_timeout"):
        tfu.Options(request_timeout=bad)


def test_request_timeout_parses_from_mount_options():
    opts = tfu.Options.parse("request_timeout=30")
    assert opts.request_timeout == 30


def _init(flags: int) -> P.Init:
    raw = FUSE_INIT_IN.pack(7, 45, 65536, (flags & 0xFFFFFFFF) | InitFlag.INIT_EXT, flags >> 32)
    hdr = tfu._abi.FUSE_IN_HEADER.pack(40 + len(raw), Opcode.INIT, 1, 0, 0, 0, 0, 0, 0)
    req = P.decode_devfuse(memoryview(hdr + raw), P.Negotiated())
    assert isinstance(req, P.Init)
    return req


@pytest.mark.parametrize("offered", [True, False])
def test_init_reply_carries_the_timeout_only_when_offered(offered):
    kernel = InitFlag.REQUEST_TIMEOUT if offered else 0
    cfg = P.InitConfig(want=InitFlag.REQUEST_TIMEOUT, request_timeout=42)
    neg = P.negotiate_init(_init(kernel), cfg)
    fields = FUSE_INIT_OUT.unpack(P.encode_init(neg, cfg))
    assert fields[-1] == (42 if offered else 0)
    assert bool(neg.flags & InitFlag.REQUEST_TIMEOUT) == offered
