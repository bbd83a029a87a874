"""Where the time per request goes: 4 KiB O_DIRECT randread (QD1, 1 job) on our
passthrough over uring and over /dev/fuse, profiled with py-spy (the trio thread, by
layer) and perf (every thread of the daemon, user vs kernel, by DSO).

Run through ``benchmarks/run.py --profile``. Writes, per transport, into --out:
``profile-<t>.pyspy.txt`` (py-spy's collapsed stacks), ``profile-<t>.svg`` (flame
graph), ``profile-<t>.perf.txt`` (perf report) and ``profile.json`` / ``profile.md``
(the per-layer summary printed to stdout).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as R  # type: ignore[import-not-found]

PYSPY_S = 8
PERF_S = 4
LAYERS = [
    "waiting for the next request, polling (C ring take / readv of /dev/fuse)",
    "sleeping in epoll (eventfd / /dev/fuse readable)",
    "trio scheduler and task switching",
    "decode (_protocol/_decode.py, _requests.py)",
    "dispatch (_dispatch.py)",
    "handler (examples/passthrough.py, incl. its syscalls)",
    "encode (_protocol/_encode.py, _types.py)",
    "reply (copy into buffer + commit / writev)",
    "other",
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]+):(?P<line>\d+)\)$")
_SRC: dict[str, list[str]] = {}


def _line(path: str, lineno: int) -> str:
    if path not in _SRC:
        try:
            _SRC[path] = Path(path).read_text().splitlines()
        except OSError:
            _SRC[path] = []
    lines = _SRC[path]
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def classify(frames: list[tuple[str, str, int]]) -> str:
    """Layer of one sample from its stack (root first): the leaf-most frame of ours decides.

    Only frames above trio's run loop count (below it are main() and trio.run)."""
    for i in range(len(frames) - 1, -1, -1):
        if frames[i][0] in ("unrolled_run", "run") and frames[i][1].endswith("trio/_core/_run.py"):
            frames = frames[i + 1 :]
            break
    leaf_func, leaf_file, _ = frames[-1] if frames else ("", "", 0)
    for qualname, file, lineno in reversed(frames):
        func = qualname.rsplit(".", 1)[-1]
        src = _line(file, lineno)
        if "examples/passthrough.py" in file:
            return LAYERS[5]
        if "trio_fuse_uring/" not in file:
            continue
        if "_protocol/_decode" in file or "_protocol/_requests" in file:
            return LAYERS[3]
        if "_protocol/_encode" in file:
            return LAYERS[6]
        if file.endswith("_protocol.py"):
            return LAYERS[3] if func.startswith("decode") or "decode" in src else LAYERS[6]
        if file.endswith("_types.py"):
            return LAYERS[6]
        if file.endswith("_dispatch.py"):
            return LAYERS[4]
        if func in ("reply", "no_reply", "write_message") or "flush" in src:
            return LAYERS[7]
        if "wait_readable" in src or "prepare_sleep" in src or "wakeup_ack" in src:
            if "trio" in leaf_file and leaf_func not in ("get_events",):
                return LAYERS[2]
            return LAYERS[1]
        if "checkpoint" in src:
            return LAYERS[2]
        if "take(" in src or "readv(" in src or "now_ns()" in src:
            return LAYERS[0]
        if "decode(" in src or "decode_" in src:
            return LAYERS[3]
        if "start(" in src or "finish(" in src:
            return LAYERS[4]
        return LAYERS[8]
    if any(f.rsplit(".", 1)[-1] in ("get_events", "_epoll_wait") for f, _, _ in frames):
        return LAYERS[1]
    return LAYERS[2]  # trio's run loop itself, or a trio function called from it


def parse_pyspy(path: Path) -> dict[str, Any]:
    """Samples per layer for the thread that serves requests (the one with most samples
    inside trio_fuse_uring)."""
    per_thread: dict[str, Counter[str]] = {}
    ours: Counter[str] = Counter()
    funcs: dict[str, Counter[str]] = {}
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack:
            continue
        parts = stack.split(";")
        thread = parts[0] if parts and parts[0].startswith(("thread", "process")) else "?"
        frames = []
        for p in parts:
            m = _FRAME.match(p)
            if m:
                frames.append((m["func"], m["file"], int(m["line"])))
        layer = classify(frames)
        n = int(count)
        per_thread.setdefault(thread, Counter())[layer] += n
        funcs.setdefault(thread, Counter())[
            f"{frames[-1][0]} ({Path(frames[-1][1]).name}:{frames[-1][2]})" if frames else "?"
        ] += n
        if any("trio_fuse_uring/" in f for _, f, _ in frames):
            ours[thread] += n
    if not per_thread:
        return {"layers": {}, "samples": 0, "top_leaf": []}
    main = max(per_thread, key=lambda t: ours.get(t, 0))
    layers = per_thread[main]
    return {
        "thread": main,
        "samples": sum(layers.values()),
        "layers": dict(layers.most_common()),
        "top_leaf": funcs[main].most_common(15),
    }


