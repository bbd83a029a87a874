"""Shared fixtures: real mounts through the real kernel, over every transport.

Behavioural tests take the ``transport`` fixture (parametrized over ``devfuse`` and
``uring``) and mount with ``mount_ops``. A transport the machine cannot offer is skipped
with the reason a one-time probe found, except under CI (``CI=true``), where it fails:
CI must exercise both.

Never touch a mount from the trio thread that serves it: client operations run in a
worker thread (:func:`client`) or another process.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import REPO, TRANSPORTS, MountOps, require

import trio_fuse_uring as tfu

sys.path.insert(0, str(REPO / "examples"))


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Each behavioural test runs once per transport."""
    name: str = request.param
    require(name)
    return name


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
