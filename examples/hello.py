"""The smallest useful filesystem: one read-only file, ``hello``.

python examples/hello.py MOUNTPOINT      # serves until Ctrl-C or `umount MOUNTPOINT`
cat MOUNTPOINT/hello
"""

from __future__ import annotations

import argparse
import errno
import logging
import stat
import time

import trio_fuse_uring as tfu

HELLO_INODE = tfu.ROOT_INODE + 1
HELLO_NAME = b"hello"
HELLO_DATA = b"Hello, world! Served by trio-fuse-uring.\n"


class HelloFS(tfu.Operations):
    """A root directory holding one read-only file."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()

    def _attr(self, inode: int) -> tfu.EntryAttributes:
        if inode == tfu.ROOT_INODE:
            mode, size, nlink = stat.S_IFDIR | 0o755, 0, 2
        elif inode == HELLO_INODE:
            mode, size, nlink = stat.S_IFREG | 0o444, len(HELLO_DATA), 1
        else:
            raise tfu.FUSEError(errno.ENOENT)
        t = self.started_ns
        return tfu.EntryAttributes(
            st_ino=inode, st_mode=mode, st_nlink=nlink, st_size=size,
            st_atime_ns=t, st_mtime_ns=t, st_ctime_ns=t,
        )  # fmt: skip

    async def lookup(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        if parent_inode != tfu.ROOT_INODE or name != HELLO_NAME:
            raise tfu.FUSEError(errno.ENOENT)
        return self._attr(HELLO_INODE)

    async def getattr(self, inode, ctx):  # type: ignore[no-untyped-def]
        return self._attr(inode)

    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        if inode != HELLO_INODE:
            raise tfu.FUSEError(errno.EISDIR)
        if flags & 3 != 0:  # O_WRONLY or O_RDWR
            raise tfu.FUSEError(errno.EACCES)
        return tfu.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh, off, size):  # type: ignore[no-untyped-def]
        return HELLO_DATA[off : off + size]

    async def readdir(self, fh, start_id, ctx):  # type: ignore[no-untyped-def]
        entries = [
            (b".", tfu.ROOT_INODE), (b"..", tfu.ROOT_INODE), (HELLO_NAME, HELLO_INODE),
        ]  # fmt: skip
        for i, (name, inode) in enumerate(entries[start_id:], start_id + 1):
            yield tfu.DirEntry(name, self._attr(inode), next_id=i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--transport", choices=["auto", "uring", "devfuse"], default="auto")
    parser.add_argument("--debug", action="store_true", help="log every request and reply")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    tfu.run(
        HelloFS(), args.mountpoint,
        tfu.Options(fsname="hello", subtype="hello", transport=args.transport, debug=args.debug),
    )  # fmt: skip


if __name__ == "__main__":
    main()
