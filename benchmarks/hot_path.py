"""The Python cost of one request, without a kernel: decode plus dispatch to a handler
that answers at once, for GETATTR, LOOKUP and a 4 KiB READ (``read_into``).

This is the part of a request's time the framework's Python code spends on the trio
thread, which a module restructuring could make slower; the kernel, the transport's
syscalls and scheduling are left out. Each figure is the CPU time of the measuring thread
(``time.thread_time``, so being preempted by other load on the machine does not count),
best of many repeats.

    .venv/bin/python benchmarks/hot_path.py                  # this checkout
    .venv/bin/python benchmarks/hot_path.py --baseline DIR   # and another, alternated

With ``--baseline`` the two checkouts are measured in alternating child processes (this
Python, each checkout's package first on ``sys.path``) and the ratios new/old printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a child process with one checkout's package on sys.path; prints JSON.
CHILD = r"""
import json, stat, struct, sys, time, timeit
import trio_fuse_uring as tfu
from trio_fuse_uring import _protocol as P
try:
    from trio_fuse_uring._dispatch import Dispatcher
except ImportError:  # the layout before the module stack
    from trio_fuse_uring.ops._dispatch import Dispatcher

HDR = struct.Struct("<IIQQIIIHH")
ATTR = tfu.EntryAttributes(st_ino=2, st_mode=stat.S_IFREG | 0o644, st_size=1 << 20)
DATA = bytes(4096)

class FS(tfu.Operations):
    async def lookup(self, parent, name, ctx):
        return ATTR
    async def getattr(self, inode, ctx):
        return ATTR
    async def read_into(self, fh, off, buf):
        buf[:4096] = DATA
        return 4096

class Sink:
    buf = memoryview(bytearray(1 << 20))
    def reply(self, slot, unique, error, body): pass
    def no_reply(self, slot, unique): pass
    def reply_buffer(self, slot, size): return self.buf[:size]

def raw(opcode, arg=b"", payload=b""):
    body = arg + payload
    return memoryview(HDR.pack(40 + len(body), opcode, 7, 2, 0, 0, 0, 0, 0) + body)

d, sink, neg = Dispatcher(FS(), entry_timeout=0, attr_timeout=0), Sink(), P.Negotiated()
cases = {
    "getattr": raw(3, struct.pack("<IIQ", 0, 0, 0)),
    "lookup": raw(1, payload=b"file\0"),
    "read4k": raw(15, struct.pack("<QQIIQII", 1, 0, 4096, 0, 0, 0, 0)),
}
out = {}
for name, buf in cases.items():
    def one(buf=buf):
        d.start(P.decode_devfuse(buf, neg), sink, None)
    n = 2000
    runs = timeit.repeat(one, number=n, repeat=int(sys.argv[1]), timer=time.thread_time)
    out[name] = min(runs) / n * 1e9
print(json.dumps(out))
"""


def measure(checkout: Path, repeat: int) -> dict[str, float]:
    """ns per request for each case, best of ``repeat`` runs, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cp = subprocess.run(
        [sys.executable, "-c", CHILD, str(repeat)], env=env, cwd="/",
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(cp.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, metavar="DIR", help="another checkout to compare")
    ap.add_argument("--rounds", type=int, default=5, help="alternations (default 5)")
    ap.add_argument("--repeat", type=int, default=30, help="repeats per round (best is kept)")
    args = ap.parse_args()
    new: list[dict[str, float]] = []
    old: list[dict[str, float]] = []
    for _ in range(args.rounds):
        new.append(measure(ROOT, args.repeat))
        if args.baseline:
            old.append(measure(args.baseline, args.repeat))
    print("| request | this checkout ns | " + ("baseline ns | new/old time |" if old else ""))
    print("|---|---|" + ("---|---|" if old else ""))
    for case in new[0]:
        n = statistics.median(r[case] for r in new)
        line = f"| {case} | {n:.0f} |"
        if old:
            o = statistics.median(r[case] for r in old)
            line += f" {o:.0f} | {n / o:.2f}x |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
