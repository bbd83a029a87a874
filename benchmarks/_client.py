"""Benchmark clients, each run in its own process by benchmarks/run.py.

    python benchmarks/_client.py stat PATH SECONDS
    python benchmarks/_client.py cwu DIR SECONDS        # create + 4 KiB write + unlink
    python benchmarks/_client.py readdir DIR SECONDS    # full os.scandir listings

Prints one JSON line: ops, elapsed seconds, ops/s and (per-op workloads) latency
percentiles in microseconds from time.perf_counter_ns around each operation. The
client is not pinned to a CPU: the scheduler places it, as it places fio.
"""

from __future__ import annotations

import json
import os
import sys
import time
from array import array


def _percentiles(lat: array) -> dict[str, float]:  # type: ignore[type-arg]
    if not lat:
        return {}
    s = sorted(lat)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(p * n))] / 1000.0

    return {"p50_us": pct(0.50), "p99_us": pct(0.99), "max_us": s[-1] / 1000.0}


def bench_stat(path: str, seconds: float) -> dict[str, float]:
    lat = array("q")
    now = time.perf_counter_ns
    stat = os.stat
    end = now() + int(seconds * 1e9)
    t0 = now()
    t = t0
    while t < end:
        stat(path)
        t1 = now()
        lat.append(t1 - t)
        t = t1
    elapsed = (t - t0) / 1e9
    return {"ops": len(lat), "elapsed": elapsed, "ops_s": len(lat) / elapsed, **_percentiles(lat)}


def bench_cwu(directory: str, seconds: float) -> dict[str, float]:
    """One op = open(O_CREAT|O_EXCL|O_WRONLY) + write 4 KiB + close + unlink."""
    data = b"x" * 4096
    lat = array("q")
    now = time.perf_counter_ns
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    end = now() + int(seconds * 1e9)
    t0 = now()
    t = t0
    i = 0
    while t < end:
        p = f"{directory}/f{i}"
        fd = os.open(p, flags, 0o644)
        try:
            if os.write(fd, data) != 4096:
                raise OSError("short write")
        finally:
            os.close(fd)
        os.unlink(p)
        i += 1
        t1 = now()
        lat.append(t1 - t)
        t = t1
    elapsed = (t - t0) / 1e9
    return {"ops": len(lat), "elapsed": elapsed, "ops_s": len(lat) / elapsed, **_percentiles(lat)}


def bench_readdir(directory: str, seconds: float) -> dict[str, float]:
    """Whole listings (at least one) until ``seconds`` have passed; counts entries."""
    now = time.perf_counter_ns
    end = now() + int(seconds * 1e9)
    t0 = now()
    entries = listings = 0
    while True:
        with os.scandir(directory) as it:
            for _ in it:
                entries += 1
        listings += 1
        t = now()
        if t >= end:
            break
    elapsed = (t - t0) / 1e9
    return {
        "ops": entries,
        "listings": listings,
        "entries_per_listing": entries / listings,
        "elapsed": elapsed,
        "ops_s": entries / elapsed,
    }


def main(argv: list[str]) -> int:
    kind, path, seconds = argv[0], argv[1], float(argv[2])
    fn = {"stat": bench_stat, "cwu": bench_cwu, "readdir": bench_readdir}[kind]
    print(json.dumps(fn(path, seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
