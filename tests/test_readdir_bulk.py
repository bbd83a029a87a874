"""Bulk readdir: ``readdir`` returning a :class:`DirListing`, through the kernel.

The listing is encoded once (in C) and each READDIR reply is cut from it; these tests
list large directories on both transports, move around with telldir/seekdir, change the
directory during a listing, and compare the C encoder with the Python one.
"""

from __future__ import annotations

import array
import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest
import trio
from helpers import MountOps, client
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_fuse_uring as tfu
from trio_fuse_uring import _protocol as P
from trio_fuse_uring._dispatch import _encode_listing, _encode_listing_py

N = 5000


class ListingFS(tfu.Operations):
    """The root directory holds ``names`` (regular files, inodes from 100 on)."""

    def __init__(self, names: list[bytes], *, with_attr: bool = True) -> None:
        self.names = list(names)
        self.with_attr = with_attr
        self.snapshots: dict[int, tfu.DirListing] = {}
        self.next_fh = 1
        self.attr_calls = 0
        self.lookups = 0

    def _attr(self, ino: int) -> tfu.EntryAttributes:
        return tfu.EntryAttributes(st_ino=ino, st_mode=stat.S_IFREG | 0o644)

    async def getattr(self, inode: int, ctx: tfu.RequestContext) -> tfu.EntryAttributes:
        if inode == tfu.ROOT_INODE:
            return tfu.EntryAttributes(st_ino=1, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return self._attr(inode)

    async def lookup(
        self, parent: int, name: bytes, ctx: tfu.RequestContext
    ) -> tfu.EntryAttributes:
        if name in self.names:
            self.lookups += 1
            return self._attr(100 + self.names.index(name))
        raise tfu.FUSEError(errno.ENOENT)

    async def opendir(self, inode: int, ctx: tfu.RequestContext) -> int:
        fh = self.next_fh
        self.next_fh += 1
        return fh

    async def readdir(self, fh: int, start_id: int, ctx: tfu.RequestContext) -> tfu.DirListing:
        listing = self.snapshots.get(fh)
        if listing is None or start_id == 0:
            names = list(self.names)
            inos = [100 + i for i in range(len(names))]

            def attr(i: int) -> tfu.EntryAttributes:
                self.attr_calls += 1
                return self._attr(inos[i])

            listing = tfu.DirListing(
                names, inos, [stat.S_IFREG] * len(names), attr=attr if self.with_attr else None
            )
            self.snapshots[fh] = listing
        return listing

    async def releasedir(self, fh: int) -> None:
        self.snapshots.pop(fh, None)


def _names(n: int) -> list[bytes]:
    return [b"entry-%05d" % i for i in range(n)]


@pytest.mark.parametrize("with_attr", [True, False], ids=["attr", "no-attr"])
async def test_large_directory_lists_completely(mount_ops: MountOps, with_attr: bool) -> None:
    ops = ListingFS(_names(N), with_attr=with_attr)
    m = await mount_ops(ops)
    for _ in range(2):
        seen = await client(os.listdir, m.mountpoint)
        assert sorted(seen) == sorted(n.decode() for n in ops.names)

    def file_types() -> dict[str, bool]:
        with os.scandir(m.mountpoint) as it:
            return {e.name: e.is_file(follow_symlinks=False) for e in it}

    types = await client(file_types)
    assert all(types.values()) and len(types) == N
    if with_attr:
        assert ops.attr_calls > 0  # the first call of a listing is a readdirplus


class _Dirent(ctypes.Structure):
    _fields_ = [
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_ubyte),
        ("d_name", ctypes.c_char * 256),
    ]


def _seek_and_tell(path: str) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Read 1000 names, telldir, read 300 more, seekdir back, read 300 again; and read
    everything that is left."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.readdir64.restype = ctypes.POINTER(_Dirent)
    libc.readdir64.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]
    d = libc.opendir(path.encode())
    assert d, os.strerror(ctypes.get_errno())

    def read(n: int) -> list[bytes]:
        out = []
        while len(out) < n:
            ent = libc.readdir64(d)
            if not ent:
                break
            name = ent.contents.d_name
            if name not in (b".", b".."):
                out.append(name)
        return out

    try:
        read(1000)
        pos = libc.telldir(d)
        first = read(300)
        libc.seekdir(d, pos)
        again = read(300)
        rest = read(10**9)
    finally:
        libc.closedir(d)
    return first, again, rest


async def test_seekdir_and_telldir(mount_ops: MountOps) -> None:
    ops = ListingFS(_names(N))
    m = await mount_ops(ops)
    first, again, rest = await client(_seek_and_tell, m.mountpoint)
    assert len(first) == 300 and first == again
    assert len(rest) == N - 1300


