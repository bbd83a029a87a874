"""Request timeouts: the kernel's deadline for a reply, and when the framework answers.

Since Linux 6.14 (protocol 7.43) a connection may have a request timeout: a request left
unanswered longer than that **aborts the whole connection** (every later access fails
with ENOTCONN until the mount is cleared). A server asks for one at INIT
(``FUSE_REQUEST_TIMEOUT``, ``fuse_init_out.request_timeout`` in seconds); an
administrator may impose one on every new connection through
``/proc/sys/fs/fuse/default_request_timeout`` (used when the server asks for none) and
``max_request_timeout`` (a cap on both). ``fs/fuse/inode.c`` (``init_server_timeout``)
combines them when it processes the INIT reply; this module does the same arithmetic.

The kernel measures from the request's creation and checks every 15 s
(``FUSE_TIMEOUT_TIMER_FREQ`` in ``fs/fuse/dev.c``), so it aborts somewhere between the
deadline and 15 s later. The framework cannot know where in that window the check falls,
so it answers a still-running handler a margin *before* the deadline, counted from when
the request reached it (never earlier than the kernel's creation time).
"""

from __future__ import annotations

import os

#: Where the kernel's FUSE sysctls live (tests point this elsewhere).
SYSCTL_DIR = "/proc/sys/fs/fuse"

#: The kernel's request timeout field is 16 bits of seconds.
MAX_REQUEST_TIMEOUT = 0xFFFF


def read_sysctls(sysctl_dir: str | None = None) -> tuple[int, int]:
    """The administrator's ``(default_request_timeout, max_request_timeout)`` in seconds.

    0 means unset; a kernel without request timeouts (before 6.14) has neither file.
    """
    base = SYSCTL_DIR if sysctl_dir is None else sysctl_dir
    values = []
    for name in ("default_request_timeout", "max_request_timeout"):
        try:
            with open(os.path.join(base, name)) as f:
                values.append(max(0, int(f.read().strip() or 0)))
        except (OSError, ValueError):
            values.append(0)
    return values[0], values[1]


def kernel_request_timeout(requested: int, default: int, maximum: int) -> int:
    """The timeout the kernel enforces on a connection, in seconds (0: none).

    ``requested`` is what the INIT reply asked for (0 if nothing, or if the kernel did
    not offer ``FUSE_REQUEST_TIMEOUT``); ``default``/``maximum`` are the sysctls as they
    were when the kernel processed that reply.
    """
    timeout = requested or default
    if maximum:
        timeout = min(maximum, timeout) if timeout else maximum
    return timeout


def answer_margin(timeout: float) -> float:
    """How long before a ``timeout``-second deadline the framework answers itself.

    A tenth of the deadline, at least 1 s and at most 30 s, and never more than half of
    it: enough for a request's time queued in the kernel before it was read and for the
    reply's way back, without cutting a long deadline short by much.
    """
    return min(max(1.0, timeout / 10), 30.0, timeout / 2)


def handler_budget(timeout: float) -> float:
    """Seconds a handler may run before the framework answers for it."""
    return timeout - answer_margin(timeout)
