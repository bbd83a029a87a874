"""pyfuse3's helper functions that are not about serving: plain system calls."""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Literal

NamespaceT = Literal["system", "user"]


def _check(path: object, name: object, namespace: str) -> None:
    if not isinstance(path, str):
        raise TypeError("*path* argument must be of type str")
    if not isinstance(name, str):
        raise TypeError("*name* argument must be of type str")
    if namespace not in ("system", "user"):
        raise ValueError(f'*namespace* parameter must be "system" or "user", not {namespace}')


def listdir(path: str) -> list[str]:
    """Names in directory ``path`` (like :func:`os.listdir`; ``path`` must be a str)."""
    if not isinstance(path, str):
        raise TypeError("*path* argument must be of type str")
    return os.listdir(path)


def syncfs(path: str) -> None:
    """``syncfs(2)`` the filesystem that holds ``path``."""
    fd = os.open(path, os.O_DIRECTORY)
    try:
        if _libc().syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def setxattr(path: str, name: str, value: bytes, namespace: NamespaceT = "user") -> None:
    """Set extended attribute ``name`` of ``path`` (``namespace`` is ignored on Linux)."""
    _check(path, name, namespace)
    if not isinstance(value, bytes):
        raise TypeError("*value* argument must be of type bytes")
    os.setxattr(path, name, value)


def getxattr(path: str, name: str, size_guess: int = 128, namespace: NamespaceT = "user") -> bytes:
    """Value of extended attribute ``name`` of ``path`` (``size_guess`` is not needed)."""
    _check(path, name, namespace)
    return os.getxattr(path, name)


def get_sup_groups(pid: int) -> set[int]:
    """Supplementary group ids of process ``pid``, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Groups:"):
                return {int(x) for x in line.split()[1:]}
    raise RuntimeError(f"Unable to parse /proc/{pid}/status")
