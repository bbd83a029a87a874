"""Tests of the C queue core (``trio_fuse_uring._ring_cffi``) against a real FUSE mount.

Each test mounts a tiny filesystem (a root directory holding one read-only file,
``hello``) with mount(2), answers INIT on /dev/fuse with FUSE_OVER_IO_URING and
serves every other request from Python directly on the ring, from a plain
thread.  Clients run in other threads or processes, never in the serving
thread.  The FUSE structs are packed locally and minimally on purpose: this file
tests the C layer, not the protocol codec.

Requirements: root, /dev/fuse, ``enable_uring=Y`` (set here when possible) and a
built extension (``python trio_fuse_uring/_ring_build.py``).  A missing
capability skips, or fails when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CI = os.environ.get("CI") == "true"
REPO = Path(__file__).resolve().parent.parent


def _need(ok: bool, why: str) -> None:
    if not ok:
        if CI:
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)


try:
    import trio_fuse_uring  # noqa: F401
except ImportError:  # not installed: test the source tree (built in place)
    sys.path.insert(0, str(REPO))

try:
    from trio_fuse_uring._ring_cffi import ffi, lib  # type: ignore[import-not-found]
except ImportError as exc:  # pragma: no cover - depends on the build
    ffi = lib = None
    _IMPORT_ERROR: str | None = f"{exc} (build with: python trio_fuse_uring/_ring_build.py)"
else:
    _IMPORT_ERROR = None


# ---------------------------------------------------------------------------
# kernel constants and structs used here (include/uapi/linux/fuse.h; _ring.h)

MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2
LOOKUP, GETATTR, OPEN, READ, STATFS, RELEASE, FLUSH, INIT = 1, 3, 14, 15, 17, 18, 25, 26
FORGET, OPENDIR, READDIR, RELEASEDIR, ACCESS, INTERRUPT, BATCH_FORGET = 2, 27, 28, 29, 34, 36, 42
NO_REPLY = {FORGET, BATCH_FORGET, INTERRUPT}
FUSE_INIT_EXT, FUSE_MAX_PAGES, FLAGS2_OVER_IO_URING = 1 << 30, 1 << 22, 1 << 9
FOPEN_DIRECT_IO = 1

IN_HEADER = struct.Struct("<IIQQIIIHH")  # 40
OUT_HEADER = struct.Struct("<IiQ")  # 16
INIT_IN = struct.Struct("<IIIII")  # major minor max_readahead flags flags2
INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")  # 64
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # 88
ENTRY_OUT = struct.Struct("<QQQQII")  # + ATTR
ATTR_OUT = struct.Struct("<QII")  # + ATTR
OPEN_OUT = struct.Struct("<QIi")
READ_IN = struct.Struct("<QQI")  # fh offset size ...
HDR_PAYLOAD_SZ = 256 + 16  # fuse_uring_ent_in_out.payload_sz inside the header

FILE_SIZE = 1 << 20
FILE_INO = 2
DATA = bytes((i * 7 + 3) & 0xFF for i in range(FILE_SIZE + 65536))

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return max(int(p.split("-")[-1]) for p in text.split(",")) + 1


def online_cpus() -> list[int]:
    out: list[int] = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def task_ids() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def new_threads(before: set[int], settle: float = 10.0) -> dict[int, str]:
    """Threads of this process that did not exist in `before` (name by tid), once the
    exiting ones have left /proc.

    A thread that Python has joined (or a C thread that signalled its exit) is still
    listed until the kernel reaps it a moment later; on a loaded machine that moment can
    come after the check. So wait up to ``settle`` seconds for the list to empty.
    """
    deadline = time.monotonic() + settle
    while True:
        out = {}
        for tid in task_ids() - before:
            with contextlib.suppress(OSError):
                out[tid] = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        if not out or time.monotonic() > deadline:
            return out
        time.sleep(0.01)


def enable_uring() -> bool:
    param = Path("/sys/module/fuse/parameters/enable_uring")
    try:
        if param.read_text().strip() != "Y":
            param.write_text("Y\n")
        return param.read_text().strip() == "Y"
    except OSError:
        return False


@pytest.fixture
def env() -> None:
    """Skip (or fail on CI) unless a ring-capable FUSE mount can be made."""
    _need(_IMPORT_ERROR is None, f"extension not built: {_IMPORT_ERROR}")
    _need(os.geteuid() == 0, "not root")
    _need(os.path.exists("/dev/fuse"), "no /dev/fuse")
    _need(enable_uring(), "cannot enable /sys/module/fuse/parameters/enable_uring")


# ---------------------------------------------------------------------------
# the filesystem (shared by the ring server and the /dev/fuse reader)


def _attr(ino: int) -> bytes:
    if ino == 1:
        return ATTR.pack(1, 0, 0, 0, 0, 0, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
    return ATTR.pack(
        ino, FILE_SIZE, FILE_SIZE // 512, 0, 0, 0, 0, 0, 0, 0o100444, 1, 0, 0, 0, 4096, 0
    )


def handle(
    opcode: int, nodeid: int, op_in: Any, payload: Any, direct_io: bool = True
) -> tuple[int, bytes]:
    """Answer one request: (negative errno or 0, reply bytes)."""
    if opcode == READ:
        _fh, off, size = READ_IN.unpack_from(op_in, 0)
        end = min(off + size, FILE_SIZE)
        return 0, DATA[off:end] if end > off else b""
    if opcode == GETATTR:
        if nodeid not in (1, FILE_INO):
            return -errno.ENOENT, b""
        return 0, ATTR_OUT.pack(0, 0, 0) + _attr(nodeid)
    if opcode == LOOKUP:
        if nodeid == 1 and bytes(payload).split(b"\0", 1)[0] == b"hello":
            return 0, ENTRY_OUT.pack(FILE_INO, 0, 0, 0, 0, 0) + _attr(FILE_INO)
        return -errno.ENOENT, b""
    if opcode == OPEN:
        return 0, OPEN_OUT.pack(1, FOPEN_DIRECT_IO if direct_io else 0, 0)
    if opcode in (RELEASE, FLUSH, RELEASEDIR, ACCESS):
        return 0, b""
    if opcode == OPENDIR:
        return 0, OPEN_OUT.pack(0, 0, 0)
    if opcode == READDIR:
        return 0, b""
    if opcode == STATFS:
        return 0, bytes(80)
    return -errno.ENOSYS, b""


# ---------------------------------------------------------------------------
# mount + INIT


def _mount_dev(mnt: str) -> str | None:
    """'major:minor' of the mount at mnt, from mountinfo (stat() would block)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        if f[4] == mnt:
            return f[2]
    return None


