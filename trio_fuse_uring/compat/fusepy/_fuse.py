"""``FUSE(operations, mountpoint, **options)``: mount and serve until unmounted, as fusepy does."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from typing import Any

import trio

from ... import paths
from ..._options import Options
from ._api import current_fuse, fuse_config
from ._bridge import bridge_for

log = logging.getLogger("fuse")

#: Environment variable naming the transport (``auto``, ``uring``, ``devfuse``); the
#: runner's ``--transport`` sets it.
TRANSPORT_ENV = "TRIO_FUSE_URING_TRANSPORT"

# Options that libfuse's high-level layer takes for itself rather than passing to mount(2).
_CONFIG_FLAGS = (
    "use_ino",
    "readdir_ino",
    "hard_remove",
    "nullpath_ok",
    "direct_io",
    "kernel_cache",
)
# Options of libfuse 2 or of libfuse's internals that have no meaning here: accepted
# (so old programs mount) and logged.
_IGNORED = frozenset(
    [
        "big_writes",
        "large_read",
        "nonempty",
        "intr",
        "intr_signal",
        "remember",
        "auto_cache",
        "noforget",
        "nopath",
        "negative_timeout",
        "ac_attr_timeout",
        "modules",
        "umask",
        "uid",
        "gid",
        "no_rofd_flush",
        "parallel_direct_write",
        "splice_read",
        "splice_write",
        "splice_move",
        "clone_fd",
    ]
)
_OWN = frozenset(("max_threads", *_CONFIG_FLAGS, *_IGNORED))


def _option_text(kwargs: dict[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        if isinstance(value, bool):
            if value:
                parts.append(key)
        else:
            # An escaped comma stays in the value, which validation then refuses.
            parts.append(f"{key}={str(value).replace(',', chr(92) + ',')}")
    return ",".join(parts)


class FUSE:
    """Mount ``operations`` (a fusepy ``Operations``) at ``mountpoint`` and serve it
    until it is unmounted, SIGINT/SIGTERM, or :func:`fuse_exit`; then return.

    Keyword options are fusepy's: ``foreground`` (else the process detaches once
    mounted, as libfuse does), ``nothreads`` (handlers run one at a time in the thread
    that serves the mount, as libfuse's ``-s``; otherwise in up to ``max_threads``
    worker threads, default 10), ``debug`` (log every request), ``raw_fi``,
    ``encoding``; and mount options such as ``fsname``, ``allow_other``, ``ro``,
    ``default_permissions``, ``entry_timeout``, ``attr_timeout``, ``max_write``,
    ``use_ino``, ``readdir_ino``, ``hard_remove``, ``direct_io``, ``kernel_cache``.
    ``transport`` (or the ``TRIO_FUSE_URING_TRANSPORT`` environment variable) picks
    ``uring``, ``devfuse`` or ``auto`` (the default).
    """

    OPTIONS = (("foreground", "-f"), ("debug", "-d"), ("nothreads", "-s"))

    def __init__(
        self,
        operations: Any,
        mountpoint: str,
        raw_fi: bool = False,
        encoding: str = "utf-8",
        errors: str = "surrogateescape",
        **kwargs: Any,
    ) -> None:
        self.operations = operations
        self.raw_fi = raw_fi
        self.encoding = encoding
        self.errors = errors
        self.use_ns = getattr(operations, "use_ns", False)
        if not self.use_ns:
            warnings.warn(
                "Time as floating point seconds for utimens is deprecated!\n"
                'To enable time as nanoseconds set the property "use_ns" to '
                "True in your operations class.",
                DeprecationWarning,
                stacklevel=2,
            )
        foreground = bool(kwargs.pop("foreground", False))
        debug = bool(kwargs.pop("debug", False))
        nothreads = bool(kwargs.pop("nothreads", False))
        kwargs.setdefault("fsname", type(operations).__name__)
        kwargs.setdefault("transport", os.environ.get(TRANSPORT_ENV, "auto"))
        options, own = Options.parse_with_own(
            _option_text(kwargs), own=_OWN, default_permissions=False, debug=debug
        )
        config = fuse_config()
        for key in _CONFIG_FLAGS:
            if key in own:
                setattr(config, key, 1)
        if getattr(operations, "flag_nopath", False) and getattr(
            operations, "flag_nullpath_ok", False
        ):
            config.nullpath_ok = 1
        config.entry_timeout, config.attr_timeout = options.entry_timeout, options.attr_timeout
        for key in sorted(set(own) & _IGNORED):
            log.info("mount option %r has no effect here; ignored", key)
        options.validate()
        threads = 0 if nothreads else int(own.get("max_threads") or 10)
        if threads < 1 and not nothreads:
            raise ValueError("max_threads must be at least 1")

        self._critical: BaseException | None = None
        self._scope = trio.CancelScope()
        self._bridge = bridge_for(
            operations, raw_fi=raw_fi, encoding=encoding, errors=errors, threads=threads,
            config=config, on_critical=self._set_critical,
        )  # fmt: skip
        mountpoint = os.path.abspath(mountpoint)
        ready_fd = None if foreground else _daemonize()
        try:
            trio.run(self._serve, mountpoint, options, ready_fd)
        except BaseExceptionGroup as group:
            leaf = _single_leaf(group)  # our nurseries are not the caller's business
            if leaf is None:
                raise
            raise leaf from None
        del self.operations
        if self._critical is not None:
            raise self._critical

    def _set_critical(self, exc: BaseException) -> None:
        self._critical = exc
        try:
            trio.from_thread.run_sync(self.exit)
        except RuntimeError:
            self.exit()

    def exit(self) -> None:
        """Stop serving and unmount once the handlers running now have answered (call
        in the serving trio thread; handlers call :func:`fuse_exit`)."""
        self._exit_asked.set()

    async def _exit_when_asked(self) -> None:
        await self._exit_asked.wait()
        # The handler that asked (and any other running one) answers first, as with
        # libfuse, whose loop ends only after the current requests.
        with trio.move_on_after(5):
            while self._bridge.running:
                await trio.sleep(0.005)
        self._scope.cancel()

    async def _serve(self, mountpoint: str, options: Options, ready_fd: int | None) -> None:
        current_fuse.set(self)
        self._exit_asked = trio.Event()
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._exit_when_asked)
                if threading.current_thread() is threading.main_thread():
                    nursery.start_soon(self._stop_on_signals)
                async with paths.mount(self._bridge, mountpoint, options) as m:
                    if ready_fd is not None:
                        os.write(ready_fd, b"1")
                        os.close(ready_fd)
                    await m.wait_unmounted()
                nursery.cancel_scope.cancel()

    async def _stop_on_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("got %s; unmounting", signal.Signals(signum).name)
                self._scope.cancel()


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def _daemonize() -> int:
    """Detach like libfuse without ``-f``: the parent exits once the child is mounted
    (status 0) or failed (1); returns the fd the child reports on."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        ok = os.read(r, 1) == b"1"
        os._exit(0 if ok else 1)
    os.close(r)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    return w
