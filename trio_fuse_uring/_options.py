"""Typed mount and connection options, validated before anything reaches the kernel."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

TransportChoice = Literal["auto", "uring", "devfuse"]


class OptionError(ValueError):
    """An option value cannot be passed safely to mount(2) or fusermount3.

    Mount options travel as one comma-separated ``key=value`` string, so a value that
    contains ``,``, ``=`` or a NUL could smuggle in other options. Such values are refused
    rather than escaped; choose another value.
    """


def _safe(name: str, value: str) -> str:
    if not value:
        raise OptionError(f"mount option {name} must not be empty")
    bad = [c for c in (",", "=", "\0", "\n") if c in value]
    if bad:
        raise OptionError(
            f"mount option {name}={value!r} contains {bad[0]!r}, which would inject other "
            f"mount options; use a value without ',', '=', newlines or NUL"
        )
    return value


#: Mount data the library itself writes; one from the user would override it.
_RESERVED = {
    "fd": "the library passes its own /dev/fuse descriptor",
    "rootmode": "the library sets the root's type itself",
    "user_id": "the library sets it to the user who mounts (to serve as another user, "
    "run the daemon as that user)",
    "group_id": "the library sets it to the group of the user who mounts",
}


def _subtype(value: str) -> None:
    _safe("subtype", value)
    if "/" in value:
        raise OptionError(
            f"mount option subtype={value!r} contains '/': the filesystem type would read "
            f"fuse.{value}, which no tool takes for one name; use a name without '/'"
        )


@dataclass(slots=True, kw_only=True)
class Options:
    """How to mount and how to talk to the kernel.

    Mount options are what ``mount -o`` would take; connection tuning is negotiated with
    the kernel at INIT.

    Mount options:
        fsname: shown as the source in ``/proc/mounts`` and ``df``.
        subtype: the filesystem type shown as ``fuse.<subtype>``.
        allow_other: let users other than the mounting one access the mount (as
            non-root, needs ``user_allow_other`` in /etc/fuse.conf). Off unless asked.
        default_permissions: let the kernel check permissions from the mode bits (on by
            default, as every multi-user filesystem should).
        read_only: mount read-only.
        extra: further ``name`` or ``name=value`` mount options, validated the same way.
            Generic ones become mount flags, a later one winning as with mount(8):
            ``noexec``, ``sync``, ``dirsync``, ``noatime``/``relatime``/``strictatime``,
            ``nodiratime``... Mounts are ``nosuid,nodev`` by default; as root,
            ``suid`` and ``dev`` lift that (fusermount3 refuses them to other users).
            ``fd``, ``rootmode``, ``user_id`` and ``group_id`` are the library's own
            and refused, as is a ``subtype`` containing ``/``.
            The filesystem learns the flags applied in ``InitInfo.mount_flags``.

    Connection tuning:
        max_write: largest WRITE the kernel sends (bytes); also sizes ring buffers.
        max_pages: largest READ in pages (the kernel's default is 32 = 128 KiB).
        max_readahead: read-ahead window in bytes.
        max_background / congestion_threshold: limits for background requests.
        time_gran: timestamp granularity in ns the filesystem keeps (1 = nanoseconds).
        writeback_cache: let the kernel cache writes (opt-in: it changes semantics).
        posix_acl: let the kernel enforce POSIX ACLs stored in xattrs (opt-in).
        handle_killpriv_v2: the filesystem clears set-user-ID/set-group-ID bits itself
            (opt-in). Without it the kernel does so with a SETATTR after an unprivileged
            write; with it, writes and truncating opens that must clear the bits reach
            ``Operations.setattr`` with ``SetattrFields(kill_suidgid=True)`` first.
        entry_timeout / attr_timeout: defaults (seconds) for attributes whose own
            timeouts are None.
        request_timeout: seconds (1 to 65535) within which every request must be
            answered. The kernel (Linux 6.14+) is asked to enforce it, which means it
            **aborts the connection** when a request goes unanswered that long, so the
            framework answers a handler still running a margin before that
            (``ETIMEDOUT``, its cancel scope cancelled, an error logged naming the
            handler and the request): a slow handler fails its caller instead of
            killing the mount. A timeout the administrator imposes
            (``/proc/sys/fs/fuse/default_request_timeout``, ``max_request_timeout``) is
            honoured the same way without this option. None (default): ask for none.
        passthrough: let the kernel read and write backing files itself (FUSE
            passthrough, Linux 6.9+, needs CAP_SYS_ADMIN): handles opened with
            ``FileInfo.backing_fd`` then never reach the daemon for READ, WRITE or mmap.
            Without the privilege or kernel support the framework serves them (in C)
            and logs why once. Not with ``writeback_cache`` (the kernel refuses both).

    Serving:
        transport: "auto" (io-uring when it can be had, else /dev/fuse, saying why),
            "uring" (fail if it cannot be had) or "devfuse".
        debug: log every request and reply at DEBUG level.
        poll_us: how long an idle transport keeps polling before it sleeps (µs); 0 never
            polls. Bounded: an idle mount uses no CPU.
        ring_depth: entries per io-uring queue (one queue per CPU) for requests whose
            handlers do not wait: how many requests from one CPU are in the daemon at
            once; more wait in the kernel. Default 2, chosen by benchmark (8 entries
            cost 34 % of 1 MiB write throughput on a 2-vCPU VM and gained nothing
            beyond noise; see benchmarks/README.md).
        ring_max_depth: a handler that waits (awaits I/O, a lock, another request) holds
            its entry until it replies, so each one makes its queue register another
            entry, keeping ``ring_depth`` free for the rest, up to this many per queue
            (default: 64, or ``ring_depth`` if larger). Beyond it, requests from that
            CPU wait for a handler to finish. Buffers for these are reserved but only
            touched when registered.
        auto_unmount: if the daemon dies (even by SIGKILL), a small watchdog process
            unmounts for it, so the mountpoint can be reused.
    """

    fsname: str = "trio-fuse-uring"
    subtype: str | None = None
    allow_other: bool = False
    default_permissions: bool = True
    read_only: bool = False
    extra: tuple[str, ...] = ()

    max_write: int = 128 * 1024
    max_pages: int = 32
    max_readahead: int = 128 * 1024
    max_background: int = 64
    congestion_threshold: int = 48
    time_gran: int = 1
    writeback_cache: bool = False
    posix_acl: bool = False
    handle_killpriv_v2: bool = False
    entry_timeout: float = 1.0
    attr_timeout: float = 1.0
    request_timeout: int | None = None
    passthrough: bool = False

    transport: TransportChoice = "auto"
    debug: bool = False
    poll_us: int = 50
    ring_depth: int = 2
    ring_max_depth: int | None = None
    auto_unmount: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def parse(cls, texts: str | Sequence[str], **defaults: Any) -> Options:
        """Build Options from ``-o`` style text, as libfuse programs take them.

        ``Options.parse("allow_other,fsname=x,noatime")`` is ready for :func:`mount` and
        :func:`run`. Options are read as described in :meth:`parse_with_own`; those that
        are not Options fields go to ``extra`` (mount(2) options such as ``noatime``).

        Raises:
            OptionError: a value does not parse or is unsafe.
        """
        return cls.parse_with_own(texts, own=(), **defaults)[0]

    @classmethod
    def parse_with_own(
        cls, texts: str | Sequence[str], *, own: Collection[str], **defaults: Any
    ) -> tuple[Options, dict[str, str]]:
        """Like :meth:`parse`, but also return the options named in ``own``, which belong
        to the filesystem itself (such as a size limit) rather than to the mount.

        Each text is split at commas (``\\,`` keeps a comma inside a value, which
        validation then refuses). Flags (``allow_other``, ``ro``, ``rw``,
        ``default_permissions``, ``no_default_permissions``, ``writeback_cache``,
        ``posix_acl``, ``auto_unmount``, ``debug``) and ``name=value`` options named
        like a field (``fsname=``, ``max_write=``, ``entry_timeout=``, ``transport=``...)
        set that field; names in ``own`` are returned for the filesystem itself;
        anything else goes to ``extra`` (mount(2) options such as ``noatime``).
        ``defaults`` are Options fields that the text may override.

        Returns:
            The options, and the filesystem's own options as a name → value dict.

        Raises:
            OptionError: a value does not parse or is unsafe.
        """
        items = [texts] if isinstance(texts, str) else list(texts)
        kw: dict[str, Any] = dict(defaults)
        mine: dict[str, str] = {}
        extra: list[str] = list(kw.pop("extra", ()))
        for text in items:
            for opt in text.replace("\\,", "\0").split(","):
                opt = opt.replace("\0", ",")
                if not opt:
                    continue
                key, sep, value = opt.partition("=")
                if key in own:
                    mine[key] = value
                elif key in _BOOL_OPTIONS and not sep:
                    name, flag = _BOOL_OPTIONS[key]
                    kw[name] = flag
                elif key in _VALUE_OPTIONS and sep:
                    try:
                        kw[key] = _VALUE_OPTIONS[key](value)
                    except ValueError as exc:
                        raise OptionError(f"bad value for mount option {key}: {exc}") from None
                else:
                    extra.append(opt)
        return cls(extra=tuple(extra), **kw), mine

    def validate(self) -> None:
        """Check every value. Raises :class:`OptionError` (a ValueError) naming the option."""
        _safe("fsname", self.fsname)
        if self.subtype is not None:
            _subtype(self.subtype)
        for opt in self.extra:
            if not isinstance(opt, str):
                raise OptionError(f"extra mount options must be str, not {type(opt).__name__}")
            key, sep, value = opt.partition("=")
            _safe("option name", key)
            if key in _RESERVED:
                raise OptionError(
                    f"mount option {key}= is not accepted: {_RESERVED[key]}; remove it"
                )
            if sep:
                _safe(key, value)
            if key == "subtype":
                _subtype(value)
        if self.transport not in ("auto", "uring", "devfuse"):
            raise OptionError(
                f"transport must be 'auto', 'uring' or 'devfuse', not {self.transport!r}"
            )
        _in_range("max_write", self.max_write, 4096, 16 * 1024 * 1024, "4096 and 16 MiB")
        _in_range("max_pages", self.max_pages, 1, 65535)
        _in_range("max_readahead", self.max_readahead, 0, None)
        _in_range("max_background", self.max_background, 0, 65535)
        _in_range("congestion_threshold", self.congestion_threshold, 0, 65535)
        _in_range("poll_us", self.poll_us, 0, None)
        _in_range("time_gran", self.time_gran, 1, 1_000_000_000, "1 and 10**9 ns")
        _in_range("entry_timeout", self.entry_timeout, 0, None)
        _in_range("attr_timeout", self.attr_timeout, 0, None)
        if self.request_timeout is not None and not (
            isinstance(self.request_timeout, int) and 1 <= self.request_timeout <= 65535
        ):
            raise OptionError(
                f"request_timeout must be a whole number of seconds from 1 to 65535 (the "
                f"kernel's limit), or None, not {self.request_timeout!r}"
            )
        _in_range("ring_depth", self.ring_depth, 1, 4096)
        if self.ring_max_depth is not None:
            _in_range(
                "ring_max_depth", self.ring_max_depth, self.ring_depth, 4096,
                f"ring_depth ({self.ring_depth}) and 4096",
            )  # fmt: skip

    @property
    def ring_entries_max(self) -> int:
        """``ring_max_depth``, or its default: 64, or ``ring_depth`` if larger."""
        if self.ring_max_depth is not None:
            return self.ring_max_depth
        return max(64, self.ring_depth)

    def fusermount_options(self) -> str:
        """The ``-o`` string for fusermount3 (which adds fd, rootmode and ids itself)."""
        opts = [f"fsname={self.fsname}", "nosuid", "nodev"]
        if self.subtype:
            opts.append(f"subtype={self.subtype}")
        opts.append("ro" if self.read_only else "rw")
        if self.default_permissions:
            opts.append("default_permissions")
        if self.allow_other:
            opts.append("allow_other")
        return ",".join([*opts, *self.extra])


def _in_range(
    name: str, value: float, low: float, high: float | None, between: str | None = None
) -> None:
    """Raise an :class:`OptionError` naming the option, its value and the range."""
    if high is None:
        if not value >= low:  # also NaN
            raise OptionError(f"{name} must be >= {low}, not {value!r}")
    elif not low <= value <= high:
        raise OptionError(f"{name} must be between {between or f'{low} and {high}'}, not {value!r}")


_BOOL_OPTIONS: dict[str, tuple[str, bool]] = {
    "allow_other": ("allow_other", True),
    "default_permissions": ("default_permissions", True),
    "no_default_permissions": ("default_permissions", False),
    "ro": ("read_only", True),
    "rw": ("read_only", False),
    "writeback_cache": ("writeback_cache", True),
    "posix_acl": ("posix_acl", True),
    "handle_killpriv_v2": ("handle_killpriv_v2", True),
    "passthrough": ("passthrough", True),
    "no_passthrough": ("passthrough", False),
    "auto_unmount": ("auto_unmount", True),
    "debug": ("debug", True),
}
_VALUE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "fsname": str,
    "subtype": str,
    "transport": str,
    "max_write": int,
    "max_pages": int,
    "max_readahead": int,
    "max_background": int,
    "congestion_threshold": int,
    "time_gran": int,
    "poll_us": int,
    "ring_depth": int,
    "ring_max_depth": int,
    "entry_timeout": float,
    "attr_timeout": float,
    "request_timeout": int,
}


def fs_type(options: Options) -> str:
    return f"fuse.{options.subtype}" if options.subtype else "fuse"