def _fusectl_abort(dev: str | None) -> None:
    if dev is None:
        return
    major, minor = (int(x) for x in dev.split(":"))
    path = Path(f"/sys/fs/fuse/connections/{os.makedev(major, minor)}/abort")
    with contextlib.suppress(OSError):
        path.write_text("1")


class Mount:
    """A FUSE mount whose INIT has been answered (io-uring requested by default)."""

    def __init__(self, *, max_write: int = 131072, max_pages: int = 32, uring: bool = True) -> None:
        self.max_write, self.max_pages, self.uring = max_write, max_pages, uring
        self.fd = -1
        self.mnt = ""
        self.dev: str | None = None
        self.mounted = False

    def __enter__(self) -> Mount:
        try:
            self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
            self.mnt = tempfile.mkdtemp(prefix="tfu-test-")
            opts = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0"
            rc = libc.mount(
                b"tfu-test", self.mnt.encode(), b"fuse.tfutest", MS_NOSUID | MS_NODEV, opts.encode()
            )
            if rc != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"mount: {os.strerror(e)}")
            self.mounted = True
            self.dev = _mount_dev(self.mnt)
            self._init()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _init(self) -> None:
        r, _, _ = select.select([self.fd], [], [], 5)
        assert r, "no INIT within 5 s"
        buf = os.read(self.fd, 1 << 20)
        _len, opcode, unique, *_ = IN_HEADER.unpack_from(buf, 0)
        assert opcode == INIT
        _major, minor, max_readahead, flags, flags2 = INIT_IN.unpack_from(buf, IN_HEADER.size)
        self.kernel_offers_uring = bool(flags & FUSE_INIT_EXT and flags2 & FLAGS2_OVER_IO_URING)
        self.minor = minor
        out = INIT_OUT.pack(
            7, min(minor, 45), max_readahead, FUSE_INIT_EXT | FUSE_MAX_PAGES,
            16, 12, self.max_write, 1, self.max_pages, 0,
            FLAGS2_OVER_IO_URING if self.uring else 0, 0, 0,
        )  # fmt: skip
        os.write(self.fd, OUT_HEADER.pack(OUT_HEADER.size + len(out), 0, unique) + out)

    def umount(self, flags: int = 0) -> None:
        if self.mounted:
            if libc.umount2(self.mnt.encode(), flags) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"umount2: {os.strerror(e)}")
            self.mounted = False

    def abort(self) -> None:
        _fusectl_abort(self.dev)

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            # abort first: a lazy unmount alone does not end a connection with open files
            self.abort()
            libc.umount2(self.mnt.encode(), MNT_DETACH)
            self.mounted = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.mnt:
            with contextlib.suppress(OSError):
                os.rmdir(self.mnt)
            self.mnt = ""


