"""``trio_fuse_uring.asyncio``: mounts inside ``asyncio.run`` with asyncio handlers.

Every test mounts through the real kernel on both transports; client calls run in
worker threads (``asyncio.to_thread``) or other processes, never on the loop's thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import trio_fuse_uring as tfu
import trio_fuse_uring.asyncio as tfu_asyncio

HELLO = b"hello from asyncio\n"
FILE_INO = 2


def _attr(ino: int) -> tfu.EntryAttributes:
    if ino == tfu.ROOT_INODE:
        return tfu.EntryAttributes(st_ino=ino, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
    return tfu.EntryAttributes(st_ino=ino, st_mode=stat.S_IFREG | 0o644, st_size=len(HELLO))


class AsyncioFs(tfu.Operations):
    """One file whose read awaits asyncio primitives (and, if given, a TCP server)."""

    def __init__(self, server_port: int | None = None) -> None:
        self.lock = asyncio.Lock()
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.server_port = server_port
        self.block_reads = False
        self.read_cancelled = asyncio.Event()
        self.inits = 0
        self.destroys = 0

    async def init(self, info: tfu.InitInfo) -> None:
        await asyncio.sleep(0)
        self.inits += 1

    async def destroy(self) -> None:
        await asyncio.sleep(0)
        self.destroys += 1

    async def lookup(self, parent_inode: int, name: bytes, ctx: tfu.RequestContext) -> Any:
        await asyncio.sleep(0.001)  # a real asyncio timer, not just a checkpoint
        if parent_inode == tfu.ROOT_INODE and name == b"file":
            return _attr(FILE_INO)
        raise tfu.FUSEError(errno.ENOENT)

    async def getattr(self, inode: int, ctx: tfu.RequestContext) -> Any:
        async with self.lock:
            await self.queue.put(inode)
            assert await self.queue.get() == inode
        return _attr(inode)

    async def open(self, inode: int, flags: int, ctx: tfu.RequestContext) -> tfu.FileInfo:
        return tfu.FileInfo(fh=inode, direct_io=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        if self.block_reads:
            try:
                await asyncio.Event().wait()  # until interrupted
            except asyncio.CancelledError:
                self.read_cancelled.set()
                raise
        if self.server_port is not None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.server_port)
            writer.write(f"{off} {size}\n".encode())
            await writer.drain()
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            return data
        return HELLO[off : off + size]

    async def readdir(
        self, fh: int, start_id: int, ctx: tfu.RequestContext
    ) -> AsyncIterator[tfu.DirEntry]:
        if start_id == 0:
            await asyncio.sleep(0)
            yield tfu.DirEntry(b"file", _attr(FILE_INO), next_id=1)


class ListingFs(AsyncioFs):
    """readdir as a plain ``async def`` returning a whole DirListing."""

    async def readdir(  # type: ignore[override]
        self, fh: int, start_id: int, ctx: tfu.RequestContext
    ) -> tfu.DirListing:
        await asyncio.sleep(0)
        return tfu.DirListing([b"file"], [FILE_INO], [stat.S_IFREG], attr=lambda i: _attr(FILE_INO))


def run_with_mount(
    tmp_path: Path,
    transport: str,
    fs: AsyncioFs,
    body: Callable[[tfu.Mount, Path], Coroutine[Any, Any, Any]],
) -> Any:
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)

    async def main() -> Any:
        opts = tfu.Options(transport=transport)  # type: ignore[arg-type]
        async with tfu_asyncio.mount(fs, mnt, opts) as m:
            assert m.transport == transport, m.transport_reason
            result = await body(m, mnt)
        assert not os.path.ismount(mnt)
        return result

    return asyncio.run(main())


def test_asyncio_handlers_serve_through_the_kernel(tmp_path: Path, transport: str) -> None:
    fs = AsyncioFs()

    async def body(m: tfu.Mount, mnt: Path) -> tuple[list[str], bytes, int]:
        names = await asyncio.to_thread(os.listdir, mnt)
        data = await asyncio.to_thread((mnt / "file").read_bytes)
        size = (await asyncio.to_thread(os.stat, mnt / "file")).st_size
        return names, data, size

    names, data, size = run_with_mount(tmp_path, transport, fs, body)
    assert names == ["file"] and data == HELLO and size == len(HELLO)
    assert fs.inits == 1 and fs.destroys == 1


def test_readdir_may_return_a_dirlisting(tmp_path: Path, transport: str) -> None:
    async def body(m: tfu.Mount, mnt: Path) -> list[str]:
        return await asyncio.to_thread(os.listdir, mnt)

    assert run_with_mount(tmp_path, transport, ListingFs(), body) == ["file"]


def test_handler_awaits_an_asyncio_server_of_the_same_program(
    tmp_path: Path, transport: str
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        off, size = map(int, (await reader.readline()).split())
        writer.write(HELLO.upper()[off : off + size])
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        fs = AsyncioFs(server_port=port)
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        async with server, tfu_asyncio.mount(fs, mnt, tfu.Options(transport=transport)):  # type: ignore[arg-type]
            return await asyncio.to_thread((mnt / "file").read_bytes)

    assert asyncio.run(main()) == HELLO.upper()


_INTERRUPTED_READER = """
import os, signal, sys
class Alarm(Exception):
    pass
