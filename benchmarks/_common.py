"""What the benchmark scripts share: the daemons under test, the data they serve, the
clients and fio runs that load them, and /proc readings.

Imported by ``run.py`` (the interleaved comparison) and ``_profile.py`` (where the time per
request goes); it imports neither, so each script is loaded once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
CLIENT = HERE / "_client.py"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- /proc helpers ----------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of the whole process (all its threads, dead ones too), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_mem_mib(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def fuse_mounts_under(prefix: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mnt = parts[4].replace("\\040", " ")
            if mnt.startswith(prefix):
                found.append(mnt)
    return found


def is_mounted(path: str) -> bool:
    return path in fuse_mounts_under(path)


def umount(path: str, lazy: bool = False) -> bool:
    cmd = ["umount", "-l", path] if lazy else ["umount", path]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ---- systems ----------------------------------------------------------------------------


@dataclass
class System:
    name: str
    label: str
    argv: list[str]  # with {src} and {mnt}
    stop_with_signal: bool  # SIGTERM unmounts it cleanly; else `umount` the mountpoint
    has_source: bool = True
    env: dict[str, str] | None = None  # added to the daemon's environment


# ---- one mounted daemon -----------------------------------------------------------------


@dataclass
class Daemon:
    system: System
    src: str
    mnt: str
    logdir: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_stats: dict[str, Any] | None = None
    out_path: Path | None = None
    err_path: Path | None = None

    def start(self, timeout: float = 30.0) -> None:
        argv = [a.format(src=self.src, mnt=self.mnt) for a in self.system.argv]
        stem = f"{self.system.name}-{Path(self.mnt).name}"
        self.out_path = self.logdir / f"{stem}.out"
        self.err_path = self.logdir / f"{stem}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                start_new_session=True, env={**os.environ, **(self.system.env or {})},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.system.name} exited ({self.proc.returncode}) before "
                                   f"mounting: {self.stderr_tail()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.system.name} did not mount in {timeout}s: {self.stderr_tail()}"
                )
            time.sleep(0.05)
        os.stat(self.mnt)  # the first request (and INIT) is through

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr_tail(self, n: int = 5) -> str:
        if self.err_path is None or not self.err_path.exists():
            return ""
        return " | ".join(self.err_path.read_text(errors="replace").strip().splitlines()[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        """Clean stop (SIGTERM or umount), then force: umount -l, SIGKILL. Never raises."""
        p = self.proc
        try:
            if p is not None and p.poll() is None:
                if self.system.stop_with_signal:
                    p.send_signal(signal.SIGTERM)
                elif not umount(self.mnt):
                    umount(self.mnt, lazy=True)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    log(f"{self.system.name} did not exit in {timeout}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
        finally:
            if is_mounted(self.mnt):
                umount(self.mnt, lazy=True)
        if self.out_path is not None and self.out_path.exists():
            for line in reversed(self.out_path.read_text(errors="replace").splitlines()):
                with contextlib.suppress(ValueError):
                    self.exit_stats = json.loads(line)
                    break


# ---- data and workloads -------------------------------------------------------------------


def prepare_data(root: str, file_mib: int, nr_entries: int) -> None:
    """Files the workloads need, created directly in the backing directory."""
    block = os.urandom(MiB)
    for name in ("fio-read.dat", "fio-write.dat"):
        with open(f"{root}/{name}", "wb") as f:
            for _ in range(file_mib):
                f.write(block)
    os.mkdir(f"{root}/dir10k")
    for i in range(nr_entries):
        os.close(os.open(f"{root}/dir10k/entry-{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkdir(f"{root}/cwu")
    with open(f"{root}/statme", "wb") as f:
        f.write(b"x" * 4096)


def run_client(kind: str, path: str, seconds: float, timeout: float) -> dict[str, Any]:
    cp = subprocess.run(
        [PY, str(CLIENT), kind, path, str(seconds)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if cp.returncode != 0:
        raise RuntimeError(f"client {kind} failed: {cp.stderr.strip()[-500:]}")
    return json.loads(cp.stdout.strip().splitlines()[-1])


def run_fio(path: str, rw: str, bs: str, jobs: int, seconds: float, ramp: float,
            file_mib: int, timeout: float) -> dict[str, Any]:  # fmt: skip
    cmd = [
        "fio", "--name=bench", f"--filename={path}", f"--rw={rw}", f"--bs={bs}",
        "--direct=1", "--ioengine=psync", "--iodepth=1", f"--numjobs={jobs}",
        "--group_reporting", "--time_based", f"--runtime={seconds}s", f"--ramp_time={ramp}s",
        f"--size={file_mib}M", "--fallocate=none", "--invalidate=0", "--randrepeat=0",
        "--norandommap", "--output-format=json",
    ]  # fmt: skip
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        raise RuntimeError(f"fio {rw} failed: {(cp.stderr or cp.stdout).strip()[-500:]}")
    doc = json.loads(cp.stdout[cp.stdout.index("{") :])
    job = doc["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    pct = side.get("clat_ns", {}).get("percentile", {})
    return {
        "iops": side["iops"],
        "mb_s": side["bw_bytes"] / 1e6,
        "p50_us": pct.get("50.000000", 0) / 1000,
        "p99_us": pct.get("99.000000", 0) / 1000,
        "ops": side["total_ios"],
    }


@dataclass
class Plan:
    rounds: int
    client_s: float
    fio_s: float
    fio_ramp: float
    idle_s: float
    file_mib: int
    nr_entries: int = 10_000
