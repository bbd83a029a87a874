"""Interleaved benchmark: pyfuse3's passthroughfs.py on native pyfuse3 vs on the
pyfuse3 compatibility layer (over io-uring) vs our own passthrough example.

    .venv/bin/python benchmarks/pyfuse3_compat.py [--rounds 5] [--pyfuse3-python PY]

Systems (each mounts a fresh mountpoint over the same source directory, every round,
in a rotated order, so a noisy machine hits all alike; medians over rounds):

    pyfuse3  pyfuse3 3.5.0's examples/passthroughfs.py, unmodified, on native pyfuse3
             (libfuse, /dev/fuse), run by --pyfuse3-python (a Python with pyfuse3
             installed: apt-get install -y libfuse3-dev pkg-config; pip install pyfuse3)
    shim     the same file, unmodified, on trio_fuse_uring.compat.pyfuse3 over io-uring
             (python -m trio_fuse_uring.compat.pyfuse3 --transport uring)
    native   examples/passthrough.py --transport uring --no-backing, timeouts 0 like
             passthroughfs.py: reads and writes reach Python handlers, as in passthroughfs.py
             (backing files and kernel passthrough would bypass the daemon)

Workloads: ``stat`` of one file (benchmarks/_client.py) and fio 4 KiB random reads,
QD1, one job, O_DIRECT. pyfuse3's sdist comes from the package index into the
git-ignored .cache/ (tests/pyfuse3_sdist.py). Writes benchmarks/results/pyfuse3-compat.json
and prints the table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (  # type: ignore[import-not-found]
    HERE,
    PY,
    ROOT,
    Daemon,
    System,
    log,
    prepare_data,
    run_client,
    run_fio,
    umount,
)

sys.path.insert(0, str(ROOT / "tests"))
from pyfuse3_sdist import sdist_dir  # type: ignore[import-not-found]

WORKLOADS = {"stat": "stat ops/s", "randread1": "4 KiB randread QD1 IOPS"}
# Goals: the shim at least 4x native pyfuse3, and within 15 % of our native API.
GOAL_VS_PYFUSE3 = 4.0
GOAL_VS_NATIVE = 0.85


def systems(example: Path, pyfuse3_python: str) -> list[System]:
    return [
        System("pyfuse3", "pyfuse3 3.5.0 (libfuse)", [pyfuse3_python, str(example), "{src}", "{mnt}"], False),
        System("shim", "passthroughfs.py on the shim, uring",
               [PY, "-m", "trio_fuse_uring.compat.pyfuse3", "--transport", "uring", str(example),
                "{src}", "{mnt}"], False),
        System("native", "examples/passthrough.py, uring",
               [PY, str(ROOT / "examples/passthrough.py"), "{src}", "{mnt}", "--transport",
                "uring", "--entry-timeout", "0", "--attr-timeout", "0", "--no-backing"], True),
    ]  # fmt: skip


def measure(key: str, mnt: str, seconds: float, file_mib: int) -> float:
    if key == "stat":
        return float(run_client("stat", f"{mnt}/statme", seconds, 60 + 3 * seconds)["ops_s"])
    r = run_fio(
        f"{mnt}/fio-read.dat", "randread", "4k", 1, seconds, 0.5, file_mib, 120 + 3 * seconds
    )
    return float(r["iops"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="per workload and round")
    ap.add_argument("--file-mib", type=int, default=64)
    ap.add_argument("--pyfuse3-python", default=str(HERE / "results/pyfuse3-venv/bin/python"),
                    help="a Python with native pyfuse3 installed")  # fmt: skip
    args = ap.parse_args()
    if shutil.which("fio") is None:
        print("fio is missing: apt-get install -y fio", file=sys.stderr)
        return 2
    root, why = sdist_dir()
    if root is None:
        print(why, file=sys.stderr)
        return 2
    example = root / "examples" / "passthroughfs.py"
    plan = systems(example, args.pyfuse3_python)
    values: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in WORKLOADS} for s in plan}
    with tempfile.TemporaryDirectory(prefix="tfu-bench-pyfuse3-") as work:
        # The backing directory is a tmpfs, as in benchmarks/run.py: the page cache
        # alone (passthroughfs.py passes O_DIRECT on to it, which tmpfs accepts).
        src = f"{work}/src"
        Path(src).mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1G", "tfu-bench", src], check=True)
        try:
            run_rounds(plan, args, src, Path(work), values)
        finally:
            umount(src)
    return report(plan, args, values)


def run_rounds(
    plan: list[System], args: argparse.Namespace, src: str, work: Path,
    values: dict[str, dict[str, list[float]]],
) -> None:  # fmt: skip
    prepare_data(src, args.file_mib, 10)
    logdir = work / "logs"
    logdir.mkdir()
    for rnd in range(args.rounds):
        order = plan[rnd % len(plan) :] + plan[: rnd % len(plan)]
        log(f"round {rnd + 1}/{args.rounds}: {[s.name for s in order]}")
        for s in order:
            mnt = f"{work}/mnt-{s.name}-{rnd}"
            Path(mnt).mkdir()
            d = Daemon(s, src, mnt, logdir)
            try:
                d.start()
                for key in WORKLOADS:
                    v = measure(key, mnt, args.seconds, args.file_mib)
                    values[s.name][key].append(v)
                    log(f"  {s.name:8s} {key:10s} {v:10.0f}")
            finally:
                d.stop()


def report(
    plan: list[System], args: argparse.Namespace, values: dict[str, dict[str, list[float]]]
) -> int:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    med = {n: {k: statistics.median(v) for k, v in w.items()} for n, w in values.items()}
    doc: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "rounds": args.rounds,
        "seconds": args.seconds,
        "values": values,
        "medians": med,
        "ratios": {
            k: {
                "shim/pyfuse3": med["shim"][k] / med["pyfuse3"][k],
                "shim/native": med["shim"][k] / med["native"][k],
            }
            for k in WORKLOADS
        },
    }
    (out / "pyfuse3-compat.json").write_text(json.dumps(doc, indent=2))
    print(f"\nMedians of {args.rounds} interleaved rounds ({doc['machine']}):\n")
    print("| workload | pyfuse3 | shim (uring) | native (uring) | shim / pyfuse3 | shim / native |")
    print("|---|---|---|---|---|---|")
    for k, title in WORKLOADS.items():
        r = doc["ratios"][k]
        print(f"| {title} | {med['pyfuse3'][k]:.0f} | {med['shim'][k]:.0f} | {med['native'][k]:.0f} "
              f"| {r['shim/pyfuse3']:.2f}x (goal >= {GOAL_VS_PYFUSE3}x) "
              f"| {r['shim/native']:.2f} (goal >= {GOAL_VS_NATIVE}) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
