"""``python -m trio_fuse_uring doctor``: can FUSE (and FUSE-over-io-uring) work here?

Each check prints one line: its verdict, what it found and, when something is missing,
the command that fixes it. The machine's facts come from a :class:`~._uring_support.Host`
so that every verdict can be checked against a simulated machine.
"""

from __future__ import annotations

import enum
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._uring_support import (
    PERSIST_HINT,
    URING_MIN_KERNEL,
    Host,
    enable_uring_param,
    enable_uring_persistent,
    extension_problem,
    kernel_version,
)

FUSE_DEVICE = (10, 229)  # major, minor of /dev/fuse


class Verdict(enum.Enum):
    OK = "ok"
    #: FUSE works, but something is missing (io-uring, unprivileged mounts, aborts).
    WARN = "warn"
    #: FUSE cannot work at all.
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    found: str
    fix: str | None = None
    #: What ``fix`` is: the command that fixes a problem, or advice on a working setup.
    fix_label: str = "fix"

    def line(self) -> str:
        text = f"[{self.verdict.value:>4}] {self.name}: {self.found}"
        return text + (f"; {self.fix_label}: {self.fix}" if self.fix else "")


def check_kernel(host: Host) -> Check:
    version = kernel_version(host.kernel_release)
    if version is None:
        return Check("kernel", Verdict.WARN, f"cannot read the version of {host.kernel_release!r}")
    if version < URING_MIN_KERNEL:
        return Check(
            "kernel", Verdict.WARN,
            f"Linux {host.kernel_release}: /dev/fuse only (FUSE-over-io-uring needs 6.14+)",
            "boot a Linux 6.14 or newer kernel for io-uring",
        )  # fmt: skip
    return Check("kernel", Verdict.OK, f"Linux {host.kernel_release} (io-uring capable: 6.14+)")


def check_enable_uring(host: Host) -> Check:
    name = "enable_uring"
    param = enable_uring_param(host)
    if param == "Y":
        where = enable_uring_persistent(host)
        if where is not None:
            return Check(
                name, Verdict.OK, f"{host.enable_uring_param} = Y (set at boot by {where})"
            )
        return Check(
            name, Verdict.OK,
            f"{host.enable_uring_param} = Y until reboot (nothing in {host.modprobe_dir} or "
            "the kernel command line sets it)",
            PERSIST_HINT.partition(": ")[2], "to keep it",
        )  # fmt: skip
    if param is None:
        return Check(
            name, Verdict.WARN,
            f"{host.enable_uring_param} does not exist (kernel older than 6.14, fuse not "
            "loaded, or built without CONFIG_FUSE_IO_URING): /dev/fuse only",
            "`modprobe fuse`, or a 6.14+ kernel with CONFIG_FUSE_IO_URING=y",
        )  # fmt: skip
    return Check(
        name, Verdict.WARN,
        f"{host.enable_uring_param} = {param}: io-uring is off, /dev/fuse is used",
        f"`echo Y > {host.enable_uring_param}` as root; {PERSIST_HINT}",
    )  # fmt: skip


def check_dev_fuse(host: Host, euid: int) -> Check:
    name = "/dev/fuse"
    try:
        st = os.stat(host.dev_fuse)
    except OSError as exc:
        return Check(name, Verdict.FAIL, f"{host.dev_fuse}: {exc.strerror}",
                     "`modprobe fuse` as root (and `mknod /dev/fuse c 10 229` in a container)")  # fmt: skip
    mode = stat.S_IMODE(st.st_mode)
    is_dev = (
        stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == FUSE_DEVICE
    )
    if not is_dev:
        return Check(name, Verdict.FAIL, f"{host.dev_fuse} is not the FUSE device (char 10:229)",
                     f"as root: `rm {host.dev_fuse} && mknod -m 666 {host.dev_fuse} c 10 229`")  # fmt: skip
    found = f"{host.dev_fuse} mode {mode:04o}"
    if euid != 0 and not _can_read_write(host.dev_fuse, st, euid):
        return Check(name, Verdict.FAIL, f"{found}, not readable and writable by uid {euid}",
                     f"as root: `chmod 666 {host.dev_fuse}` (the distributions' default)")  # fmt: skip
    if mode & 0o666 != 0o666:
        return Check(name, Verdict.WARN, f"{found}: other users cannot mount FUSE filesystems",
                     f"as root: `chmod 666 {host.dev_fuse}` (the distributions' default)")  # fmt: skip
    return Check(name, Verdict.OK, found)


def _can_read_write(path: str, st: os.stat_result, euid: int) -> bool:
    if euid == os.geteuid():
        return os.access(path, os.R_OK | os.W_OK, effective_ids=True)
    # Another uid than ours (asked about, not run as): its owner or "other" bits.
    bits = 0o600 if st.st_uid == euid else 0o006
    return st.st_mode & bits == bits


