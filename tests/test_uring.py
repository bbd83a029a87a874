"""What only the io-uring transport does: per-CPU queues, fallback, shutdown under load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from hello import HelloFS
from helpers import client, no_ring_threads, open_fds, require, ring_threads

import trio_fuse_uring as tfu
from trio_fuse_uring import _abi
from trio_fuse_uring._uring_support import cpu_list, possible_cpus

_STAT_LOOP = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[2])})
for _ in range(int(sys.argv[3])):
    os.stat(sys.argv[1])
"""


def _queue_requests(m: tfu.Mount) -> dict[int, int]:
    return {q["qid"]: q["requests"] for q in m.stats()["ring"]["queues"]}


async def test_requests_arrive_on_the_callers_cpu_queue(tmp_path):
    require("uring")
    # One queue thread per online CPU; the clients can be pinned only where this
    # process may run (CI under taskset or a cpuset may allow fewer).
    online = cpu_list("/sys/devices/system/cpu/online")
    allowed = [c for c in online if c in os.sched_getaffinity(0)]
    path = tmp_path / "m"
    path.mkdir()
    async with tfu.mount(
        HelloFS(), path, tfu.Options(transport="uring", attr_timeout=0, entry_timeout=0)
    ) as m:
        assert len(m.stats()["ring"]["queues"]) == len(possible_cpus())
        assert sorted(ring_threads()) == sorted(f"tfu-q{c}" for c in online)
        for cpu in allowed:
            before = _queue_requests(m)
            await trio.run_process(
                [sys.executable, "-c", _STAT_LOOP, str(path / "hello"), str(cpu), "200"]
            )
            after = _queue_requests(m)
            grown = {q: after[q] - before[q] for q in after}
            # Every stat is a LOOKUP + GETATTR (timeouts 0), all on the pinned CPU's queue.
            assert grown[cpu] >= 200, grown
            assert sum(grown.values()) - grown[cpu] <= 5, grown
    await no_ring_threads()


@pytest.fixture
def uring_disabled():
    """Flip enable_uring to N for one mount; always restored."""
    require("uring")
    with open(_abi.ENABLE_URING_PARAM) as f:
        old = f.read().strip()
    with open(_abi.ENABLE_URING_PARAM, "w") as f:
        f.write("N")
    try:
        yield
    finally:
        with open(_abi.ENABLE_URING_PARAM, "w") as f:
            f.write(old)


async def test_auto_falls_back_and_says_why(tmp_path, uring_disabled, caplog):
    path = tmp_path / "m"
    path.mkdir()
    async with tfu.mount(HelloFS(), path, tfu.Options(transport="auto")) as m:
        assert m.transport == "devfuse"
        assert "enable_uring=N" in m.transport_reason
        assert "echo Y > /sys/module/fuse/parameters/enable_uring" in m.transport_reason
        assert await client(Path(path, "hello").read_bytes)
    assert "using /dev/fuse" in caplog.text


async def test_uring_demanded_but_disabled_is_a_clear_error(tmp_path, uring_disabled):
    path = tmp_path / "m"
    path.mkdir()
    with pytest.raises(tfu.UringUnavailable, match="echo Y > /sys/module/fuse/parameters"):
        async with tfu.mount(HelloFS(), path, tfu.Options(transport="uring")):
            pytest.fail("mounted over io-uring although it is disabled")
    from trio_fuse_uring._mountlib import is_mountpoint

    assert not is_mountpoint(str(path))


_HAMMER = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[2])})
print("go", flush=True)
n = 0
while True:
    try:
        os.stat(sys.argv[1])
        with open(sys.argv[1], "rb") as f:
            f.read()
    except OSError as e:
        print("stopped", e.errno, n, flush=True)
        break
    n += 1
"""


async def test_unmount_under_load_leaves_nothing(tmp_path, transport):
    """Clients on every CPU hammer the mount while it is unmounted: they get errors,
    never hang, and no thread, fd or mount is left behind."""
    fds_before = open_fds()
    path = tmp_path / "m"
    path.mkdir()
    procs = []
    async with tfu.mount(HelloFS(), path, tfu.Options(transport=transport, attr_timeout=0)) as m:
        for cpu in sorted(os.sched_getaffinity(0)):
            p = await trio.lowlevel.open_process(
                [sys.executable, "-c", _HAMMER, str(path / "hello"), str(cpu)],
                stdout=subprocess.PIPE,
            )
            procs.append(p)
        for p in procs:
            assert p.stdout is not None
            with trio.fail_after(10):
                assert b"go" in await p.stdout.receive_some()
        await trio.sleep(0.5)
        served = m.stats()["requests"][transport]
        assert served > 100
    try:
        with trio.fail_after(15):
            for p in procs:
                await p.wait()
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
            assert p.stdout is not None
            await p.stdout.aclose()
    await no_ring_threads()
    assert open_fds() - fds_before == set()
    from trio_fuse_uring._mountlib import is_mountpoint

    assert not is_mountpoint(str(path))


async def test_token_handoff_alternative_serves_every_cpu(tmp_path, monkeypatch):
    # The hand-off benchmarks compare with the eventfd: queue threads call into Python
    # and wake trio with TrioToken.run_sync_soon. Without polling every request needs it.
    require("uring")
    from trio_fuse_uring._ring import HANDOFF_ENV

    monkeypatch.setenv(HANDOFF_ENV, "token")
    path = tmp_path / "m"
    path.mkdir()
    opts = tfu.Options(transport="uring", attr_timeout=0, entry_timeout=0, poll_us=0)
    with trio.fail_after(60):
        async with tfu.mount(HelloFS(), path, opts) as m:
            for cpu in sorted(os.sched_getaffinity(0)):
                await trio.run_process(
                    [sys.executable, "-c", _STAT_LOOP, str(path / "hello"), str(cpu), "300"]
                )
            ring = m.stats()["ring"]
            assert ring["handoff"] == "token"
            assert ring["requests"] >= 600 * len(os.sched_getaffinity(0))
            assert sum(q["wakeups_sent"] for q in ring["queues"]) > 0


async def test_unknown_handoff_is_a_clear_error(tmp_path, monkeypatch):
    require("uring")
    from trio_fuse_uring._ring import HANDOFF_ENV

    monkeypatch.setenv(HANDOFF_ENV, "carrier-pigeon")
    path = tmp_path / "m"
    path.mkdir()
    with pytest.raises(ValueError, match="TRIO_FUSE_URING_HANDOFF must be"):
        async with tfu.mount(HelloFS(), path, tfu.Options(transport="uring")):
            pass
    await no_ring_threads()