class DevFuseReader:
    """Serves /dev/fuse (fallback requests, FORGETs) until ENODEV or stop()."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.opcodes: list[int] = []
        self._stop_r, self._stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, name="devfuse", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = dict(poller.poll(1000))
            if self._stop_r in ready:
                return
            if self.fd not in ready:
                continue
            try:
                buf = os.read(self.fd, 1 << 20)
            except OSError as e:
                if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                return  # ENODEV: unmounted
            _len, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(buf, 0)
            self.opcodes.append(opcode)
            if opcode in NO_REPLY:
                continue
            mv = memoryview(buf)
            # on /dev/fuse the op struct (READ) or the name (LOOKUP) follows the header
            err, reply = handle(opcode, nodeid, mv[40:], mv[40:])
            if err:
                reply = b""
            with contextlib.suppress(OSError):
                os.write(self.fd, OUT_HEADER.pack(16 + len(reply), err, unique) + reply)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self.thread.join(5)
        os.close(self._stop_r)
        os.close(self._stop_w)


# ---------------------------------------------------------------------------
# the ring server


def check(rc: int) -> int:
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc


class RingServer:
    """Creates a tfu_ring and serves it from one Python thread (the 'trio side')."""

    def __init__(
        self,
        fd: int,
        *,
        depth: int = 4,
        max_depth: int = 0,
        payload_size: int = 131072,
        ring_poll_us: int = 0,
        trio_poll_us: int = 0,
        nr_queues: int | None = None,
        record: bool = True,
        tuning: Any = None,
    ) -> None:
        self.nr_queues = nr_queues or possible_cpus()
        self.depth = max_depth or depth  # entries per qid in the index space
        p = ffi.new(
            "struct tfu_ring_params *",
            {
                "fuse_fd": fd,
                "nr_queues": self.nr_queues,
                "depth": depth,
                "max_depth": max_depth,
                "payload_size": payload_size,
                "ring_poll_us": ring_poll_us,
                "trio_poll_us": trio_poll_us,
            },
        )
        out = ffi.new("tfu_ring **")
        if tuning is None:
            check(lib.tfu_ring_create(p, out))
        else:
            check(lib.tfu_ring_create_ex(p, tuning, out))
        self.r = out[0]
        self.nent = lib.tfu_ring_entry_count(self.r)
        self.hdr = [ffi.buffer(lib.tfu_ring_header(self.r, e), 288) for e in range(self.nent)]
        self.pay = [
            ffi.buffer(lib.tfu_ring_payload(self.r, e), payload_size) for e in range(self.nent)
        ]
        self.record = record
        self.log: list[tuple[int, int, int]] = []  # (opcode, qid, pid)
        self.served = 0
        self.exc: BaseException | None = None
        self.hold = False  # when set, take entries but never commit them
        self.held: list[int] = []
        self._stop = threading.Event()
        self._stop_r, self._stop_w = os.pipe()
        self.thread: threading.Thread | None = None
        self.joined = False

    def start(self) -> int:
        rc = int(lib.tfu_ring_start(self.r))
        self.thread = threading.Thread(target=self._run, name="ring-server", daemon=True)
        self.thread.start()
        return rc

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as e:  # reported by stop()
            self.exc = e

    def _serve(self) -> None:
        r, nent = self.r, self.nent
        buf = ffi.new("uint32_t[]", nent)
        poller = select.poll()
        poller.register(lib.tfu_ring_notify_fd(r), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        hdr, pay, log, depth = self.hdr, self.pay, self.log, self.depth
        unpack = IN_HEADER.unpack_from
        while not self._stop.is_set():
            n = lib.tfu_ring_take(r, buf, nent, -1)
            if n == 0:
                if lib.tfu_ring_prepare_sleep(r):
                    poller.poll(500)
                    lib.tfu_ring_wakeup_ack(r)
                continue
            for i in range(n):
                e = buf[i]
                h = hdr[e]
                _len, opcode, _unique, nodeid, _uid, _gid, pid, _x, _y = unpack(h, 0)
                if self.record:
                    log.append((opcode, e // depth, pid))
                if self.hold:
                    self.held.append(e)
                    continue
                (psz,) = struct.unpack_from("<I", h, HDR_PAYLOAD_SZ)
                err, reply = handle(opcode, nodeid, h[128:256], pay[e][:psz])
                n_out = len(reply)
                if n_out and not err:
                    pay[e][0:n_out] = reply
                check(lib.tfu_ring_commit(r, e, err, n_out))
            self.served += n
            lib.tfu_ring_flush(r)

    def stop_serving(self) -> None:
        self._stop.set()
        os.write(self._stop_w, b"x")
        if self.thread is not None:
            self.thread.join(10)
            assert not self.thread.is_alive(), "ring server thread hung"
            self.thread = None
        if self.exc is not None:
            raise self.exc

    def status(self) -> Any:
        st = ffi.new("struct tfu_ring_status *")
        check(lib.tfu_ring_status(self.r, st))
        return st

    def stats(self, qid: int) -> Any:
        s = ffi.new("struct tfu_queue_stats *")
        check(lib.tfu_ring_stats(self.r, qid, s))
        return s

    def shutdown(self) -> None:
        """Stop serving, stop + join the queue threads (forcing if needed), destroy."""
        try:
            if self.thread is not None:
                self.stop_serving()
        finally:
            if not self.joined:
                lib.tfu_ring_stop(self.r, 0)
                if lib.tfu_ring_join(self.r, 2000) != 0:
                    lib.tfu_ring_stop(self.r, 1)
                    assert lib.tfu_ring_join(self.r, 5000) == 0, "queue threads did not exit"
                self.joined = True
            lib.tfu_ring_destroy(self.r)
            os.close(self._stop_r)
            os.close(self._stop_w)


@contextlib.contextmanager
def served_mount(**kw: Any) -> Iterator[tuple[Mount, RingServer, DevFuseReader]]:
    m = Mount(max_write=kw.pop("max_write", 131072))
    srv: RingServer | None = None
    reader: DevFuseReader | None = None
    try:
        with m:
            if not m.kernel_offers_uring:
                _need(False, "kernel does not offer FUSE_OVER_IO_URING")
            srv = RingServer(m.fd, **kw)
            reader = DevFuseReader(m.fd)
            check(srv.start())
            yield m, srv, reader
    finally:
        # m.__exit__ already aborted + unmounted; now the entries are released
        try:
            if srv is not None:
                srv.shutdown()
        finally:
            if reader is not None:
                reader.stop()
            m.close()


def run_in_thread(fn: Callable[[], Any], timeout: float, cpu: int | None = None) -> Any:
    """Run fn in a fresh thread (optionally pinned); fail instead of hanging."""
    result: list[Any] = []

    def target() -> None:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            result.append(("ok", fn()))
        except BaseException as e:
            result.append(("err", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"client hung for {timeout} s")
    kind, value = result[0]
    if kind == "err":
        raise value
    return value


def thread_cpu_ticks(tids: list[int]) -> int:
    total = 0
    for tid in tids:
        f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])  # utime + stime
    return total


def ring_threads() -> dict[int, str]:
    out = {}
    for tid in task_ids():
        with contextlib.suppress(OSError):
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            if name.startswith("tfu-q"):
                out[tid] = name
    return out


# ---------------------------------------------------------------------------
# tests without a mount


def test_abi_version_and_layout() -> None:
    _need(_IMPORT_ERROR is None, f"extension not built: {_IMPORT_ERROR}")
    from trio_fuse_uring._ring_build import abi_version

    assert ffi.string(lib.tfu_ring_abi_version()).decode() == abi_version(), "stale build"
    assert ffi.sizeof("struct fuse_uring_req_header") == 288
    assert ffi.offsetof("struct fuse_uring_req_header", "op_in") == 128
    assert ffi.offsetof("struct fuse_uring_req_header", "ring_ent_in_out") == 256
    assert ffi.offsetof("struct fuse_uring_ent_in_out", "payload_sz") == 16
    assert ffi.sizeof("struct fuse_uring_cmd_req") == 24
    assert ffi.offsetof("struct fuse_uring_cmd_req", "qid") == 16
    assert lib.FUSE_IO_URING_CMD_COMMIT_AND_FETCH == 2


def test_create_rejects_bad_params() -> None:
    _need(_IMPORT_ERROR is None, f"extension not built: {_IMPORT_ERROR}")
    out = ffi.new("tfu_ring **")
    good = {"fuse_fd": 0, "nr_queues": 1, "depth": 1, "payload_size": 8192}
    for bad in ({"depth": 0}, {"nr_queues": 0}, {"payload_size": 4096}, {"fuse_fd": -1}):
        p = ffi.new("struct tfu_ring_params *", {**good, **bad})
        assert lib.tfu_ring_create(p, out) == -errno.EINVAL, bad


def test_create_fails_cleanly_in_thread_setup() -> None:
    """A setup error inside a queue thread (bad fd for the fixed-file table) is returned
    by tfu_ring_create, and everything is torn down again."""
    _need(_IMPORT_ERROR is None, f"extension not built: {_IMPORT_ERROR}")
    before = task_ids()
    fd = max(int(x) for x in os.listdir("/proc/self/fd")) + 200  # not open
    p = ffi.new(
        "struct tfu_ring_params *",
        {"fuse_fd": fd, "nr_queues": 2, "depth": 1, "payload_size": 8192},
    )
    out = ffi.new("tfu_ring **")
    # Repeated: a failed thread exits right after reporting, and its failure must be
    # seen however the creator's wake-up interleaves with that exit.
    for _ in range(20):
        assert lib.tfu_ring_create(p, out) == -errno.EBADF
        assert out[0] == ffi.NULL
    assert new_threads(before) == {}


def test_create_destroy_without_start_leaves_no_thread() -> None:
    """Create (threads pinned, buffers allocated, REGISTERs prepared) then tear down."""
    _need(_IMPORT_ERROR is None, f"extension not built: {_IMPORT_ERROR}")
    before = task_ids()
    fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        n = possible_cpus()
        p = ffi.new(
            "struct tfu_ring_params *",
            {"fuse_fd": fd, "nr_queues": n, "depth": 2, "payload_size": 131072},
        )
        out = ffi.new("tfu_ring **")
        check(lib.tfu_ring_create(p, out))
        r = out[0]
        names = sorted(ring_threads().values())
        assert names == sorted(f"tfu-q{c}" for c in online_cpus() if c < n)
        assert lib.tfu_ring_entry_count(r) == 2 * n
        hdr = lib.tfu_ring_header(r, 0)
        assert int(ffi.cast("uintptr_t", hdr)) % 64 == 0
        assert lib.tfu_ring_payload(r, 2 * n) == ffi.NULL
        check(lib.tfu_ring_stop(r, 0))
        assert lib.tfu_ring_join(r, 2000) == 0
        lib.tfu_ring_destroy(r)
    finally:
        os.close(fd)
    assert new_threads(before) == {}


# ---------------------------------------------------------------------------
# tests on a real mount


def _client_ops(mnt: str) -> tuple[int, bytes, bytes]:
    path = os.path.join(mnt, "hello")
    st = os.stat(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        a = os.pread(fd, 4096, 0)
        b = os.pread(fd, 8192, 123456)
    finally:
        os.close(fd)
    return st.st_size, a, b


def test_requests_arrive_on_the_client_cpu_qid(env: None) -> None:
    cpus = [c for c in online_cpus() if c < possible_cpus()]
    with served_mount(depth=2, ring_poll_us=50, trio_poll_us=50) as (m, srv, _reader):
        # thread naming and pinning
        threads = ring_threads()
        assert sorted(threads.values()) == sorted(f"tfu-q{c}" for c in cpus)
        for tid, name in threads.items():
            status = Path(f"/proc/self/task/{tid}/status").read_text()
            allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", status)
            assert allowed is not None and allowed.group(1) == name[len("tfu-q") :]
        assert lib.tfu_ring_error(srv.r) == 0

        for cpu in cpus:
            tid_box: list[int] = []

            def client(tid_box: list[int] = tid_box) -> tuple[int, bytes, bytes]:
                tid_box.append(threading.get_native_id())
                return _client_ops(m.mnt)

            size, a, b = run_in_thread(client, timeout=10, cpu=cpu)
            assert size == FILE_SIZE
            assert a == DATA[:4096]
            assert b == DATA[123456 : 123456 + 8192]
            mine = [(op, qid) for op, qid, pid in list(srv.log) if pid == tid_box[0]]
            ops = {op for op, _ in mine}
            assert {LOOKUP, OPEN, READ} <= ops, mine
            assert {qid for _, qid in mine} == {cpu}, mine
            assert srv.stats(cpu).requests > 0
            assert srv.stats(cpu).cpu == cpu

        # commit validation: entries not held by us are refused
        assert lib.tfu_ring_commit(srv.r, 0, 0, 0) == -errno.EINVAL
        assert lib.tfu_ring_commit(srv.r, srv.nent, 0, 0) == -errno.EINVAL

        # an idle mount burns no CPU, even with polling configured
        time.sleep(0.2)
        tids = list(threads)
        t0 = thread_cpu_ticks(tids)
        time.sleep(1.0)
        assert thread_cpu_ticks(tids) - t0 <= 2, "queue threads spin while idle"
        for q in range(srv.nr_queues):
            s = srv.stats(q)
            assert s.errors == 0 and s.last_error == 0
        assert not any(op in (LOOKUP, GETATTR, READ) for op in _reader.opcodes)


def test_single_thread_serving_two_qids(env: None) -> None:
    """qid_cpu maps every qid to one thread (what happens for offline CPUs)."""
    n = possible_cpus()
    cpus = [c for c in online_cpus() if c < n]
    _need(n >= 2, "needs 2 possible CPUs")
    tun = ffi.new("struct tfu_ring_tuning *")
    lib.tfu_ring_default_tuning(tun)
    qid_cpu = ffi.new("int32_t[]", [cpus[0]] * n)
    tun.qid_cpu = qid_cpu
    with served_mount(depth=2, tuning=tun) as (m, srv, _reader):
        assert list(ring_threads().values()) == [f"tfu-q{cpus[0]}"]
        for cpu in cpus:
            tid_box: list[int] = []

            def client(tid_box: list[int] = tid_box) -> tuple[int, bytes, bytes]:
                tid_box.append(threading.get_native_id())
                return _client_ops(m.mnt)

            size, a, _b = run_in_thread(client, timeout=10, cpu=cpu)
            assert size == FILE_SIZE and a == DATA[:4096]
            assert {q for _, q, pid in list(srv.log) if pid == tid_box[0]} == {cpu}


def test_grow_registers_entries_up_to_max_depth(env: None) -> None:
    """tfu_ring_grow: late REGISTERs on one qid, never shrinking, capped at max_depth;
    the new entries serve requests."""
    cpu = min(c for c in online_cpus() if c < possible_cpus())
    fd = -1
    with served_mount(depth=2, max_depth=6) as (m, srv, _reader):
        assert lib.tfu_ring_max_depth(srv.r) == 6
        assert srv.nent == 6 * srv.nr_queues
        assert srv.status().in_kernel == 2 * srv.nr_queues
        assert srv.stats(cpu).registered == 2
        assert lib.tfu_ring_grow(srv.r, cpu, 4) == 4
        assert lib.tfu_ring_grow(srv.r, cpu, 3) == 4  # never shrinks
        assert lib.tfu_ring_grow(srv.r, cpu, 100) == 6  # capped
        assert lib.tfu_ring_grow(srv.r, srv.nr_queues, 3) == -errno.EINVAL
        deadline = time.monotonic() + 5
        while srv.stats(cpu).registered < 6 or srv.status().in_kernel < 2 * srv.nr_queues + 4:
            assert time.monotonic() < deadline, (srv.stats(cpu).registered, srv.status().in_kernel)
            time.sleep(0.01)
        # hold every request: six O_DIRECT reads from the CPU take all six entries
        fd = os.open(os.path.join(m.mnt, "hello"), os.O_RDONLY | os.O_DIRECT)
        srv.hold = True
        for k in range(6):
            args = (fd, cpu, 4096 * k)
            threading.Thread(target=_pread_quietly, args=args, daemon=True).start()
        deadline = time.monotonic() + 5
        while len(srv.held) < 6:
            assert time.monotonic() < deadline, len(srv.held)
            time.sleep(0.01)
        assert {e // 6 for e in srv.held} == {cpu}
        assert srv.stats(cpu).errors == 0
    # Closed only now that the mount is aborted: its FLUSH would wait for ever on a
    # server that holds every request. (Its ENOTCONN still closes the fd.)
    with contextlib.suppress(OSError):
        os.close(fd)


def _pread_quietly(fd: int, cpu: int, off: int) -> None:
    os.sched_setaffinity(0, {cpu})
    buf = mmap.mmap(-1, 4096)  # page-aligned, for O_DIRECT
    with contextlib.suppress(OSError):  # the mount is aborted while we wait
        os.preadv(fd, [buf], off)


def test_register_failure_falls_back_to_devfuse(env: None) -> None:
    """Payload smaller than max_pages*4096: REGISTER -> -EINVAL, /dev/fuse keeps serving."""
    before = task_ids()
    with served_mount(depth=2, payload_size=65536) as (m, srv, reader):
        assert lib.tfu_ring_error(srv.r) == -errno.EINVAL
        st = srv.status()
        assert st.in_kernel == 0 and st.released == srv.nent
        size, a, _b = run_in_thread(lambda: _client_ops(m.mnt), timeout=10)
        assert size == FILE_SIZE and a == DATA[:4096]
        assert LOOKUP in reader.opcodes and READ in reader.opcodes
        assert srv.log == []
        assert sum(srv.stats(q).errors for q in range(srv.nr_queues)) == srv.nent
        # nothing is pending in the kernel: a plain stop is enough
        check(lib.tfu_ring_stop(srv.r, 0))
        assert lib.tfu_ring_join(srv.r, 10_000) == 0, _status(srv)  # a bound, not a timing
        srv.joined = True
    assert new_threads(before) == {}


def _status(srv: Any) -> str:
    st = srv.status()
    fields = ("in_kernel", "in_user", "released", "threads", "threads_alive", "conn_gone")
    return ", ".join(f"{k}={getattr(st, k)}" for k in fields)


def test_unmount_releases_entries_and_threads_exit(env: None) -> None:
    before = task_ids()
    with served_mount(depth=4, ring_poll_us=50, trio_poll_us=0) as (m, srv, reader):
        run_in_thread(lambda: _client_ops(m.mnt), timeout=10)
        deadline = time.monotonic() + 2  # RELEASE after close() is asynchronous
        while srv.status().in_kernel != srv.nent and time.monotonic() < deadline:
            time.sleep(0.01)
        st = srv.status()
        assert st.in_kernel == srv.nent and st.threads_alive == st.threads
        # a plain stop waits for the kernel to release the entries: not yet
        check(lib.tfu_ring_stop(srv.r, 0))
        assert lib.tfu_ring_join(srv.r, 200) == -errno.ETIMEDOUT
        m.umount(0)
        assert lib.tfu_ring_join(srv.r, 10_000) == 0, _status(srv)  # a bound, not a timing
        srv.joined = True
        st = srv.status()
        assert (st.in_kernel, st.in_user, st.released) == (0, 0, srv.nent)
        assert st.conn_gone == 1 and st.threads_alive == 0
        assert lib.tfu_ring_error(srv.r) == 0
        reader.thread.join(5)
        assert not reader.thread.is_alive(), "/dev/fuse reader did not see ENODEV"
    assert new_threads(before) == {}


def test_unmount_with_held_entries_and_force_stop(env: None) -> None:
    """Entries held by the server at unmount count as released; force stop always exits."""
    before = task_ids()
    with served_mount(depth=2) as (m, srv, _reader):
        srv.hold = True
        path = os.path.join(m.mnt, "hello")
        res: list[Any] = []

        def blocked_client() -> None:
            try:
                os.stat(path)
            except OSError as e:
                res.append(e.errno)

        t = threading.Thread(target=blocked_client, daemon=True)
        t.start()
        deadline = time.monotonic() + 5
        while not srv.held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.held, "request not delivered"
        assert srv.status().in_user == 1
        m.abort()
        t.join(5)
        assert not t.is_alive() and res, "client not failed by the abort"
        check(lib.tfu_ring_stop(srv.r, 0))
        assert lib.tfu_ring_join(srv.r, 10_000) == 0, _status(srv)  # a bound, not a timing
        srv.joined = True
        # committing after the threads are gone is harmless
        for e in srv.held:
            assert lib.tfu_ring_commit(srv.r, e, -errno.EIO, 0) == 0
    assert new_threads(before) == {}

    # force stop while mounted and entries are pending in the kernel
    with served_mount(depth=2) as (m, srv, _reader):
        check(lib.tfu_ring_stop(srv.r, 1))
        assert lib.tfu_ring_join(srv.r, 10_000) == 0, _status(srv)  # a bound, not a timing
        srv.joined = True
    assert new_threads(before) == {}


STRESS_CLIENT = r"""
import os, sys, time
cpu, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
os.sched_setaffinity(0, {cpu})
fd = os.open(path, os.O_RDONLY)
t0 = time.perf_counter()
for i in range(n):
    off = (i * 4096 * 7) % (1 << 20)
    b = os.pread(fd, 4096, off)
    if len(b) != 4096 or b[0] != (off * 7 + 3) & 0xFF:
        sys.exit("bad data at %d" % off)