def parse_perf(report: str) -> dict[str, Any]:
    """perf report --sort comm,dso: percentages per thread name and DSO."""
    rows = []
    for line in report.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(\S.*?)\s{2,}(\S.*)$", line)
        if m:
            rows.append({"pct": float(m[1]), "comm": m[2].strip(), "dso": m[3].strip()})
    return {"rows": rows}


def profile(args: Any, out: Path, systems: list[R.System]) -> int:
    workload = args.profile_workload
    if workload != "randread1":
        out = out / f"profile-{workload}"
        out.mkdir(parents=True, exist_ok=True)
    if shutil.which("py-spy") is None and not (Path(R.PY).parent / "py-spy").exists():
        print("py-spy is missing: .venv/bin/pip install py-spy", flush=True)
        return 2
    pyspy = shutil.which("py-spy") or str(Path(R.PY).parent / "py-spy")
    perf = shutil.which("perf")
    plan = R.Plan(rounds=1, client_s=0, fio_s=0, fio_ramp=0, idle_s=0, file_mib=256, nr_entries=0)
    work = Path(tempfile.mkdtemp(prefix="tfu-bench-prof-"))
    backing = work / "backing"
    backing.mkdir()
    results: dict[str, Any] = {}
    mounted = False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2G", "tfu-bench", str(backing)],
                       check=True, timeout=30)  # fmt: skip
        mounted = True
        for s in systems:
            src, mnt = backing / s.name, work / f"mnt-{s.name}"
            src.mkdir()
            mnt.mkdir()
            R.prepare_data(str(src), plan.file_mib, 10_000 if workload == "readdir" else 0)
            d = R.Daemon(s, str(src), str(mnt), out)
            try:
                d.start()
                total = 2 + PYSPY_S + 1 + PERF_S + 2
                # Baseline without a profiler attached, then the profiled run.
                if workload == "randread1":
                    base_ops_s = R.run_fio(
                        f"{mnt}/fio-read.dat", "randread", "4k", 1, 4, 1, plan.file_mib, 60
                    )["iops"]
                    cmd = ["fio", "--name=prof", f"--filename={mnt}/fio-read.dat", "--rw=randread",
                           "--bs=4k", "--direct=1", "--ioengine=psync", "--iodepth=1", "--numjobs=1",
                           "--time_based", f"--runtime={total}s", f"--size={plan.file_mib}M",
                           "--invalidate=0", "--norandommap", "--randrepeat=0", "--output-format=json"]  # fmt: skip
                else:
                    target = f"{mnt}/dir10k" if workload == "readdir" else f"{mnt}/statme"
                    base_ops_s = R.run_client(workload, target, 4, 120)["ops_s"]
                    cmd = [R.PY, str(R.CLIENT), workload, target, str(total)]
                cpu0 = R.proc_cpu_s(d.pid)
                fio = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                try:
                    time.sleep(2)
                    raw = out / f"profile-{s.name}.pyspy.txt"
                    subprocess.run([pyspy, "record", "--pid", str(d.pid), "--duration", str(PYSPY_S),
                                    "--rate", "250", "--idle", "--threads", "--nonblocking",
                                    "--full-filenames", "--format", "raw", "-o", str(raw)],
                                   capture_output=True, timeout=PYSPY_S + 30)  # fmt: skip
                    with contextlib.suppress(Exception):
                        subprocess.run([pyspy, "record", "--pid", str(d.pid), "--duration", "1",
                                        "--rate", "997", "--nonblocking", "-o",
                                        str(out / f"profile-{s.name}.svg")],
                                       capture_output=True, timeout=30)  # fmt: skip
                    perf_txt = sym_txt = ""
                    if perf:
                        pdata = work / f"{s.name}.perf.data"
                        subprocess.run([perf, "record", "-q", "-F", "1999", "-g", "-p", str(d.pid),
                                        "-o", str(pdata), "--", "sleep", str(PERF_S)],
                                       capture_output=True, timeout=PERF_S + 30)  # fmt: skip
                        rep = subprocess.run([perf, "report", "-i", str(pdata), "--stdio", "--no-children",
                                              "--sort", "comm,dso", "-g", "none"],
                                             capture_output=True, text=True, timeout=120)  # fmt: skip
                        sym = subprocess.run([perf, "report", "-i", str(pdata), "--stdio", "--no-children",
                                              "--sort", "comm,dso,sym", "-g", "none"],
                                             capture_output=True, text=True, timeout=120)  # fmt: skip
                        perf_txt, sym_txt = rep.stdout, sym.stdout
                        (out / f"profile-{s.name}.perf.txt").write_text(
                            rep.stdout + "\n\n" + sym.stdout
                        )
                    fout, _ = fio.communicate(timeout=total + 60)
                finally:
                    if fio.poll() is None:
                        fio.kill()
                        fio.wait()
                cpu = R.proc_cpu_s(d.pid) - cpu0
                doc = json.loads(fout[fout.index("{") :])
                if workload == "randread1":
                    ops_s, ops = doc["jobs"][0]["read"]["iops"], doc["jobs"][0]["read"]["total_ios"]
                else:
                    ops_s, ops = doc["ops_s"], doc["ops"]
                results[s.name] = {
                    "workload": workload,
                    "baseline_iops": base_ops_s,
                    "profiled_iops": ops_s,
                    "daemon_cpu_us_per_io": 1e6 * cpu / max(1, ops),
                    "wall_us_per_io": 1e6 / base_ops_s,
                    "pyspy": parse_pyspy(raw),
                    "perf": parse_perf(perf_txt),
                    "perf_symbols": [
                        ln for ln in sym_txt.splitlines() if ln.strip() and not ln.startswith("#")
                    ][:25],
                }
            finally:
                d.stop()
    finally:
        for m in R.fuse_mounts_under(str(work)):
            if m != str(backing):
                R.umount(m, lazy=True)
        if mounted and not R.umount(str(backing)):
            R.umount(str(backing), lazy=True)
        shutil.rmtree(work, ignore_errors=True)
    (out / "profile.json").write_text(json.dumps(results, indent=1))
    md = render(results)
    (out / "profile.md").write_text(md + "\n")
    print(md)
    return 0


