"""Can this connection be served over io-uring? One function that says why not.

What it reads about the machine (the kernel release, the module parameter, the
extension) comes from a :class:`Host`, so that every answer can be checked against a
simulated machine without changing the real one.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _abi
from ._abi import InitFlag

#: The first Linux release with FUSE-over-io-uring.
URING_MIN_KERNEL = (6, 14)

MODPROBE_CONF = "/etc/modprobe.d/fuse-uring.conf"
PERSIST_HINT = (
    f"to keep it across reboots: `echo 'options fuse enable_uring=1' > {MODPROBE_CONF}` "
    "(and, if fuse is built into the kernel, add fuse.enable_uring=1 to the kernel command line)"
)


class UringUnavailable(RuntimeError):
    """``transport="uring"`` was asked for but FUSE-over-io-uring cannot be used here.

    The message names the reason and the fix (enable the module parameter, install
    liburing-dev and reinstall the package, or use a Linux 6.14+ kernel). Use
    ``transport="auto"`` to fall back to /dev/fuse instead.
    """


def _import_extension() -> None:
    importlib.import_module("trio_fuse_uring._ring_cffi")


@dataclass(frozen=True)
class Host:
    """Where this machine's FUSE facts are read from (the real paths by default)."""

    kernel_release: str = field(default_factory=lambda: os.uname().release)
    enable_uring_param: str = _abi.ENABLE_URING_PARAM
    dev_fuse: str = "/dev/fuse"
    fusectl: str = "/sys/fs/fuse/connections"
    proc_mounts: str = "/proc/self/mounts"
    fuse_conf: str = "/etc/fuse.conf"
    modprobe_dir: str = "/etc/modprobe.d"
    kernel_cmdline: str = "/proc/cmdline"
    #: fusermount3's path, or None to look it up on PATH.
    fusermount: str | None = None
    #: Imports the io-uring extension (raises ImportError when it cannot be loaded).
    import_extension: Callable[[], object] = _import_extension


def kernel_version(release: str) -> tuple[int, int] | None:
    """(major, minor) of a release string such as ``6.18.4-amd64``, None if unreadable."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def enable_uring_param(host: Host | None = None) -> str | None:
    """The value of /sys/module/fuse/parameters/enable_uring ("Y"/"N"), None if absent."""
    try:
        with open((host or Host()).enable_uring_param) as f:
            return f.read().strip()
    except OSError:
        return None


def enable_uring_persistent(host: Host | None = None) -> str | None:
    """Where ``enable_uring`` is set at boot (a modprobe.d file or the kernel command
    line), None if nowhere."""
    host = host or Host()
    setting = re.compile(r"^\s*options\s+fuse\s+.*\benable_uring=(1|y|Y)\b", re.M)
    try:
        confs = sorted(os.listdir(host.modprobe_dir))
    except OSError:
        confs = []
    for name in confs:
        path = os.path.join(host.modprobe_dir, name)
        try:
            with open(path) as f:
                if name.endswith(".conf") and setting.search(f.read()):
                    return path
        except OSError:
            continue
    try:
        with open(host.kernel_cmdline) as f:
            if re.search(r"(^|\s)fuse\.enable_uring=(1|y|Y)\b", f.read()):
                return host.kernel_cmdline
    except OSError:
        pass
    return None


def possible_cpus() -> list[int]:
    """CPUs the kernel considers possible: one FUSE ring queue each (not os.cpu_count())."""
    return cpu_list(_abi.POSSIBLE_CPUS_FILE)


def cpu_list(path: str) -> list[int]:
    """The CPUs of a sysfs CPU list file such as ``/sys/devices/system/cpu/online``."""
    with open(path) as f:
        text = f.read().strip()
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def extension_problem(host: Host | None = None) -> str | None:
    """Why the io-uring transport's C extension cannot be used, or None if it can."""
    importer = (host or Host()).import_extension
    try:
        importer()
    except ModuleNotFoundError as exc:
        if exc.name != "trio_fuse_uring._ring_cffi":
            return f"the io-uring transport cannot be imported ({exc})"
        return (
            "this installation of trio-fuse-uring was built without its io-uring extension "
            "(liburing's headers were missing at build time): install liburing-dev "
            "(Debian, Ubuntu; liburing-devel on Fedora) and reinstall trio-fuse-uring from "
            "source (`pip install --force-reinstall --no-binary trio-fuse-uring "
            "trio-fuse-uring`, or `pip install --force-reinstall .` in a checkout), or "
            "install the manylinux wheel, which includes the extension"
        )
    except ImportError as exc:
        if "liburing" in str(exc):
            return (
                f"the io-uring extension is installed but cannot load liburing ({exc}): "
                "install the liburing run-time library (Debian: liburing2), or reinstall "
                "trio-fuse-uring so that it links liburing statically"
            )
        return f"the io-uring extension is installed but does not load ({exc})"
    return None


def kernel_problem(host: Host | None = None) -> str | None:
    """Why this kernel will not offer FUSE-over-io-uring, or None if it should."""
    host = host or Host()
    param = enable_uring_param(host)
    if param is None:
        version = kernel_version(host.kernel_release)
        if version is not None and version < URING_MIN_KERNEL:
            return (
                f"this kernel ({host.kernel_release}) has no FUSE io-uring support: it needs "
                "Linux 6.14 or newer"
            )
        return (
            f"this kernel ({host.kernel_release}) has no FUSE io-uring support "
            f"({host.enable_uring_param} does not exist: the fuse module is not loaded, or "
            "it was built without CONFIG_FUSE_IO_URING)"
        )
    if param != "Y":
        return (
            f"FUSE io-uring is disabled in the kernel (enable_uring={param}): run "
            f"`echo Y > {host.enable_uring_param}` as root; {PERSIST_HINT}"
        )
    return None


def unavailable_reason(kernel_flags: int, host: Host | None = None) -> str | None:
    """Why the ring cannot serve a connection whose INIT offered ``kernel_flags``.

    Returns None when it can.
    """
    reason = extension_problem(host) or kernel_problem(host)
    if reason is not None:
        return reason
    if not kernel_flags & InitFlag.OVER_IO_URING:
        return "the kernel did not offer FUSE_OVER_IO_URING in INIT"
    return None