os.close(fd)
print(n / (time.perf_counter() - t0))
"""


@pytest.mark.parametrize(
    ("ring_poll_us", "trio_poll_us"),
    [(0, 0), (50, 50), (50, 0), (0, 50)],
    ids=["nopoll", "poll50", "ringpoll", "triopoll"],
)
def test_stress_handoff(env: None, ring_poll_us: int, trio_poll_us: int) -> None:
    """200k 4 KiB O_DIRECT-style reads from 2 client processes (one per CPU), no hang."""
    total = int(os.environ.get("TFU_STRESS_READS", "200000"))
    cpus = [c for c in online_cpus() if c < possible_cpus()][:2]
    per = total // len(cpus) if len(cpus) > 1 else total
    clients = cpus if len(cpus) > 1 else cpus * 2
    with served_mount(
        depth=4, ring_poll_us=ring_poll_us, trio_poll_us=trio_poll_us, record=False
    ) as (
        m,
        srv,
        _reader,
    ):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    STRESS_CLIENT,
                    str(c),
                    os.path.join(m.mnt, "hello"),
                    str(per),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c in clients
        ]
        # A hang is no progress, not slowness: a loaded one-CPU machine may take minutes.
        served, since = srv.served, time.monotonic()
        while any(p.poll() is None for p in procs):
            time.sleep(0.2)
            if srv.served != served:
                served, since = srv.served, time.monotonic()
            elif time.monotonic() - since > 30:
                for p in procs:
                    p.kill()
                for p in procs:
                    p.communicate()
                pytest.fail(
                    f"hang: nothing served for 30 s after {served} requests, "
                    f"status={_status_dict(srv)}"
                )
        outs = [p.communicate() for p in procs]
        for p, (_out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        reqs = sum(srv.stats(q).requests for q in range(srv.nr_queues))
        assert reqs >= total
        assert lib.tfu_ring_error(srv.r) == 0
        for q in range(srv.nr_queues):
            assert srv.stats(q).errors == 0


def _status_dict(srv: RingServer) -> dict[str, int]:
    st = srv.status()
    return {k: getattr(st, k) for k in dir(st)}
