"""Helpers for the tests: which transports this machine can test, running blocking
client calls off the trio thread, and reading this process's threads and fds.

Tests import them from here (``from helpers import client``); ``conftest.py`` holds only
fixtures.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

import trio_fuse_uring as tfu
from trio_fuse_uring import _uring_support

REPO = Path(__file__).resolve().parent.parent

IN_CI = os.environ.get("CI", "").lower() == "true"
TRANSPORTS = ["devfuse", "uring"]
T = TypeVar("T")

#: The ``mount_ops`` fixture: ``await mount_ops(ops, **options)`` -> a Mount.
MountOps = Callable[..., Awaitable[tfu.Mount]]


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
