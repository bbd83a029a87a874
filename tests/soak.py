"""Soak: hold examples/memfs under mixed load for a fixed time and check nothing was lost.

    python tests/soak.py --seconds 60 --transport uring
    python tests/soak.py --seconds 60 --transport devfuse --direct 1

What runs, all against one memfs daemon started as a subprocess
(``python examples/memfs.py MNT --transport T``):

- **fio**, 2 jobs, random writes of 4-128 KiB blocks over a ``--fio-size`` file each,
  every block carrying a crc32c header; ``verify_backlog`` makes fio read back and check
  written blocks *while* it writes (random reads), and ``do_verify`` checks whatever is
  left at the end. Any mismatch or I/O error fails fio.
- **16 metadata client threads** in a separate client process (this script with
  ``--client``), each in its own directory, looping over create + write, setxattr,
  stat, rename, readdir, getxattr/listxattr, read-back, unlink. Every result is checked
  (sizes, contents, names, xattr values); every exception or mismatch is an error.
- **The daemon's RSS** (``VmRSS`` in /proc/PID/status) is sampled every second. Once the
  data set is written (fio's files have their full size, plus a settling delay), the
  baseline is taken; RSS may not grow more than ``--rss-growth-mib`` above it.

At the end the daemon is stopped with SIGTERM; it must exit 0 without logging an error,
with zero handler failures, and leave no mount. A JSON summary goes to stdout; the exit
status is 0 only if there was no error, verification failure, RSS growth or leftover.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MEMFS = REPO / "examples" / "memfs.py"
FIO_JOBS = 2
_LOCK = threading.Lock()


# ---- the metadata client (runs in its own process) -------------------------------------------


def _client_thread(
    root: Path, idx: int, deadline: float, ops: collections.Counter[str], errors: list[str]
) -> None:
    d = root / f"t{idx:02d}"
    d.mkdir()
    rng = random.Random(idx)
    live: collections.deque[tuple[str, bytes]] = collections.deque()
    k = 0
    local: collections.Counter[str] = collections.Counter()

    def fail(msg: str) -> None:
        local["errors"] += 1
        if len(errors) < 50:
            errors.append(f"t{idx}: {msg}")

    while time.monotonic() < deadline:
        k += 1
        data = rng.randbytes(rng.randrange(0, 16384))
        tmp, name = d / f"new{k}", f"f{k}"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            local["create"] += 1
            os.setxattr(tmp, b"user.crc", b"%08x" % zlib.crc32(data))
            local["setxattr"] += 1
            st = os.stat(tmp)
            local["stat"] += 1
            if st.st_size != len(data):
                fail(f"{tmp}: size {st.st_size} != {len(data)}")
            os.rename(tmp, d / name)
            local["rename"] += 1
            live.append((name, data))
            names = set(os.listdir(d))
            local["readdir"] += 1
            expected = {n for n, _ in live}
            if names != expected:
                fail(f"readdir {d}: {sorted(names ^ expected)[:5]} differ")
            # Check an older file: its content, xattr and name must have survived.
            old, old_data = live[rng.randrange(len(live))]
            if os.getxattr(d / old, b"user.crc") != b"%08x" % zlib.crc32(old_data):
                fail(f"{old}: xattr mismatch")
            local["getxattr"] += 1
            if os.listxattr(d / old) != ["user.crc"]:
                fail(f"{old}: listxattr {os.listxattr(d / old)}")
            local["listxattr"] += 1
            with open(d / old, "rb") as f:
                if f.read() != old_data:
                    fail(f"{old}: content mismatch")
            local["read"] += 1
            while len(live) > 8:
                gone, _ = live.popleft()
                os.unlink(d / gone)
                local["unlink"] += 1
        except OSError as exc:
            fail(f"{type(exc).__name__}: {exc}")
    with _LOCK:
        ops.update(local)


def run_client(root: Path, threads: int, seconds: float) -> int:
    ops: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(target=_client_thread, args=(root, i, deadline, ops, errors))
        for i in range(threads)
    ]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - t0
    n_errors = ops.pop("errors", 0)
    total = sum(ops.values())
    print(
        json.dumps(
            {
                "threads": threads,
                "seconds": round(elapsed, 2),
                "ops": total,
                "ops_per_s": round(total / elapsed),
                "per_op": dict(sorted(ops.items())),
                "errors": n_errors,
                "error_samples": errors[:10],
            }
        ),
        flush=True,
    )
    return 1 if n_errors else 0


# ---- the orchestrator --------------------------------------------------------------------------


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mp == path:
                return True
    return False


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


def soak(args: argparse.Namespace) -> dict[str, Any]:
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="tfu-soak-"))
    mnt = work / "mnt"
    mnt.mkdir()
    daemon_out = open(work / "daemon.out", "w+")  # noqa: SIM115 (closed in finally)
    daemon_err = open(work / "daemon.err", "w+")  # noqa: SIM115
    daemon = subprocess.Popen(
        [sys.executable, str(MEMFS), str(mnt), "--transport", args.transport],
        stdout=daemon_out, stderr=daemon_err,
    )  # fmt: skip
    fio = client = None
    summary: dict[str, Any] = {"transport": args.transport, "seconds": args.seconds}
    try:
        t_end = time.monotonic() + 20
        while not _mounted(str(mnt)):
            if daemon.poll() is not None or time.monotonic() > t_end:
                raise RuntimeError(f"memfs did not mount: {(work / 'daemon.err').read_text()}")
            time.sleep(0.02)
        (mnt / "fio").mkdir()
        (mnt / "meta").mkdir()
        fio_json = work / "fio.json"
        fio_cmd = [
            "fio", "--name=soak", f"--directory={mnt / 'fio'}", f"--numjobs={FIO_JOBS}",
            f"--size={args.fio_size}", "--ioengine=psync", "--rw=randwrite",
            "--bssplit=4k/50:64k/30:128k/20", "--verify=crc32c", "--verify_backlog=256",
            "--do_verify=1", "--verify_fatal=1", f"--direct={args.direct}", "--time_based",
            f"--runtime={args.seconds}", "--output-format=json", f"--output={fio_json}",
        ]  # fmt: skip
        fio = subprocess.Popen(fio_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", str(mnt / "meta"),
             "--threads", str(args.threads), "--seconds", str(args.seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

        # Sample RSS each second until both workloads ended.
        t0 = time.monotonic()
        grace = t0 + args.seconds + 120
        samples: list[tuple[float, int]] = []
        written_at: float | None = None
        baseline: tuple[float, int] | None = None
        fio_files = [mnt / "fio" / f"soak.{j}.0" for j in range(FIO_JOBS)]
        while fio.poll() is None or client.poll() is None:
            if time.monotonic() > grace:
                failures.append("the workload did not finish in time (hang?)")
                break
            now = time.monotonic() - t0
            rss = _rss_kib(daemon.pid)
            if rss is None:
                failures.append("the daemon died during the run")
                break
            samples.append((round(now, 1), rss))
            if written_at is None:
                try:
                    # Allocated, not just sized: fio may set the size before filling.
                    if all(f.stat().st_blocks * 512 >= args.fio_size for f in fio_files):
                        written_at = now
                except OSError:
                    pass
            elif baseline is None and now >= max(written_at + args.settle, args.seconds * 0.15):
                baseline = (round(now, 1), rss)
            time.sleep(1.0)
        for p in (fio, client):
            if p.poll() is None:
                p.kill()
        _, fio_err = fio.communicate(timeout=30)
        client_out, client_err = client.communicate(timeout=30)

        # fio: exit status, per-job errors, bytes written and verified.
        fio_summary: dict[str, Any] = {"exit": fio.returncode}
        if fio.returncode != 0:
            failures.append(f"fio exited {fio.returncode}: {fio_err.decode()[-500:]}")
        try:
            report = json.loads(fio_json.read_text())
        except (OSError, ValueError) as exc:
            failures.append(f"no fio report: {exc}")
        else:
            jobs = report["jobs"]
            written = sum(j["write"]["io_bytes"] for j in jobs)
            verified = sum(j["read"]["io_bytes"] for j in jobs)
            runtime_s = max(j["job_runtime"] for j in jobs) / 1000 or 1
            fio_summary.update(
                {
                    "jobs": len(jobs),
                    "job_errors": [j["error"] for j in jobs],
                    "bytes_written": written,
                    "bytes_verified": verified,
                    "write_iops": round(sum(j["write"]["iops"] for j in jobs)),
                    "write_MiB_s": round(written / runtime_s / 2**20, 1),
                    "verify_MiB_s": round(verified / runtime_s / 2**20, 1),
                }
            )
            if any(j["error"] for j in jobs):
                failures.append(f"fio job errors: {[j['error'] for j in jobs]}")
            if verified == 0:
                failures.append("fio verified nothing")
        summary["fio"] = fio_summary

        # The metadata clients.
        try:
            meta = json.loads(client_out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            meta = {"errors": -1, "stderr": client_err.decode()[-500:]}
        summary["meta"] = meta
        if client.returncode != 0 or meta.get("errors"):
            failures.append(f"metadata clients failed: {meta.get('error_samples') or meta}")

        # RSS: flat once the data set is written.
        rss: dict[str, Any] = {"samples_kib": [s[1] for s in samples]}
        if baseline is None:
            failures.append("the data set was never fully written (no RSS baseline)")
        else:
            after = [kib for t, kib in samples if t >= baseline[0]]
            growth = max(after) - baseline[1]
            rss.update(
                {
                    "data_set_written_at_s": round(written_at or 0, 1),
                    "baseline_at_s": baseline[0],
                    "baseline_kib": baseline[1],
                    "max_after_kib": max(after),
                    "final_kib": after[-1],
                    "growth_kib": growth,
                    "limit_kib": args.rss_growth_mib * 1024,
                }
            )
            if growth > args.rss_growth_mib * 1024:
                failures.append(f"daemon RSS grew {growth} KiB after the data set was written")
        summary["rss"] = rss
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        for p in (fio, client):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            failures.append("the daemon did not exit within 30 s of SIGTERM")
            daemon.kill()
            daemon.wait()
        daemon_out.seek(0)
        daemon_err.seek(0)
        out, err = daemon_out.read(), daemon_err.read()
        daemon_out.close()
        daemon_err.close()
        if daemon.returncode != 0:
            failures.append(f"the daemon exited {daemon.returncode}: {err[-1000:]}")
        if f"over {args.transport}" not in err:
            failures.append(f"the daemon did not serve over {args.transport}: {err[:300]}")
        bad_lines = [ln for ln in err.splitlines() if " ERROR" in ln or "Traceback" in ln]
        if bad_lines:
            failures.append(f"the daemon logged errors: {bad_lines[:5]}")
        try:
            stats = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            stats = {}
            failures.append("the daemon printed no stats")
        summary["daemon"] = {
            k: stats.get(k) for k in ("requests", "errors", "handler_failures", "interrupted")
        }
        if stats.get("handler_failures"):
            failures.append(f"{stats['handler_failures']} handler failures in the daemon")
        if _mounted(str(mnt)):
            failures.append("the mount was left behind")
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    meta = summary.get("meta", {})
    if isinstance(meta.get("ops"), int):
        summary["total_meta_ops_per_s"] = meta.get("ops_per_s")
    summary["failures"] = failures
    summary["ok"] = not failures
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--transport", choices=["uring", "devfuse"], default="uring")
    p.add_argument("--threads", type=int, default=16, help="metadata client threads")
    p.add_argument("--fio-size", type=_parse_size, default=64 << 20, help="file per fio job")
    p.add_argument("--direct", type=int, choices=[0, 1], default=0, help="fio O_DIRECT")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds after the data set is written before the RSS baseline")  # fmt: skip
    p.add_argument("--rss-growth-mib", type=float, default=32,
                   help="allowed daemon RSS growth after the baseline")  # fmt: skip
    p.add_argument("--client", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        return run_client(Path(args.client), args.threads, args.seconds)
    if shutil.which("fio") is None:
        print("soak: fio is not installed", file=sys.stderr)
        return 2
    args.seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    summary = soak(args)
    print(json.dumps(summary, indent=None if not sys.stdout.isatty() else 2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
