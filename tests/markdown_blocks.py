"""Run the code blocks of a Markdown page as a reader would, against the real kernel.

Blocks run inside a private mount namespace whose /tmp is a fresh tmpfs, so the fixed
paths the documents use (``/tmp/hello``) cannot meet another process's mounts, and
whatever a block leaves mounted disappears with the namespace. Needs root (unshare).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

# A new mount namespace starts with copies of every mount, other processes' FUSE mounts
# included; a copy would keep such a filesystem alive after its owner unmounts it. Detach
# the copies (in this namespace only) before anything else runs.
DETACH_FUSE_COPIES = (
    "awk '$3 == \"fuse\" || $3 ~ /^fuse\\./ {print $2}' /proc/self/mounts"
    ' | while read -r m; do umount -l "$m" 2>/dev/null || true; done'
)

FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
FILE_HEADER = re.compile(r"#\s*([\w-]+\.py)\s*$")


def code_blocks(markdown: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(markdown) if lang == language]


def file_name(block: str) -> str | None:
    """``name.py`` when the block's first line is a ``# name.py`` comment."""
    m = FILE_HEADER.match(block.splitlines()[0]) if block.strip() else None
    return m.group(1) if m else None


@dataclass
class Step:
    """One command. A daemon serves until stopped: once it has mounted, ``then`` runs
    (shell commands; with none, every file in the new mount is read), then it gets
    SIGINT (as Ctrl-C) unless ``then`` already unmounted it."""

    argv: list[str]
    daemon: bool = False
    then: list[str] = field(default_factory=list)
    cwd: str | None = None


@dataclass
class Outcome:
    argv: list[str]
    returncode: int
    output: str
    mounted: str | None = None
    then_output: str = ""
    then_returncode: int = 0


def run_steps(steps: list[Step], files: dict[str, str], timeout: float = 90) -> list[Outcome]:
    """Write ``files`` into a fresh directory (each step's default cwd), run ``steps`` in
    the namespace, and return what each did. Raises AssertionError when something is
    still mounted at the end."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        import pytest

        pytest.skip("needs root and unshare for a private /tmp")
    # Outside /tmp: the namespace mounts a tmpfs over it.
    work = Path(tempfile.mkdtemp(prefix="tfu-doc-blocks-", dir="/var/tmp"))
    try:
        for name, text in files.items():
            (work / name).write_text(text)
        plan = work / "plan.json"
        # What must stay visible although it may live under /tmp (a checkout in /tmp).
        keep = sorted({str(Path(__file__).resolve().parent.parent), sys.prefix})
        plan.write_text(
            json.dumps({"work": str(work), "keep": keep, "steps": [asdict(s) for s in steps]})
        )
        proc = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'{DETACH_FUSE_COPIES}; exec "$0" "$1" "$2"', sys.executable, __file__, str(plan)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"block runner failed:\n{proc.stdout}\n{proc.stderr}"
        return [Outcome(**o) for o in json.loads(proc.stdout)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- inside the namespace ------------------------------------------------------------


def _fuse_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        fields = [line.split(" - ") for line in f]
    return [a.split()[4] for a, b in fields if b.split()[0] == "fuse" or b.startswith("fuse.")]


def _wait(cond: object, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _read_all(mnt: str) -> str:
    out = []
    for name in sorted(os.listdir(mnt)):
        path = os.path.join(mnt, name)
        if os.path.isfile(path):
            with open(path) as f:
                out.append(f"{name}: {f.read()}")
    return "".join(out)


def _run_daemon(step: dict[str, object], cwd: str) -> dict[str, object]:
    import signal

    before = set(_fuse_mounts())
    proc = subprocess.Popen(step["argv"], cwd=cwd, stdout=subprocess.PIPE,  # type: ignore[call-overload]
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    new: list[str] = []
    _wait(
        lambda: proc.poll() is not None or bool(new.extend(set(_fuse_mounts()) - before) or new), 60
    )
    result: dict[str, object] = {"argv": step["argv"], "mounted": new[0] if new else None}
    if new:
        if step["then"]:
            then = subprocess.run(["bash", "-ec", "\n".join(step["then"])], cwd=cwd,  # type: ignore[arg-type]
                                  capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
            result["then_output"], result["then_returncode"] = (
                then.stdout + then.stderr,
                then.returncode,
            )
        else:
            try:
                result["then_output"] = _read_all(new[0])
            except OSError as exc:
                result["then_output"], result["then_returncode"] = str(exc), 1
        if not _wait(lambda: proc.poll() is not None, 0.5):
            os.killpg(proc.pid, signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    result.update(returncode=proc.returncode, output=output)
    return result


def _fresh_tmp(work: Path, keep: list[str]) -> None:
    """A new tmpfs on /tmp, with the paths in ``keep`` (under the old /tmp) bound back."""
    old = work / "old-tmp"
    if keep:
        old.mkdir()
        subprocess.run(["mount", "--rbind", "/tmp", str(old)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/tmp"], check=True)
    for path in keep:
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "--bind", str(old / Path(path).relative_to("/tmp")), path],
                       check=True)  # fmt: skip


def _main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    _fresh_tmp(Path(plan["work"]), [p for p in plan["keep"] if Path(p).is_relative_to("/tmp")])
    results = []
    for step in plan["steps"]:
        cwd = step["cwd"] or plan["work"]
        if step["daemon"]:
            results.append(_run_daemon(step, cwd))
        else:
            proc = subprocess.run(step["argv"], cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=60, check=False)  # fmt: skip
            results.append(
                {"argv": step["argv"], "returncode": proc.returncode, "output": proc.stdout}
            )
    left = _fuse_mounts()
    if left:
        print(f"still mounted after the blocks ran: {left}", file=sys.stderr)
        return 1
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
