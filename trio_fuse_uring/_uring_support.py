"""Can this connection be served over io-uring? One function that says why not."""

from __future__ import annotations

from . import _abi
from ._abi import InitFlag


class UringUnavailable(RuntimeError):
    """``transport="uring"`` was asked for but FUSE-over-io-uring cannot be used here.

    The message names the reason and the fix (enable the module parameter, install
    liburing-dev and reinstall the package, or use a Linux 6.14+ kernel). Use
    ``transport="auto"`` to fall back to /dev/fuse instead.
    """


def enable_uring_param() -> str | None:
    """The value of /sys/module/fuse/parameters/enable_uring ("Y"/"N"), None if absent."""
    try:
        with open(_abi.ENABLE_URING_PARAM) as f:
            return f.read().strip()
    except OSError:
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


def unavailable_reason(kernel_flags: int) -> str | None:
    """Why the ring cannot serve a connection whose INIT offered ``kernel_flags``.

    Returns None when it can.
    """
    try:
        from . import _ring_cffi  # noqa: F401
    except ImportError as exc:
        return (
            f"the io-uring extension is not built ({exc}); install liburing-dev and "
            f"reinstall trio-fuse-uring"
        )
    param = enable_uring_param()
    if param is None:
        return "this kernel has no FUSE io-uring support (needs Linux 6.14 or newer)"
    if param != "Y":
        return (
            "FUSE io-uring is disabled in the kernel (enable_uring=N): run "
            f"`echo Y > {_abi.ENABLE_URING_PARAM}` as root"
        )
    if not kernel_flags & InitFlag.OVER_IO_URING:
        return "the kernel did not offer FUSE_OVER_IO_URING in INIT"
    return None