def check_fusermount(host: Host, euid: int) -> Check:
    name = "fusermount3"
    path = host.fusermount or shutil.which("fusermount3")
    bad = Verdict.FAIL if euid != 0 else Verdict.WARN
    if path is None or not os.path.exists(path):
        return Check(name, bad, "not found: only root can mount",
                     "`apt-get install fuse3` (Debian, Ubuntu) or `dnf install fuse3`")  # fmt: skip
    st = os.stat(path)
    if not (st.st_uid == 0 and st.st_mode & stat.S_ISUID):
        return Check(name, bad, f"{path} is not setuid root: only root can mount",
                     f"as root: `chown root {path} && chmod u+s {path}`")  # fmt: skip
    return Check(name, Verdict.OK, f"{path} (setuid root: other users can mount)")


def _mounted_fstypes(host: Host) -> dict[str, str]:
    try:
        with open(host.proc_mounts) as f:
            return {
                fields[1]: fields[2] for fields in (line.split() for line in f) if len(fields) > 2
            }
    except OSError:
        return {}


def check_fusectl(host: Host) -> Check:
    name = "fusectl"
    if _mounted_fstypes(host).get(host.fusectl) == "fusectl":
        return Check(
            name, Verdict.OK, f"mounted at {host.fusectl} (hung connections can be aborted)"
        )
    return Check(
        name, Verdict.WARN,
        f"not mounted at {host.fusectl}: a hung mount cannot be aborted through "
        f"{host.fusectl}/N/abort",
        f"as root: `mount -t fusectl none {host.fusectl}`",
    )  # fmt: skip


def check_extension(host: Host) -> Check:
    problem = extension_problem(host)
    if problem is None:
        return Check("extension", Verdict.OK, "the io-uring extension loads")
    return Check("extension", Verdict.WARN, problem)


#: Mounts a small filesystem in a fresh directory and reads it back; returns
#: (transport, reason) or raises.
TrialMount = Callable[[], tuple[str, str]]


def trial_mount() -> tuple[str, str]:
    """Mount an empty filesystem as this user, list it, unmount; (transport, reason)."""
    import errno

    import trio

    from ._options import Options
    from ._session import mount
    from .ops import EntryAttributes, FUSEError, Operations, RequestContext

    class Empty(Operations):
        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            if inode != 1:
                raise FUSEError(errno.ENOENT)
            return EntryAttributes(st_ino=1, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)

    async def main(path: str) -> tuple[str, str]:
        with trio.fail_after(30):
            async with mount(Empty(), path, Options(fsname="tfu-doctor")) as m:
                await trio.to_thread.run_sync(os.stat, path)
                return m.transport, m.transport_reason

    with tempfile.TemporaryDirectory(prefix="tfu-doctor-") as path:
        return trio.run(main, path)


def check_mount(euid: int, mounter: TrialMount) -> Check:
    name = "mount"
    try:
        transport, reason = mounter()
    except Exception as exc:
        return Check(name, Verdict.FAIL, f"uid {euid} cannot mount: {exc}")
    return Check(
        name, Verdict.OK, f"uid {euid} mounted a test filesystem over {transport} ({reason})"
    )


def run_checks(
    host: Host | None = None, *, euid: int | None = None, mounter: TrialMount | None = trial_mount
) -> list[Check]:
    """Every check, in order; the trial mount only if nothing before it failed."""
    host = host or Host()
    euid = os.geteuid() if euid is None else euid
    checks = [
        check_kernel(host),
        check_enable_uring(host),
        check_dev_fuse(host, euid),
        check_fusermount(host, euid),
        check_fusectl(host),
        check_extension(host),
    ]
    if mounter is not None and not any(c.verdict is Verdict.FAIL for c in checks):
        checks.append(check_mount(euid, mounter))
    return checks


def main(
    argv: Sequence[str], host: Host | None = None, mounter: TrialMount | None = trial_mount
) -> int:
    """Print one line per check; 1 if FUSE cannot work at all, else 0."""
    if "--no-mount" in argv:
        mounter = None
    checks = run_checks(host, mounter=mounter)
    for check in checks:
        print(check.line())
    failed = any(c.verdict is Verdict.FAIL for c in checks)
    if failed:
        print("FUSE cannot work for this user here: apply the fixes above.")
    elif any(c.verdict is Verdict.WARN for c in checks):
        print("FUSE works; the warnings above limit what it can do.")
    else:
        print("FUSE and FUSE-over-io-uring work here.")
    sys.stdout.flush()
    return 1 if failed else 0