def _list_while_changing(path: str, change: trio.lowlevel.TrioToken, ops: ListingFS) -> list[str]:
    """Read part of a listing, let the directory change, read the rest."""
    with os.scandir(path) as it:
        seen = []
        for i, e in enumerate(it):
            seen.append(e.name)
            if i == 100:
                trio.from_thread.run_sync(_change, ops, trio_token=change)
    return seen


def _change(ops: ListingFS) -> None:
    ops.names = [n for n in ops.names if not n.endswith(b"7")] + [b"new-%d" % i for i in range(50)]


async def test_listing_is_a_snapshot_while_the_directory_changes(mount_ops: MountOps) -> None:
    """A listing already under way keeps its snapshot (no entry twice or skipped); a new
    listing sees the change."""
    ops = ListingFS(_names(N))
    original = sorted(n.decode() for n in ops.names)
    m = await mount_ops(ops)
    token = trio.lowlevel.current_trio_token()
    seen = await client(_list_while_changing, m.mountpoint, token, ops)
    assert sorted(seen) == original
    after = await client(os.listdir, m.mountpoint)
    assert sorted(after) == sorted(n.decode() for n in ops.names)


async def test_bad_listing_is_an_error_not_a_crash(
    mount_ops: MountOps, caplog: pytest.LogCaptureFixture
) -> None:
    ops = ListingFS([b"ok", b"bad/name"], with_attr=False)
    m = await mount_ops(ops)
    with pytest.raises(OSError) as info:
        await client(os.listdir, m.mountpoint)
    assert info.value.errno == errno.EIO
    assert any("DirListing" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError):
        tfu.DirListing([b"a"], [1, 2], [0])


names_st = st.lists(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(names=names_st, plus=st.booleans(), data=st.data())
def test_c_encoding_equals_python(names: list[bytes], plus: bool, data: st.DataObject) -> None:
    """The C encoder writes exactly what DirentBuffer writes, entry for entry."""
    inos = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=len(names), max_size=len(names)))
    modes = data.draw(st.lists(st.sampled_from([0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK]),
                               min_size=len(names), max_size=len(names)))  # fmt: skip
    listing = tfu.DirListing(names, inos, modes)
    blob, pos = _encode_listing(listing, plus)
    ref, ref_pos = _encode_listing_py(listing, plus, array.array("Q", bytes(8 * (len(names) + 1))))
    assert blob == ref and list(pos) == list(ref_pos)
    for i, name in enumerate(names):
        buf = P.DirentBuffer(P.dirent_size(len(name), plus), plus)
        assert buf.add_raw(name, inos[i], modes[i], i + 1, None)
        assert bytes(buf.getvalue()) == blob[pos[i] : pos[i + 1]]


def test_reply_is_cut_at_an_entry_boundary() -> None:
    """Every reply holds whole entries, as many as fit, from the asked index on."""
    from trio_fuse_uring._dispatch import Dispatcher

    names = [b"n" * (1 + i % 30) for i in range(500)]
    listing = tfu.DirListing(names, list(range(1, 501)), [stat.S_IFREG] * 500)
    d = Dispatcher(tfu.Operations())
    blob, pos = _encode_listing(listing, False)
    for start in (0, 1, 77, 499, 500, 600):
        for size in (4096, 100, 8192):
            body = d._listing_reply(listing, start, size, False)
            if start >= 500:
                assert not body
                continue
            assert body is not None
            got = bytes(body)
            assert len(got) <= size
            end = next((j for j in range(start, 501) if pos[j] - pos[start] > size), 501) - 1
            assert got == blob[pos[start] : pos[end]]


def test_scan_directory_reads_what_scandir_reads(tmp_path: Path) -> None:
    """Names, inode numbers and types as os.scandir gives them, past the first buffer
    sizes (more than 1024 entries, long names)."""
    for i in range(1500):
        (tmp_path / (f"f{i:04d}-" + "x" * (i % 200))).touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to("nowhere")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        listing = tfu.scan_directory(fd)
        again = tfu.scan_directory(fd)  # rewinds: the same entries again
    finally:
        os.close(fd)
    with os.scandir(tmp_path) as it:
        want = {
            os.fsencode(e.name): (e.inode(), stat.S_IFMT(e.stat(follow_symlinks=False).st_mode))
            for e in it
        }
    got = {n: (listing.inos[i], listing.modes[i]) for i, n in enumerate(listing.names)}
    assert got == want
    assert list(again.names) == list(listing.names)
    with pytest.raises(OSError):
        tfu.scan_directory(10_000)