def render(results: dict[str, Any]) -> str:
    names = list(results)
    lines = ["| trio thread, share of wall-clock samples | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]  # fmt: skip
    for layer in LAYERS:
        cells = []
        for n in names:
            p = results[n]["pyspy"]
            share = p["layers"].get(layer, 0) / p["samples"] if p["samples"] else 0
            cells.append(f"{100 * share:.0f}% ({share * results[n]['wall_us_per_io']:.1f} µs)")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines.append("| ops/s (IOPS) without / with profilers | " + " | ".join(
        f"{results[n]['baseline_iops']:.0f} / {results[n]['profiled_iops']:.0f}" for n in names) + " |")  # fmt: skip
    lines.append("| wall µs per op (1 / ops/s) | " + " | ".join(
        f"{results[n]['wall_us_per_io']:.1f}" for n in names) + " |")  # fmt: skip
    lines.append("| daemon CPU µs per op (all threads) | " + " | ".join(
        f"{results[n]['daemon_cpu_us_per_io']:.1f}" for n in names) + " |")  # fmt: skip
    for n in names:
        lines += ["", f"perf, {n}: share of daemon CPU samples by thread and DSO (top rows)", ""]
        lines += ["| % | thread | dso |", "|---|---|---|"]
        for r in results[n]["perf"]["rows"][:10]:
            lines.append(f"| {r['pct']:.1f} | {r['comm']} | {r['dso']} |")
        lines += ["", f"perf, {n}: top symbols (thread, DSO, symbol)", "", "```"]
        lines += results[n].get("perf_symbols", [])[:15]
        lines += ["```", "", f"py-spy, {n}: top leaf frames of the trio thread", ""]
        for leaf, count in results[n]["pyspy"]["top_leaf"][:10]:
            lines.append(f"- {count} {leaf}")
    return "\n".join(lines)


def rerender(out: Path) -> str:
    """Re-classify the saved py-spy stacks of a profile run and rewrite profile.md/json."""
    results = json.loads((out / "profile.json").read_text())
    for name, res in results.items():
        res["pyspy"] = parse_pyspy(out / f"profile-{name}.pyspy.txt")
    (out / "profile.json").write_text(json.dumps(results, indent=1))
    md = render(results)
    (out / "profile.md").write_text(md + "\n")
    return md
