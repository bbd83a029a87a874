"""Interleaved benchmark: trio-fuse-uring passthrough over uring and /dev/fuse vs pyfuse3.

    .venv/bin/python benchmarks/run.py                 # full run (5 rounds, ~10 min)
    .venv/bin/python benchmarks/run.py --quick         # smoke test (< 2 min)
    .venv/bin/python benchmarks/run.py --profile       # py-spy + perf of 4 KiB randread

Each round mounts every system over its own fresh directory of one tmpfs (entry and
attribute timeouts 0), waits ~3 s to measure idle CPU and RSS, then runs every workload
on every system in turn (the order rotates per round and per workload, so slow drifts of
a noisy machine hit all systems alike), and unmounts. Medians over rounds are reported,
with ratios between systems, as a table on stdout and as JSON + PNG in --out.

Systems (examples/passthrough.py serves reads and writes from backing files in C):
    uring    examples/passthrough.py --transport uring -o no_passthrough  (this framework)
    devfuse  examples/passthrough.py --transport devfuse -o no_passthrough
    uring-passthrough  ... --transport uring, with kernel passthrough (its default as root)
    uring-nobacking    ... --transport uring --no-backing (every read and write in Python)
    libfuse-uring, libfuse-devfuse, libfuse-passthrough
             libfuse's C passthrough_hp given with --libfuse-hp PATH (build it as
             benchmarks/README.md says): --nocache --nopassthrough with and without
             -o io_uring, and its default kernel passthrough mode (as root)
    tmpfs    the source tmpfs itself (bind-mounted): the ceiling
    pyfuse3  pyfuse3's own examples/passthroughfs.py, taken from pyfuse3's sdist at
             benchmark time (downloaded with pip into <out>/cache, never committed), run
             with the installed pyfuse3 (the `bench` extra); skipped, saying why, if it
             cannot be had. It keeps the writeback cache off and timeouts 0 by default.

Must run as root (mounts tmpfs, unmounts stale mounts). Every mount is unmounted and
every daemon killed on the way out, whatever happens; every client step has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (  # type: ignore[import-not-found]
    HERE,
    PY,
    ROOT,
    Daemon,
    Plan,
    System,
    fuse_mounts_under,
    log,
    prepare_data,
    proc_cpu_s,
    proc_mem_mib,
    run_client,
    run_fio,
    umount,
)

# (key, title, unit, higher_is_better)
WORKLOADS: list[tuple[str, str, str]] = [
    ("stat", "stat ops/s", "ops/s"),
    ("cwu", "create+4K write+unlink /s", "ops/s"),
    ("randread1", "4 KiB randread QD1 1 job IOPS", "IOPS"),
    ("randread2", "4 KiB randread QD1 2 jobs IOPS", "IOPS"),
    ("seqread", "1 MiB seq read MB/s", "MB/s"),
    ("seqwrite", "1 MiB seq write MB/s", "MB/s"),
    ("readdir", "readdir 10k entries/s", "entries/s"),
]

# Performance goals: ratio of ours over uring to pyfuse3.
TARGET_VS_PYFUSE3 = {
    "stat": 4.0, "cwu": 3.0, "randread1": 8.0, "randread2": 10.0,
    "seqread": 1.5, "seqwrite": 1.4,
}  # fmt: skip
# uring over our devfuse: >= 1 everywhere, more on these.
TARGET_URING_VS_DEVFUSE = {"randread1": 1.3, "seqread": 2.0}
LIBFUSE_READDIR_URING = 689_000  # libfuse C uring's readdir entries/s on the reference VM
IDLE_RSS_MAX_MIB = 60


def our_systems(fs: str, extra_options: str = "", baseline: Path | None = None) -> list[System]:
    """Our daemons over both transports; with ``baseline``, also the same daemons from that
    checkout of this repository (``uring-base``, ``devfuse-base``): its examples and its
    package (extension built in place) run by this Python, for before/after comparisons."""
    systems = _our_systems(fs, extra_options, ROOT, "", None)
    if baseline is not None:
        env = {"PYTHONPATH": str(baseline)}
        systems += [
            s for s in _our_systems(fs, extra_options, baseline, "-base", env)
            if s.name in ("uring-base", "devfuse-base")
        ]  # fmt: skip
    return systems


def _our_systems(
    fs: str, extra_options: str, root: Path, suffix: str, env: dict[str, str] | None
) -> list[System]:
    systems = []
    where = "" if not suffix else f" at {root}"
    for transport in ("uring", "devfuse"):
        if fs == "passthrough":
            argv = [PY, str(root / "examples/passthrough.py"), "{src}", "{mnt}",
                    "--transport", transport, "--entry-timeout", "0", "--attr-timeout", "0"]  # fmt: skip
            has_source = True
        else:  # development fallback while passthrough.py does not exist
            argv = [PY, str(root / "examples/memfs.py"), "{mnt}", "--transport", transport,
                    "-o", "entry_timeout=0,attr_timeout=0"]  # fmt: skip
            has_source = False
        if extra_options:
            argv += ["-o", extra_options]
        # This checkout serves reads and writes from backing files; kernel passthrough
        # is its own system (a baseline checkout may know neither option).
        backed = [*argv, "-o", "no_passthrough"] if fs == "passthrough" and not suffix else argv
        systems.append(System(transport + suffix, f"ours/{transport}{where}", backed, True,
                              has_source, env))  # fmt: skip
        if transport == "uring" and fs == "passthrough" and not suffix:
            systems.append(System("uring-passthrough", "ours/uring, kernel passthrough", argv,
                                  True, has_source))  # fmt: skip
            systems.append(System("uring-nobacking", "ours/uring --no-backing",
                                  [*argv, "--no-backing"], True, has_source))  # fmt: skip
        if transport == "uring":
            # Not in the default set: the other hand-off, compared with the eventfd
            # (queue threads wake trio through TrioToken.run_sync_soon).
            systems.append(System("uring-token", "ours/uring, TrioToken hand-off", argv, True,
                                  has_source, {"TRIO_FUSE_URING_HANDOFF": "token"}))  # fmt: skip
    return systems


def libfuse_systems(hp: str) -> list[System]:
    """libfuse's passthrough_hp (C), in the modes compared with ours (stopped by unmounting,
    after which it exits 0)."""
    base = [hp, "--foreground", "--nocache"]
    return [
        System("libfuse-uring", "libfuse passthrough_hp --nopassthrough -o io_uring",
               [*base, "--nopassthrough", "-o", "io_uring", "{src}", "{mnt}"], False),
        System("libfuse-devfuse", "libfuse passthrough_hp --nopassthrough",
               [*base, "--nopassthrough", "{src}", "{mnt}"], False),
        System("libfuse-passthrough", "libfuse passthrough_hp (kernel passthrough)",
               [*base, "{src}", "{mnt}"], False),
    ]  # fmt: skip


# The ceiling: the backing tmpfs itself, bind-mounted on the mountpoint by a shell that
# then waits for the unmount (so that the harness has a "daemon" to stop).
TMPFS = System("tmpfs", "plain tmpfs (bind mount)",
               ["sh", "-c", 'mount --bind "$1" "$2" && while mountpoint -q "$2"; do sleep 0.5; '
                "done", "sh", "{src}", "{mnt}"], False)  # fmt: skip

# Ratios reported (a over b), when both systems ran.
RATIO_PAIRS = [
    ("uring", "libfuse-uring"), ("devfuse", "libfuse-devfuse"),
    ("uring-passthrough", "libfuse-passthrough"), ("uring-passthrough", "tmpfs"),
    ("libfuse-passthrough", "tmpfs"), ("uring", "uring-nobacking"), ("uring", "devfuse"),
    ("uring", "pyfuse3"), ("devfuse", "pyfuse3"), ("uring-token", "uring"),
    ("uring", "uring-base"), ("devfuse", "devfuse-base"),
]  # fmt: skip
# Ours over libfuse C (same mode): minimum ratios of medians.
TARGET_VS_LIBFUSE = {
    ("uring", "libfuse-uring"): {"randread2": 1.0, "randread1": 2.0, "seqread": 1.5,
                                 "seqwrite": 1.2, "readdir": 1.0, "stat": 2.0, "cwu": 2.0},
    ("uring-passthrough", "libfuse-passthrough"): {"randread1": 1.0, "randread2": 1.0,
                                                   "seqread": 1.0, "seqwrite": 1.0},
    ("uring-passthrough", "tmpfs"): {"randread1": 0.5},
}  # fmt: skip


def pyfuse3_system(cache: Path) -> tuple[System | None, str]:
    """pyfuse3's passthroughfs.py from its sdist, or None and why not."""
    probe = subprocess.run(
        [PY, "-c", "import pyfuse3; print(pyfuse3.__version__)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None, (f"pyfuse3 is not importable ({tail}); install the bench extra "
                      "(apt-get install -y libfuse3-dev pkg-config; pip install pyfuse3)")  # fmt: skip
    version = probe.stdout.strip()
    example = cache / f"pyfuse3-{version}" / "passthroughfs.py"
    if not example.exists():
        example.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tfu-bench-sdist-") as tmp:
            log(f"downloading the pyfuse3 {version} sdist for its examples/passthroughfs.py")
            dl = subprocess.run(
                [PY, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 f"pyfuse3=={version}", "-d", tmp],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            sdists = list(Path(tmp).glob("pyfuse3-*.tar.gz"))
            if dl.returncode != 0 or not sdists:
                tail = (dl.stderr.strip().splitlines() or ["?"])[-1]
                return None, f"could not download the pyfuse3 {version} sdist: {tail}"
            with tarfile.open(sdists[0]) as tar:
                member = next(
                    (m for m in tar.getmembers() if m.name.endswith("/examples/passthroughfs.py")),
                    None,
                )
                if member is None or not member.isfile():
                    return None, "the pyfuse3 sdist has no examples/passthroughfs.py"
                src = tar.extractfile(member)
                assert src is not None
                example.write_bytes(src.read())
    text = example.read_text()
    # passthroughfs.py sets entry_timeout = attr_timeout = 0 itself and keeps the
    # writeback cache off unless --enable-writeback-cache is given; check it still does.
    if "entry_timeout = 0" not in text or "attr_timeout = 0" not in text:
        return None, f"{example} no longer sets timeouts 0; check it by hand"
    argv = [PY, str(example), "{src}", "{mnt}"]
    return System("pyfuse3", f"pyfuse3 {version}", argv, False), f"pyfuse3 {version}"


def run_workload(key: str, d: Daemon, plan: Plan) -> dict[str, Any]:
    """Run one workload against one mounted daemon; returns its metrics + daemon CPU."""
    mnt = d.mnt
    t_out = 60 + 3 * plan.client_s
    f_out = 60 + 3 * (plan.fio_s + plan.fio_ramp)
    cpu0 = proc_cpu_s(d.pid)
    t0 = time.monotonic()
    if key == "stat":
        r = run_client("stat", f"{mnt}/statme", plan.client_s, t_out)
        r = {"value": r["ops_s"], "p99_us": r["p99_us"], "p50_us": r["p50_us"], "ops": r["ops"]}
    elif key == "cwu":
        r = run_client("cwu", f"{mnt}/cwu", plan.client_s, t_out)
        r = {"value": r["ops_s"], "p99_us": r["p99_us"], "p50_us": r["p50_us"], "ops": r["ops"]}
    elif key in ("randread1", "randread2"):
        jobs = 1 if key == "randread1" else 2
        r = run_fio(f"{mnt}/fio-read.dat", "randread", "4k", jobs, plan.fio_s, plan.fio_ramp,
                    plan.file_mib, f_out)  # fmt: skip
        r = {"value": r["iops"], "p99_us": r["p99_us"], "p50_us": r["p50_us"], "ops": r["ops"]}
    elif key in ("seqread", "seqwrite"):
        rw, name = ("read", "fio-read.dat") if key == "seqread" else ("write", "fio-write.dat")
        r = run_fio(f"{mnt}/{name}", rw, "1M", 1, plan.fio_s, plan.fio_ramp, plan.file_mib, f_out)
        r = {"value": r["mb_s"], "p99_us": r["p99_us"], "p50_us": r["p50_us"], "ops": r["ops"]}
    elif key == "readdir":
        r = run_client("readdir", f"{mnt}/dir10k", plan.client_s, 120 + 3 * plan.client_s)
        if r["entries_per_listing"] < plan.nr_entries:
            raise RuntimeError(f"readdir saw {r['entries_per_listing']} entries, expected "
                               f">= {plan.nr_entries}")  # fmt: skip
        r = {"value": r["ops_s"], "ops": r["ops"]}
    else:
        raise ValueError(key)
    wall = time.monotonic() - t0
    cpu = proc_cpu_s(d.pid) - cpu0
    r["daemon_cpu_s"] = cpu
    r["wall_s"] = wall
    # ops (requests the client made, fio IOs, entries) per daemon CPU-second. For fio the
    # ramp time is not counted in ops but is in CPU: a slight underestimate.
    r["ops_per_cpu_s"] = r["ops"] / cpu if cpu > 0 else None
    return r


# ---- the run ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                            "python": platform.python_version()}  # fmt: skip
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with contextlib.suppress(OSError):
        info["enable_uring"] = Path("/sys/module/fuse/parameters/enable_uring").read_text().strip()
    with contextlib.suppress(OSError):
        info["loadavg_before"] = Path("/proc/loadavg").read_text().split()[:3]
    with contextlib.suppress(Exception):
        info["fio"] = subprocess.run(["fio", "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip()  # fmt: skip
    with contextlib.suppress(Exception):
        info["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    return info


def run_rounds(systems: list[System], plan: Plan, work: Path, logdir: Path,
               workloads: list[str]) -> dict[str, Any]:  # fmt: skip
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.name: {w: [] for w in workloads} for s in systems
    }
    idle: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    exits: dict[str, list[Any]] = {s.name: [] for s in systems}
    errors: list[str] = []
    loads: list[list[str]] = []
    backing = work / "backing"
    for rnd in range(plan.rounds):
        order = systems[rnd % len(systems) :] + systems[: rnd % len(systems)]
        load = Path("/proc/loadavg").read_text().split()[:3]
        loads.append(load)
        log(
            f"round {rnd + 1}/{plan.rounds}: order {[s.name for s in order]}, load {' '.join(load)}"
        )
        daemons: list[Daemon] = []
        try:
            for s in order:
                src = backing / f"r{rnd}-{s.name}"
                mnt = work / f"mnt-r{rnd}-{s.name}"
                src.mkdir()
                mnt.mkdir()
                if s.has_source:
                    prepare_data(str(src), plan.file_mib, plan.nr_entries)
                d = Daemon(s, str(src), str(mnt), logdir)
                daemons.append(d)
                d.start()
                if not s.has_source:
                    prepare_data(str(mnt), plan.file_mib, plan.nr_entries)
            # Idle: every daemon mounted, no traffic.
            cpu0 = {d.system.name: proc_cpu_s(d.pid) for d in daemons}
            time.sleep(plan.idle_s)
            for d in daemons:
                mem = proc_mem_mib(d.pid)
                idle[d.system.name].append({
                    "cpu_s": proc_cpu_s(d.pid) - cpu0[d.system.name],
                    "seconds": plan.idle_s, "rss_mib": mem["VmRSS"],
                })  # fmt: skip
            for wi, w in enumerate(workloads):
                k = (rnd + wi) % len(daemons)
                for d in daemons[k:] + daemons[:k]:
                    try:
                        before = _others()
                        r = run_workload(w, d, plan)
                        r["disturbed_by"] = sorted({o.split(":")[0] for o in before + _others()})
                    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
                        msg = f"round {rnd + 1} {d.system.name} {w}: {exc}"
                        log("ERROR " + msg)
                        errors.append(msg)
                        continue
                    raw[d.system.name][w].append(r)
                    log(f"  {d.system.name:8s} {w:10s} {r['value']:12.1f}"
                        + (f"  DISTURBED by {r['disturbed_by']}" if r["disturbed_by"] else "")
                        + (f"  p99 {r['p99_us']:.0f} us" if "p99_us" in r else "")
                        + f"  cpu {r['daemon_cpu_s']:.2f}s")  # fmt: skip
            for d in daemons:
                mem = proc_mem_mib(d.pid)
                idle[d.system.name][-1]["peak_rss_mib"] = mem["VmHWM"]
        finally:
            for d in daemons:
                d.stop()
                exits[d.system.name].append(d.exit_stats)
                if d.proc is not None and d.proc.returncode not in (0, None):
                    errors.append(f"round {rnd + 1} {d.system.name} exited {d.proc.returncode}: "
                                  f"{d.stderr_tail()}")  # fmt: skip
            for d in daemons:
                shutil.rmtree(d.src, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.rmdir(d.mnt)
    return {"raw": raw, "idle": idle, "exit_stats": exits, "errors": errors, "loadavg": loads}


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(
    systems: list[System], result: dict[str, Any], workloads: list[str]
) -> dict[str, Any]:
    names = [s.name for s in systems]
    summary: dict[str, Any] = {"workloads": {}, "daemon": {}}
    for w in workloads:
        row: dict[str, Any] = {}
        for n in names:
            runs = result["raw"][n][w]
            if not runs:
                continue
            # Measurements during which tests, fio or another benchmark of someone else
            # ran are left out, unless there is no other.
            clean = [r for r in runs if not r.get("disturbed_by")]
            disturbed = len(runs) - len(clean)
            runs = clean or runs
            row[n] = {
                "disturbed_left_out": disturbed if clean else 0,
                "value": median([r["value"] for r in runs]),
                "p99_us": median([r.get("p99_us") for r in runs]),
                "ops_per_cpu_s": median([r.get("ops_per_cpu_s") for r in runs]),
                "daemon_cpu_s": median([r["daemon_cpu_s"] for r in runs]),
                "rounds": len(runs),
            }
        ratios = {}
        for a, b in RATIO_PAIRS:
            if a in row and b in row and row[b]["value"]:
                ratios[f"{a}/{b}"] = row[a]["value"] / row[b]["value"]
        summary["workloads"][w] = {"median": row, "ratios": ratios}
    for n in names:
        ids = result["idle"][n]
        summary["daemon"][n] = {
            "idle_cpu_pct": median([100 * i["cpu_s"] / i["seconds"] for i in ids]),
            "idle_rss_mib": median([i["rss_mib"] for i in ids]),
            "peak_rss_mib": median([i.get("peak_rss_mib") for i in ids]),
        }
    return summary


def check_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    W = summary["workloads"]
    for (a, b), targets in TARGET_VS_LIBFUSE.items():
        for w, target in targets.items():
            got = W.get(w, {}).get("ratios", {}).get(f"{a}/{b}")
            if got is not None:
                checks.append({"target": f"{w}: {a} >= {target}x {b}", "got": got,
                               "met": got >= target})  # fmt: skip
    for w, target in TARGET_VS_PYFUSE3.items():
        got = W.get(w, {}).get("ratios", {}).get("uring/pyfuse3")
        if got is None:
            continue
        checks.append({"target": f"{w}: uring >= {target}x pyfuse3", "got": got,
                       "met": got is not None and got >= target})  # fmt: skip
    for w in W:
        target = TARGET_URING_VS_DEVFUSE.get(w, 1.0)
        got = W[w]["ratios"].get("uring/devfuse")
        checks.append({"target": f"{w}: uring >= {target}x devfuse", "got": got,
                       "met": got is not None and got >= target})  # fmt: skip
    rd = W.get("readdir", {}).get("median", {}).get("uring", {}).get("value")
    if rd is not None and "libfuse-uring" not in W.get("readdir", {}).get("median", {}):
        checks.append({"target": f"readdir: uring >= 0.5x libfuse C uring's {LIBFUSE_READDIR_URING:,}/s "
                             "(absolute, libfuse measured once on the reference VM)",
                   "got": rd / LIBFUSE_READDIR_URING if rd else None,
                   "met": bool(rd and rd >= 0.5 * LIBFUSE_READDIR_URING)})  # fmt: skip
    for n in summary["daemon"]:
        d = summary["daemon"].get(n)
        if not d or n == "tmpfs":
            continue
        checks.append({"target": f"{n}: idle daemon CPU ~0 (< 1% of a CPU)", "got": d["idle_cpu_pct"],
                       "met": d["idle_cpu_pct"] is not None and d["idle_cpu_pct"] < 1.0})  # fmt: skip
        checks.append({"target": f"{n}: idle RSS <= {IDLE_RSS_MAX_MIB} MiB", "got": d["idle_rss_mib"],
                       "met": d["idle_rss_mib"] is not None and d["idle_rss_mib"] <= IDLE_RSS_MAX_MIB})  # fmt: skip
    return checks


def fmt_num(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 10_000:
        return f"{x / 1000:.1f}k"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def render_table(names: list[str], summary: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    W = summary["workloads"]
    ratio_keys = [f"{a}/{b}" for a, b in RATIO_PAIRS if a in names and b in names]
    head = ["workload"] + names + [f"{n} p99 µs" for n in names if n] + ratio_keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    titles = {k: t for k, t, _ in WORKLOADS}
    for w, entry in W.items():
        med = entry["median"]
        cells = [titles[w]]
        cells += [fmt_num(med.get(n, {}).get("value")) for n in names]
        cells += [fmt_num(med.get(n, {}).get("p99_us")) for n in names]
        cells += [f"{entry['ratios'][k]:.2f}x" if k in entry["ratios"] else "-" for k in ratio_keys]
        lines.append("| " + " | ".join(cells) + " |")
    left_out = {
        n: sum(e["median"].get(n, {}).get("disturbed_left_out", 0) for e in W.values())
        for n in names
    }
    if any(left_out.values()):
        lines += ["", "Measurements left out because someone else's tests/fio/benchmark ran meanwhile: "
                  + ", ".join(f"{n} {c}" for n, c in left_out.items())]  # fmt: skip
    lines.append("")
    head2 = ["ops per daemon CPU-second", *names]
    lines += ["| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for w, entry in W.items():
        med = entry["median"]
        lines.append("| " + " | ".join([titles[w]] + [fmt_num(med.get(n, {}).get("ops_per_cpu_s"))
                                                      for n in names]) + " |")  # fmt: skip
    lines.append("")
    head3 = ["daemon", *names]
    lines += ["| " + " | ".join(head3) + " |", "|" + "---|" * len(head3)]
    D = summary["daemon"]
    for key, title in (("idle_cpu_pct", "idle CPU (% of one CPU)"), ("idle_rss_mib", "idle RSS MiB"),
                       ("peak_rss_mib", "peak RSS MiB")):  # fmt: skip
        lines.append("| " + " | ".join([title] + [fmt_num(D[n][key]) for n in names]) + " |")
    lines.append("")
    lines += ["| goal | got | met |", "|---|---|---|"]
    for c in checks:
        got = c["got"]
        lines.append(f"| {c['target']} | {fmt_num(got) if got is not None else '-'} | "
                     f"{'yes' if c['met'] else '**no**'} |")  # fmt: skip
    return "\n".join(lines)


def draw_chart(names: list[str], summary: dict[str, Any], path: Path, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: matplotlib is missing ({exc}); install the bench extra"
    W = summary["workloads"]
    base = "pyfuse3" if "pyfuse3" in names else "devfuse"
    titles = {k: t for k, t, _ in WORKLOADS}
    ws = [w for w in W if base in W[w]["median"]]
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=90)
    width = 0.8 / len(names)
    colors = {"uring": "#1f77b4", "devfuse": "#ff7f0e", "pyfuse3": "#7f7f7f",
              "uring-token": "#9ecae1"}  # fmt: skip
    for i, n in enumerate(names):
        vals = []
        for w in ws:
            med = W[w]["median"]
            v, b = med.get(n, {}).get("value"), med[base]["value"]
            vals.append(v / b if v and b else 0)
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(ws))]
        bars = ax.bar(xs, vals, width, label=n, color=colors.get(n))
        for bar, v in zip(bars, vals, strict=True):
            if v:
                ax.annotate(f"{v:.1f}" if v < 100 else f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=7)  # fmt: skip
    if base == "pyfuse3" and "uring" in names:
        i = names.index("uring")
        tx = [
            j + (i - (len(names) - 1) / 2) * width
            for j, w in enumerate(ws)
            if w in TARGET_VS_PYFUSE3
        ]
        ty = [TARGET_VS_PYFUSE3[w] for w in ws if w in TARGET_VS_PYFUSE3]
        ax.scatter(tx, ty, marker="_", s=400, color="red", linewidths=2, zorder=3,
                   label="goal for uring")  # fmt: skip
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(ws)))
    ax.set_xticklabels([titles[w].replace(" QD1", "\nQD1") for w in ws], fontsize=8)
    ax.set_ylabel(f"throughput relative to {base} (log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def _cpu_busy_fraction(seconds: float = 2.0) -> float:
    def sample() -> tuple[int, int]:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = vals[3] + vals[4]
        return sum(vals) - idle, sum(vals)

    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0)


def chart_title(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    return (f"trio-fuse-uring passthrough vs pyfuse3: medians of {doc['plan']['rounds']} interleaved "
            f"rounds ({m.get('kernel')}, {m.get('cpus')} CPUs)")  # fmt: skip


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _others() -> list[str]:
    """Processes that would disturb a run: tests, fio, another benchmark run."""
    me = {os.getpid(), os.getppid()} | _descendants(os.getpid())
    found = []
    for pattern in ("pytest", "fio ", "benchmarks/run.py", "soak.py", "examples/", "python -c"):
        pids = subprocess.run(
            ["pgrep", "-f", pattern], capture_output=True, text=True
        ).stdout.split()
        found += [f"{pattern.strip()}:{p}" for p in pids if int(p) not in me]
    return found


def check_quiet(max_wait_s: float) -> str:
    """Wait (bounded) for a quiet machine: three 2 s samples in a row with < 10% CPU busy
    and no test, fio or other benchmark run. Says what it saw."""
    deadline = time.monotonic() + max_wait_s
    quiet_in_a_row = 0
    while True:
        busy = _cpu_busy_fraction()
        others = _others()
        quiet_in_a_row = quiet_in_a_row + 1 if busy < 0.10 and not others else 0
        if quiet_in_a_row >= 3:
            return f"quiet ({100 * busy:.0f}% CPU busy, no tests or benchmarks running)"
        if time.monotonic() > deadline:
            return f"still busy after waiting {max_wait_s:.0f}s ({100 * busy:.0f}% CPU busy, {others[:5]})"
        if not quiet_in_a_row:
            log(f"machine busy ({100 * busy:.0f}% CPU, {others[:5]}); waiting")
            time.sleep(8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 round, short steps (< 2 min)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, --quick 1)")
    ap.add_argument("--out", default=str(HERE / "results"), help="results directory")
    ap.add_argument("--systems", default="uring,devfuse,uring-passthrough,libfuse-uring,"
                    "libfuse-devfuse,libfuse-passthrough,tmpfs,pyfuse3",
                    help="comma-separated subset of uring, devfuse, uring-passthrough, "
                         "uring-nobacking, uring-token (the TrioToken hand-off), pyfuse3, "
                         "libfuse-uring, libfuse-devfuse, libfuse-passthrough (these need "
                         "--libfuse-hp) and tmpfs")  # fmt: skip
    ap.add_argument(
        "--libfuse-hp",
        metavar="PATH",
        help="a built libfuse example/passthrough_hp (see benchmarks/README.md)",
    )
    ap.add_argument("--baseline", metavar="DIR", type=Path,
                    help="another checkout of this repository, its extension built in place "
                         "(python trio_fuse_uring/_ring_build.py there): adds the systems "
                         "uring-base and devfuse-base, for before/after comparisons")  # fmt: skip
    ap.add_argument("--workloads", default=",".join(k for k, _, _ in WORKLOADS))
    ap.add_argument("--fs", choices=["passthrough", "memfs"], default="passthrough",
                    help="our example to mount (memfs: development fallback, not comparable)")  # fmt: skip
    ap.add_argument("--our-options", default="", metavar="OPT[,OPT...]",
                    help="extra -o mount options for our daemons, e.g. max_pages=256,max_write=1048576")  # fmt: skip
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="first wait up to S seconds for < 10%% CPU busy and no pytest running")  # fmt: skip
    ap.add_argument("--profile", action="store_true",
                    help="instead: profile 4 KiB randread on uring and devfuse (py-spy, perf)")  # fmt: skip
    ap.add_argument("--profile-workload", choices=["randread1", "readdir", "stat"], default="randread1",
                    help="what --profile loads the daemon with (default randread1: fio 4 KiB QD1)")  # fmt: skip
    ap.add_argument("--report", metavar="JSON",
                    help="instead: redraw the table and chart of a saved results.json into --out")  # fmt: skip
    args = ap.parse_args(argv)
    if args.report:
        doc = json.loads(Path(args.report).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        names = list(doc["systems"])
        table = render_table(names, doc["summary"], check_targets(doc["summary"]))
        (out / "results.md").write_text(table + "\n")
        note = draw_chart(names, doc["summary"], out / "results.png", chart_title(doc))
        print(table)
        print(note or f"wrote {out}/results.md, results.png")
        return 0
    if os.geteuid() != 0:
        print("benchmarks/run.py must run as root (it mounts tmpfs and FUSE)", file=sys.stderr)
        return 2
    if shutil.which("fio") is None:
        print("fio is missing: apt-get install -y fio", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = HERE / "results" / "cache"
    if args.fs == "passthrough" and not (ROOT / "examples/passthrough.py").exists():
        print(
            "examples/passthrough.py does not exist yet; use --fs memfs to develop", file=sys.stderr
        )
        return 2
    if args.profile:
        from _profile import profile  # type: ignore[import-not-found]

        if args.wait_quiet:
            log(check_quiet(args.wait_quiet))

        return profile(args, out, our_systems(args.fs, args.our_options))
    quick = args.quick
    plan = Plan(
        rounds=args.rounds or (1 if quick else 5),
        client_s=1.0 if quick else 2.5,
        fio_s=1.5 if quick else 4.0,
        fio_ramp=0.5 if quick else 1.0,
        idle_s=3.0,
        file_mib=64 if quick else 256,
    )
    wanted = args.systems.split(",")
    candidates = [*our_systems(args.fs, args.our_options, args.baseline), TMPFS]
    if args.libfuse_hp:
        hp = os.path.abspath(args.libfuse_hp)
        if not os.access(hp, os.X_OK):
            print(f"--libfuse-hp {hp} is not an executable", file=sys.stderr)
            return 2
        candidates += libfuse_systems(hp)
    elif any(w.startswith("libfuse-") for w in wanted):
        log("skipping the libfuse systems: give --libfuse-hp PATH (benchmarks/README.md)")
    systems = [s for s in candidates if s.name in wanted]
    pyfuse3_note = "not asked for"
    if "pyfuse3" in wanted:
        sysp, pyfuse3_note = pyfuse3_system(cache)
        if sysp is None:
            log(f"skipping pyfuse3: {pyfuse3_note}")
        else:
            systems.append(sysp)
    workloads = [w for w in args.workloads.split(",") if w]
    known = {k for k, _, _ in WORKLOADS}
    if not set(workloads) <= known:
        ap.error(f"unknown workloads {set(workloads) - known}")
    quiet = check_quiet(args.wait_quiet) if args.wait_quiet else "not checked"
    info = machine_info()
    info["quiet_check"] = quiet
    log(f"machine: {info}")
    cmd = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="tfu-bench-"))
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    tmpfs_mounted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    prev_term = signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    try:
        (work / "backing").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8G", "tfu-bench", str(work / "backing")],
                       check=True, timeout=30)  # fmt: skip
        tmpfs_mounted = True
        result = run_rounds(systems, plan, work, logdir, workloads)
    finally:
        signal.signal(signal.SIGTERM, prev_term)
        for m in sorted(fuse_mounts_under(str(work)), key=len, reverse=True):
            if m != str(work / "backing"):
                log(f"stale mount {m}; detaching it")
                umount(m, lazy=True)
        if tmpfs_mounted and not umount(str(work / "backing")):
            umount(str(work / "backing"), lazy=True)
        shutil.rmtree(work, ignore_errors=True)
        left = fuse_mounts_under(str(work))
        if left:
            log(f"WARNING: mounts left behind: {left}")
    elapsed = time.monotonic() - t_start
    names = [s.name for s in systems]
    summary = summarize(systems, result, workloads)
    checks = check_targets(summary)
    table = render_table(names, summary, checks)
    doc = {
        "command": cmd, "machine": info, "elapsed_s": round(elapsed, 1),
        "plan": plan.__dict__, "systems": {s.name: s.label for s in systems},
        "pyfuse3": pyfuse3_note, "fs": args.fs, "summary": summary, "targets": checks,
        "errors": result["errors"], "exit_stats": result["exit_stats"], "raw": result["raw"],
        "idle": result["idle"], "loadavg_per_round": result["loadavg"],
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "results.md").write_text(table + "\n")
    note = draw_chart(names, summary, out / "results.png", chart_title(doc))
    print(table)
    print()
    if note:
        print(note)
    print(f"{plan.rounds} rounds in {elapsed:.0f} s; wrote {out}/results.json, results.md"
          + ("" if note else ", results.png"))  # fmt: skip
    for e in result["errors"]:
        print("error:", e)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