def on_alarm(*a):
    raise Alarm
signal.signal(signal.SIGALRM, on_alarm)
fd = os.open(sys.argv[1], os.O_RDONLY)
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    os.read(fd, 100)
    print("read", flush=True)
except Alarm:
    print("interrupted", flush=True)
"""


def test_interrupt_cancels_the_asyncio_handler(tmp_path: Path, transport: str) -> None:
    fs = AsyncioFs()
    fs.block_reads = True

    async def body(m: tfu.Mount, mnt: Path) -> tuple[str, bool]:
        cp = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _INTERRUPTED_READER, str(mnt / "file")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        await asyncio.wait_for(fs.read_cancelled.wait(), 10)
        return cp.stdout.strip(), fs.read_cancelled.is_set()

    out, cancelled = run_with_mount(tmp_path, transport, fs, body)
    assert out == "interrupted" and cancelled


def test_cancelling_the_body_unmounts(tmp_path: Path, transport: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    async def main() -> None:
        async def serve() -> None:
            await tfu_asyncio.serve(AsyncioFs(), mnt, tfu.Options(transport=transport))  # type: ignore[arg-type]

        task = asyncio.create_task(serve())
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(os.path.ismount, mnt):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread((mnt / "file").read_bytes) == HELLO
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not os.path.ismount(mnt)


def test_serve_returns_when_unmounted_from_outside(tmp_path: Path, transport: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    async def main() -> None:
        task = asyncio.create_task(
            tfu_asyncio.serve(AsyncioFs(), mnt, tfu.Options(transport=transport))  # type: ignore[arg-type]
        )
        while not await asyncio.to_thread(os.path.ismount, mnt):
            assert not task.done()
            await asyncio.sleep(0.05)
        await asyncio.to_thread(subprocess.run, ["umount", str(mnt)], check=True)
        await asyncio.wait_for(task, 30)

    if os.geteuid() != 0:
        pytest.skip("unmounting from outside needs root here")
    asyncio.run(main())


_CTRL_C_PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[3])
    import trio_fuse_uring as tfu, trio_fuse_uring.asyncio
    from test_asyncio_entry import AsyncioFs

    async def main():
        opts = tfu.Options(transport=sys.argv[2])
        async with trio_fuse_uring.asyncio.mount(AsyncioFs(), sys.argv[1], opts):
            print("mounted", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_ctrl_c_unmounts_and_raises_keyboardinterrupt(tmp_path: Path, transport: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_PROGRAM, str(mnt), transport, str(Path(__file__).parent)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "mounted"
        assert (mnt / "file").read_bytes() == HELLO
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err, err
    assert not os.path.ismount(mnt)
