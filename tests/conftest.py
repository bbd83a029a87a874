"""Shared fixtures: real mounts through the real kernel, over every transport.

Behavioural tests take the ``transport`` fixture (parametrized over ``devfuse`` and
``uring``) and mount with ``mount_ops``. A transport the machine cannot offer is skipped
with the reason a one-time probe found, except under CI (``CI=true``), where it fails:
CI must exercise both.

Never touch a mount from the trio thread that serves it: client operations run in a
worker thread (:func:`client`) or another process.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

import trio_fuse_uring as tfu
from trio_fuse_uring import _uring_support

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))

IN_CI = os.environ.get("CI", "").lower() == "true"
TRANSPORTS = ["devfuse", "uring"]
T = TypeVar("T")


@functools.cache
def transport_unavailable(transport: str) -> str | None:
    """Why ``transport`` cannot be tested on this machine (None if it can)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if os.geteuid() != 0 and not os.path.exists("/usr/bin/fusermount3"):
        return "not root and no fusermount3"
    if transport == "uring":
        try:
            from trio_fuse_uring import _ring  # noqa: F401
        except ImportError as exc:
            return f"io-uring transport not importable: {exc}"
        # The kernel's offer is only known at INIT; assume a 6.14+ kernel offers it.
        reason = _uring_support.unavailable_reason(tfu._abi.InitFlag.OVER_IO_URING)
        if reason:
            return reason
    return None


def require(transport: str) -> None:
    reason = transport_unavailable(transport)
    if reason:
        if IN_CI:
            pytest.fail(f"CI must test transport {transport!r}: {reason}")
        pytest.skip(f"transport {transport!r} unavailable: {reason}")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Each behavioural test runs once per transport."""
    name: str = request.param
    require(name)
    return name


MountOps = Callable[..., Awaitable[tfu.Mount]]


@pytest.fixture
async def mount_ops(tmp_path: Path, transport: str) -> AsyncIterator[MountOps]:
    """``await mount_ops(ops, **options)`` mounts ``ops`` on a fresh directory.

    The transport is forced (``transport="uring"`` fails rather than falls back), so a
    test on ``uring`` really runs over the ring. Everything is unmounted at teardown.
    """
    counter = 0
    # Mounts live in tasks of this fixture's nursery (a nursery must be closed by the
    # task that opened it, and the test body runs in another task).
    async with trio.open_nursery() as nursery:

        async def _mount(ops: tfu.Operations, **options: Any) -> tfu.Mount:
            nonlocal counter
            counter += 1
            path = tmp_path / f"mnt{counter}"
            path.mkdir()
            options.setdefault("transport", transport)
            m: tfu.Mount = await nursery.start(tfu.serve, ops, path, tfu.Options(**options))
            assert m.transport == transport, m.transport_reason
            return m

        yield _mount
        nursery.cancel_scope.cancel()


async def client(fn: Callable[..., T], *args: Any, timeout: float = 30) -> T:
    """Run a blocking filesystem call in a worker thread, bounded in time."""
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(functools.partial(fn, *args), abandon_on_cancel=True)


def ring_threads() -> list[str]:
    """Names of this process's io-uring queue threads (``tfu-q<cpu>``)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("tfu-q"):
            names.append(name)
    return names


async def no_ring_threads(timeout: float = 5) -> None:
    """Wait until no queue thread is listed: a joined thread leaves /proc a moment later."""
    with trio.fail_after(timeout):
        while ring_threads():
            await trio.sleep(0.01)


def open_fds() -> set[str]:
    """This process's open file descriptors (to check that nothing leaks)."""
    return set(os.listdir("/proc/self/fd"))
