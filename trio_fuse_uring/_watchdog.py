"""``auto_unmount``: a tiny process that unmounts for a daemon that died.

The daemon starts it with the read end of a pipe whose write end only the daemon holds.
When the daemon exits, however it exits, the pipe reaches EOF. If the mount is still
there, the watchdog waits until the kernel reports the connection dead (ENOTCONN) and
then detaches the mount, so a new daemon can mount at the same place.

Why not fusermount3's own auto_unmount: it checks the connection the moment the daemon's
socket closes. Over io-uring the kernel releases /dev/fuse only when it has torn the
daemon's rings down, a little later, so the connection still looks alive at that
moment and fusermount3 leaves the dead mount behind.

Usage (internal): ``python -m trio_fuse_uring._watchdog FD MOUNTPOINT BEFORE``: BEFORE is
the connection id on top of MOUNTPOINT before mounting, or ``-``; the daemon writes the
new mount's connection id into the pipe once mounted.
"""

from __future__ import annotations

import os
import sys
import time

#: How long to wait for the kernel to declare the dead daemon's connection gone.
SETTLE_SECONDS = 30.0


def main(argv: list[str]) -> int:
    fd, mountpoint, before = int(argv[1]), argv[2], argv[3]
    os.chdir("/")  # never keep the mount (or anything else) busy
    told = b""
    while True:  # the daemon writes its connection id once mounted; EOF: it is gone
        try:
            chunk = os.read(fd, 64)
        except InterruptedError:
            continue
        if not chunk:
            break
        told += chunk
    from ._mountlib import MountHandle, connection_id, is_dead, unmount

    if told.strip():
        conn = int(told)
    else:
        # It died between mounting and telling: a connection on top of the path that
        # was not there when it started us is its mount.
        now = connection_id(mountpoint)
        if now is None or str(now) == before:
            return 0  # it died before mounting
        conn = now
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if connection_id(mountpoint) != conn:
            return 0  # unmounted cleanly (or someone else's mount now): nothing to do
        if is_dead(mountpoint):
            handle = MountHandle(mountpoint, -1, via_fusermount=os.geteuid() != 0, conn=conn)
            return 0 if unmount(handle, lazy=True) == 0 else 1
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
