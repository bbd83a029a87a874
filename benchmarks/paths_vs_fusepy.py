"""The path layer and the fusepy shim, measured side by side in one interleaved run.

    python benchmarks/paths_vs_fusepy.py --mfusepy-examples DIR [--rounds 3] [--out DIR]

Six passthrough filesystems of directories in one tmpfs, all with entry and attribute
timeouts 0, over io-uring where it is ours:

    mfusepy    mfusepy's own examples/loopback.py on mfusepy (libfuse 3, via ctypes)
    shim       the same unmodified loopback.py on trio_fuse_uring.compat.fusepy (io-uring)
    mfusepy-s  mfusepy's loopback.py with nothreads=True (libfuse's single thread, -s)
    shim-s     the same on the shim (handlers in the serving thread)
    paths      examples/loopback_paths.py (the async path API, io-uring)
    inodes     examples/passthrough.py --no-backing (the inode API, io-uring; without
               kernel backing files, which the path layer does not offer, every read
               and write reaches the daemon in both)

mfusepy's examples are not in its sdist: DIR is the ``examples/`` directory of a
snapshot of https://github.com/mxmlnkn/mfusepy. mfusepy itself is downloaded at run time
(``pip download mfusepy==3.1.1 --no-deps --no-binary :all:``) into
``benchmarks/results/cache/`` (git-ignored), and only its ``mfusepy.py`` is used.
``_fusepy_loopback.py`` starts the example's ``Loopback`` class with the timeouts
set to 0 (the example's own command line cannot take options).

Each round mounts all four, then runs every workload on every system, the order of the
systems rotating per round and per workload; medians over rounds, ratios of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HERE, PY, ROOT, Daemon, System, log, prepare_data, run_client, run_fio

MFUSEPY_VERSION = "3.1.1"
LOOPBACK = str(HERE / "_fusepy_loopback.py")
WORKLOADS = ["stat", "randread1", "cwu", "seqread", "readdir"]
# (better, worse, minimum ratio better/worse, workloads)
TARGETS = [
    ("shim", "mfusepy", 2.0, ["stat", "randread1"]),
    ("shim-s", "mfusepy-s", 2.0, ["stat", "randread1"]),
    ("paths", "inodes", 0.8, WORKLOADS),
]


def fetch_mfusepy(cache: Path) -> Path:
    """A directory holding mfusepy.py from the published sdist."""
    target = cache / f"mfusepy-{MFUSEPY_VERSION}"
    if (target / "mfusepy.py").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [PY, "-m", "pip", "download", "-q", f"mfusepy=={MFUSEPY_VERSION}", "--no-deps",
         "--no-binary", ":all:", "-d", str(cache)],
        check=True,
    )  # fmt: skip
    with tarfile.open(cache / f"mfusepy-{MFUSEPY_VERSION}.tar.gz") as tar:
        member = tar.getmember(f"mfusepy-{MFUSEPY_VERSION}/mfusepy.py")
        target.mkdir(exist_ok=True)
        with tar.extractfile(member) as src, open(target / "mfusepy.py", "wb") as dst:  # type: ignore[union-attr]
            shutil.copyfileobj(src, dst)
    return target


def systems(examples: str, mfusepy_dir: Path) -> list[System]:
    timeouts0 = "entry_timeout=0,attr_timeout=0"
    return [
        System("mfusepy", "mfusepy loopback.py (libfuse3)",
               [PY, LOOPBACK, examples, "{src}", "{mnt}"], stop_with_signal=False,
               env={"PYTHONPATH": str(mfusepy_dir)}),
        System("shim", "same loopback.py on compat.fusepy (uring)",
               [PY, "-m", "trio_fuse_uring.compat.fusepy", "--transport", "uring", LOOPBACK,
                examples, "{src}", "{mnt}"], stop_with_signal=False,
               env={"PYTHONPATH": str(ROOT)}),
        System("mfusepy-s", "mfusepy loopback.py, nothreads (libfuse3 -s)",
               [PY, LOOPBACK, examples, "{src}", "{mnt}", "nothreads"], stop_with_signal=False,
               env={"PYTHONPATH": str(mfusepy_dir)}),
        System("shim-s", "same, nothreads, on compat.fusepy (uring)",
               [PY, "-m", "trio_fuse_uring.compat.fusepy", "--transport", "uring", LOOPBACK,
                examples, "{src}", "{mnt}", "nothreads"], stop_with_signal=False,
               env={"PYTHONPATH": str(ROOT)}),
        System("paths", "examples/loopback_paths.py (uring)",
               [PY, str(ROOT / "examples" / "loopback_paths.py"), "{src}", "{mnt}",
                "--transport", "uring", "-o", timeouts0], stop_with_signal=False),
        System("inodes", "examples/passthrough.py --no-backing (uring)",
               [PY, str(ROOT / "examples" / "passthrough.py"), "{src}", "{mnt}",
                "--transport", "uring", "--entry-timeout", "0", "--attr-timeout", "0",
                "--no-backing"],
               stop_with_signal=False),
    ]  # fmt: skip


def measure(workload: str, mnt: str, seconds: float, file_mib: int) -> float:
    """ops/s (stat, cwu, readdir entries) or IOPS (fio)."""
    timeout = 60 + 4 * seconds
    if workload == "stat":
        return float(run_client("stat", f"{mnt}/statme", seconds, timeout)["ops_s"])
    if workload == "cwu":
        return float(run_client("cwu", f"{mnt}/cwu", seconds, timeout)["ops_s"])
    if workload == "readdir":
        return float(run_client("readdir", f"{mnt}/dir10k", seconds, timeout)["ops_s"])
    bs = "4k" if workload == "randread1" else "1M"
    rw = "randread" if workload == "randread1" else "read"
    return float(run_fio(f"{mnt}/fio-read.dat", rw, bs, 1, seconds, 1, file_mib, timeout)["iops"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mfusepy-examples", required=True, help="mfusepy's examples/ directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--file-mib", type=int, default=64)
    ap.add_argument("--entries", type=int, default=1000, help="files in the readdir directory")
    ap.add_argument("--out", default=str(HERE / "results" / "paths"))
    args = ap.parse_args(argv)
    if not (Path(args.mfusepy_examples) / "loopback.py").exists():
        ap.error(f"no loopback.py in {args.mfusepy_examples}")
    out = Path(args.out)
    logdir = out / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    mfusepy_dir = fetch_mfusepy(HERE / "results" / "cache")
    systs = systems(os.path.abspath(args.mfusepy_examples), mfusepy_dir)
    results: dict[str, dict[str, list[float]]] = {s.name: {w: [] for w in WORKLOADS} for s in systs}
    work = Path(tempfile.mkdtemp(prefix="tfu-paths-bench-", dir="/dev/shm"))
    try:
        for rnd in range(args.rounds):
            daemons = []
            for s in systs:
                src, mnt = work / f"{s.name}-src-{rnd}", work / f"{s.name}-mnt-{rnd}"
                src.mkdir()
                mnt.mkdir()
                prepare_data(str(src), args.file_mib, args.entries)
                d = Daemon(s, str(src), str(mnt), logdir)
                d.start()
                daemons.append(d)
            try:
                time.sleep(2)
                for wi, w in enumerate(WORKLOADS):
                    shift = (rnd + wi) % len(daemons)
                    for d in daemons[shift:] + daemons[:shift]:
                        v = measure(w, d.mnt, args.seconds, args.file_mib)
                        results[d.system.name][w].append(v)
                        log(f"round {rnd + 1} {w:9s} {d.system.name:8s} {v:12.1f}")
            finally:
                for d in daemons:
                    d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {s: {w: statistics.median(v) for w, v in ws.items()} for s, ws in results.items()}
    checks = []
    for better, worse, need, wls in TARGETS:
        for w in wls:
            ratio = med[better][w] / med[worse][w]
            checks.append({"workload": w, "ratio": f"{better}/{worse}", "value": ratio,
                           "target": need, "met": ratio >= need})  # fmt: skip
    doc: dict[str, Any] = {
        "rounds": args.rounds, "seconds": args.seconds, "medians": med, "runs": results,
        "checks": checks, "kernel": os.uname().release, "cpus": os.cpu_count(),
        "systems": {s.name: s.label for s in systs}, "mfusepy": MFUSEPY_VERSION,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    pairs = [(b, w) for b, w, _, _ in TARGETS]
    lines = ["| workload | " + " | ".join(s.name for s in systs) + " | "
             + " | ".join(f"{b}/{w}" for b, w in pairs) + " |",
             "|---|" + "---|" * (len(systs) + len(pairs))]  # fmt: skip
    for wl in WORKLOADS:
        cells = [f"{med[s.name][wl]:,.0f}" for s in systs]
        ratios = [f"{med[b][wl] / med[w][wl]:.2f}x" for b, w in pairs]
        lines.append(f"| {wl} | " + " | ".join(cells + ratios) + " |")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print(table)
    for c in checks:
        print(f"{c['ratio']} {c['workload']}: {c['value']:.2f} (target {c['target']}) "
              f"{'met' if c['met'] else 'MISSED'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
