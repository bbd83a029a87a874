"""Mounting and unmounting: mount(2) as root, fusermount3 otherwise.

Some facts this module relies on:

- A FUSE mount is created by opening ``/dev/fuse`` and passing the fd in the mount data
  (``fd=N,rootmode=40000,user_id=U,group_id=G``). mount(2) returns at once; the kernel
  then queues INIT on the fd.
- Unprivileged users cannot call mount(2): the setuid helper ``fusermount3`` (Debian
  package fuse3) opens /dev/fuse, mounts, and passes the fd back over the socket named
  by ``_FUSE_COMMFD`` (SCM_RIGHTS). With ``auto_unmount`` it stays alive and unmounts
  when that socket closes, i.e. when the daemon dies.
- Generic options (``ro``, ``noatime``...) are mount flags, not FUSE data: the kernel's
  FUSE option parser rejects them in the data string.
- umount2 may make the kernel send requests (flushing dirty data), so it must never run
  on the thread that serves the mount.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import _abi
from ._options import Options, fs_type

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# Generic mount options, as mount(8) reads them: each sets some flags and clears others,
# and a later option wins over an earlier one. The atime options exclude each other.
_ATIME = MS_NOATIME | MS_RELATIME | MS_STRICTATIME
_MS_FLAG_OPTIONS: dict[str, tuple[int, int]] = {  # name -> (flags set, flags cleared)
    "ro": (MS_RDONLY, 0),
    "rw": (0, MS_RDONLY),
    "nosuid": (MS_NOSUID, 0),
    "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0),
    "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0),
    "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0),
    "async": (0, MS_SYNCHRONOUS),
    "dirsync": (MS_DIRSYNC, 0),
    "noatime": (MS_NOATIME, _ATIME),
    "atime": (0, MS_NOATIME),
    "relatime": (MS_RELATIME, _ATIME),
    "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, _ATIME),
    "nodiratime": (MS_NODIRATIME, 0),
    "diratime": (0, MS_NODIRATIME),
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class MountError(OSError):
    """Mounting failed; the message says why and what to try."""


def _fusermount() -> str | None:
    return shutil.which("fusermount3")


@dataclass
class MountHandle:
    """What a successful mount leaves behind for unmounting."""

    mountpoint: str
    fd: int
    via_fusermount: bool
    #: auto_unmount: the watchdog process and the pipe end whose EOF wakes it.
    watchdog: subprocess.Popen[bytes] | None = None
    watchdog_pipe: int = -1
    #: The mount's connection id: unmounting leaves any other mount at the path alone.
    conn: int | None = None


def open_dev_fuse() -> int:
    try:
        return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MountError(
            errno.ENODEV, "/dev/fuse does not exist: load the module (modprobe fuse)"
        ) from None
    except PermissionError:
        raise MountError(
            errno.EACCES,
            "cannot open /dev/fuse: it is not accessible to this user "
            "(distributions ship it mode 0666; as root: chmod 666 /dev/fuse)",
        ) from None


def check_mountpoint(mountpoint: str) -> str:
    # mount(2) follows symlinks, and mountinfo then shows the real path: unmounting
    # and every later check must use that one.
    path = os.path.realpath(mountpoint)
    try:
        st = os.stat(path)
        if is_mountpoint(path):
            # A dead FUSE mount may still answer stat() from cached attributes;
            # statfs always asks its (dead) daemon.
            os.statvfs(path)
    except FileNotFoundError:
        raise MountError(
            errno.ENOENT, f"mountpoint {path} does not exist: create it first"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(
                errno.ENOTCONN,
                f"{path} is a dead FUSE mount (its daemon died): clear it with "
                f"`fusermount3 -u {path}` or `umount -l {path}`",
            ) from None
        raise
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(errno.ENOTDIR, f"mountpoint {path} is not a directory")
    return path


def mount(mountpoint: str, options: Options, *, sync_fd: int | None = None) -> MountHandle:
    """Mount a FUSE filesystem at ``mountpoint``; returns the /dev/fuse fd's owner.

    Root uses mount(2) directly; other users go through fusermount3. With
    ``auto_unmount`` a watchdog process (``_watchdog.py``) unmounts if the daemon dies.
    ``sync_fd`` (root only) is an fd from :func:`open_for_sync_init`, which stays the
    caller's: this call then returns only once another thread answered INIT on it.
    """
    path = check_mountpoint(mountpoint)
    mounter: Callable[[str, Options], MountHandle]
    if sync_fd is not None:
        mounter = functools.partial(_mount_direct, sync_fd=sync_fd)
    else:
        mounter = _mount_direct if os.geteuid() == 0 else _mount_fusermount
    # The watchdog starts before the mount, so that a daemon killed right after
    # mounting (before it could start a process) still leaves no dead mount.
    watchdog = MountHandle(path, -1, via_fusermount=False)
    if options.auto_unmount:
        _start_watchdog(watchdog)
    try:
        handle = mounter(path, options)
    except BaseException:
        release_helper(watchdog)
        raise
    handle.watchdog, handle.watchdog_pipe = watchdog.watchdog, watchdog.watchdog_pipe
    try:
        handle.conn = connection_id(path) if sync_fd is None else installed_connection(sync_fd)
        if handle.conn is None:
            raise MountError(errno.EIO, f"{path} vanished right after mounting")
        if options.auto_unmount:
            os.write(handle.watchdog_pipe, b"%d\n" % handle.conn)
    except BaseException:
        unmount(handle, lazy=True)
        if sync_fd is None:
            os.close(handle.fd)
        release_helper(handle)
        raise
    return handle


def _start_watchdog(handle: MountHandle) -> None:
    # It learns the mount's connection id through the pipe once mounted; until then it
    # knows what was mounted at the path before (usually nothing).
    before = connection_id(handle.mountpoint)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        handle.watchdog = subprocess.Popen(
            [sys.executable, "-m", "trio_fuse_uring._watchdog", str(r), handle.mountpoint,
             "-" if before is None else str(before)],
            pass_fds=(r,), stdin=subprocess.DEVNULL, cwd="/", start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    handle.watchdog_pipe = w


def _split_flags(options: Options) -> tuple[int, list[str]]:
    """mount(2) flags and FUSE data options from ``options`` (root mounts only).

    nosuid and nodev are the default, as with fusermount3 and libfuse; root may ask for
    ``suid`` and ``dev`` (a tmpfs-like filesystem that runs set-user-ID programs or
    serves device nodes).
    """
    flags = MS_NOSUID | MS_NODEV
    if options.read_only:
        flags |= MS_RDONLY
    data: list[str] = []
    for opt in options.extra:
        if opt in _MS_FLAG_OPTIONS:
            on, off = _MS_FLAG_OPTIONS[opt]
            flags = (flags & ~off) | on
        else:
            data.append(opt)
    return flags, data


def open_for_sync_init() -> int | None:
    """A /dev/fuse fd in synchronous-INIT mode, or None where the kernel lacks it.

    mount(2) with such an fd (``FUSE_DEV_IOC_SYNC_INIT``, Linux 6.18) returns only once
    the daemon has answered INIT, so a mount is never visible before it can serve; it
    must therefore run on another thread than the one answering. Until mount(2) has
    attached the fd to its connection (:func:`installed_connection`), reading or
    polling the fd sleeps in the kernel: leave it alone until then.
    """
    fd = open_dev_fuse()
    try:
        fcntl.ioctl(fd, _abi.FUSE_DEV_IOC_SYNC_INIT)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            return None
        raise
    return fd


def installed_connection(fd: int) -> int | None:
    """The connection a /dev/fuse fd serves once mount(2) attached it, else None.

    Read from the fd's /proc fdinfo (``fuse_connection:``), which never sleeps, unlike
    a read or poll of the fd in synchronous-INIT mode before it is attached.
    """
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("fuse_connection:"):
                    return int(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def flags_asked(options: Options) -> frozenset[str]:
    """The generic flags a root mount(2) of ``options`` gets, named as
    :func:`mount_flags` names them (the kernel defaults to ``relatime``)."""
    flags, _ = _split_flags(options)
    bits = (
        ("ro", MS_RDONLY), ("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC),
        ("sync", MS_SYNCHRONOUS), ("dirsync", MS_DIRSYNC), ("nodiratime", MS_NODIRATIME),
    )  # fmt: skip
    names = {name for name, bit in bits if flags & bit}
    if flags & MS_STRICTATIME:
        names.add("strictatime")
    elif flags & MS_NOATIME:
        names.add("noatime")
    else:
        names.add("relatime")
    return frozenset(names)


def _mount_data(options: Options, fd: int, data: list[str]) -> str:
    """mount(2)'s data string: the connection, its owner, then the options asked for
    (``data``: those of ``options.extra`` that are not mount flags)."""
    opts = [f"fd={fd}", "rootmode=40000", f"user_id={os.geteuid()}", f"group_id={os.getegid()}"]
    if options.default_permissions:
        opts.append("default_permissions")
    if options.allow_other:
        opts.append("allow_other")
    return ",".join(opts + data)


def _mount_direct(path: str, options: Options, sync_fd: int | None = None) -> MountHandle:
    fd = open_dev_fuse() if sync_fd is None else sync_fd
    try:
        flags, data = _split_flags(options)
        rc = _libc.mount(
            options.fsname.encode(), path.encode(), fs_type(options).encode(), flags,
            _mount_data(options, fd, data).encode(),
        )  # fmt: skip
        if rc != 0:
            err = ctypes.get_errno()
            why = f"mount(2) of {path} failed: {os.strerror(err)}"
            if err == errno.EINVAL and data:
                # The kernel does not say which: name the ones that came from the user.
                why += f" (check these mount options: {','.join(data)})"
            raise MountError(err, why)
    except BaseException:
        if sync_fd is None:
            os.close(fd)
        raise
    return MountHandle(path, fd, via_fusermount=False)


def _mount_fusermount(path: str, options: Options) -> MountHandle:
    helper = _fusermount()
    if helper is None:
        raise MountError(
            errno.EPERM,
            "mounting as a non-root user needs fusermount3: apt-get install fuse3",
        )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
    # fusermount3 understands generic flags (noatime...) and FUSE options alike.
    cmd = [helper, "-o", options.fusermount_options(), "--", path]
    try:
        proc = subprocess.Popen(
            cmd, env=env, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        theirs.close()
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(ours, 1, 1)
    except OSError:
        fds = []
    if not fds:
        _, err = proc.communicate(timeout=10)
        ours.close()
        text = err.decode(errors="replace").strip()
        hint = fusermount_hint(text, path, already_mounted=is_mountpoint(path))
        raise MountError(
            errno.EPERM,
            f"fusermount3 could not mount {path}: {text}" + (f" ({hint})" if hint else ""),
        )
    fd = fds[0]
    os.set_blocking(fd, False)
    proc.wait(timeout=10)
    ours.close()
    return MountHandle(path, fd, via_fusermount=True)


def fusermount_hint(message: str, path: str, *, already_mounted: bool) -> str | None:
    """One line that says how to fix a failure fusermount3 reported as ``message``."""
    if "/dev/fuse" in message and ("Permission denied" in message or "EACCES" in message):
        return (
            "/dev/fuse is not accessible to this user: as root, `chmod 666 /dev/fuse` (the "
            "distributions' default mode), or add this user to the group that owns it"
        )
    if already_mounted and "mountpoint" in message:
        # fusermount3 runs as root, which may not enter another user's FUSE mount.
        return (
            f"{path} is already a mount point, most likely a FUSE mount of yours that is "
            f"still mounted: unmount it first with `fusermount3 -u {path}`"
        )
    if "user_allow_other" in message:
        return "as root, add a line `user_allow_other` to /etc/fuse.conf, or drop allow_other"
    if "mountpoint" in message and "Permission denied" in message:
        return f"this user cannot enter {path}: mount on a directory you own"
    if "mount_max" in message or "too many FUSE filesystems" in message:
        return "unmount some FUSE filesystems, or raise mount_max in /etc/fuse.conf as root"
    return None


def unmount(handle: MountHandle, *, lazy: bool = False) -> int:
    """Unmount; returns 0 or an errno (EBUSY: files are open; EINVAL: not mounted).

    With ``handle.conn`` known, only that mount: if the path now leads to another (a
    mount stacked on ours, or ours detached and another mounted there), it is left
    alone and the answer is EINVAL. Connection ids are reused once a connection ends,
    so a caller whose connection ended must first make sure the mount with that id is
    still its own (``_session._unmount_if_ours``: a dead one).
    """
    if handle.conn is not None and connection_id(handle.mountpoint) != handle.conn:
        return errno.EINVAL
    if not handle.via_fusermount and os.geteuid() == 0:
        rc = _libc.umount2(
            handle.mountpoint.encode(), (MNT_DETACH if lazy else 0) | UMOUNT_NOFOLLOW
        )
        return ctypes.get_errno() if rc != 0 else 0
    helper = _fusermount()
    if helper is None:
        return errno.ENOENT
    # No -q: it also silences the reason, which tells EBUSY from the rest.
    cmd = [helper, "-u"] + (["-z"] if lazy else []) + ["--", handle.mountpoint]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if proc.returncode == 0:
        return 0
    err = proc.stderr.decode(errors="replace")
    if "not mounted" in err or "not found in" in err:
        return errno.EINVAL
    return errno.EBUSY if "busy" in err.lower() else errno.EIO


def release_helper(handle: MountHandle) -> None:
    """Stop the auto_unmount watchdog (after our own unmount: it then finds nothing to do)."""
    if handle.watchdog_pipe >= 0:
        os.close(handle.watchdog_pipe)
        handle.watchdog_pipe = -1
    if handle.watchdog is not None:
        try:
            handle.watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            handle.watchdog.kill()
            handle.watchdog.wait()
        handle.watchdog = None


def connection_id(mountpoint: str) -> int | None:
    """The fusectl connection number of a mount (its device minor), or None.

    Read from /proc/self/mountinfo: a stat() of the mountpoint would be a request to
    the filesystem itself, which deadlocks when called from the thread serving it.
    """
    path = os.path.abspath(mountpoint)
    conn = None
    for fields in _mountinfo():  # the last one is on top, where the path leads
        if _unescape(fields[4]) == path:
            conn = int(fields[2].partition(":")[2])
    return conn


def is_dead(mountpoint: str) -> bool:
    """Whether the FUSE mount on top of ``mountpoint`` lost its daemon (ENOTCONN).

    statfs always asks the daemon, so call it from a thread that does not serve it.
    """
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def abort_connection(conn: int) -> bool:
    """Abort a connection through fusectl (root only): requests still unanswered fail
    with ECONNABORTED, later ones with ENOTCONN."""
    try:
        with open(f"/sys/fs/fuse/connections/{conn}/abort", "w") as f:
            f.write("1")
    except OSError:
        return False
    return True


# Per-mount options in /proc/self/mountinfo (field 6) and superblock ones (after " - ").
_MOUNT_FLAG_NAMES = ("ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime")
_SUPER_FLAG_NAMES = ("sync", "dirsync")


def mount_flags(conn: int | None) -> frozenset[str]:
    """The generic flags the kernel applied to the mount of connection ``conn``, read
    back from /proc/self/mountinfo: ``ro``, ``nosuid``, ``nodev``, ``noexec``,
    ``sync``, ``dirsync``, ``nodiratime`` and one of ``noatime``, ``relatime`` or
    ``strictatime``. Empty if the mount is not found."""
    for fields in _mountinfo():
        if conn is None or fields[2] != f"0:{conn}":
            continue
        found = set(fields[5].split(",")) & set(_MOUNT_FLAG_NAMES)
        sep = fields.index("-", 6) if "-" in fields[6:] else -1
        if sep > 0 and len(fields) > sep + 3:
            found |= set(fields[sep + 3].split(",")) & set(_SUPER_FLAG_NAMES)
        if not found & {"noatime", "relatime"}:
            found.add("strictatime")
        return frozenset(found)
    return frozenset()


def _mountinfo() -> list[list[str]]:
    try:
        with open("/proc/self/mountinfo") as f:
            return [line.split() for line in f if len(line.split()) > 4]
    except OSError:
        return []


def is_mountpoint(path: str) -> bool:
    """True if ``path`` appears in /proc/self/mountinfo (works even for dead mounts)."""
    path = os.path.abspath(path)
    return any(_unescape(fields[4]) == path for fields in _mountinfo())


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040...).
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
