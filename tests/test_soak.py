"""A short soak (tests/soak.py) per transport: fio with crc32c verification, 16 metadata
client threads, daemon RSS sampled. Set SOAK_SECONDS for a longer run (60 for the report)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import trio
from helpers import REPO

SOAK = REPO / "tests" / "soak.py"
SECONDS = int(os.environ.get("SOAK_SECONDS", "8"))


async def test_soak(transport):
    if shutil.which("fio") is None:
        pytest.skip("fio is not installed")
    cmd = [sys.executable, str(SOAK), "--seconds", str(SECONDS), "--transport", transport,
           "--fio-size", "16M" if SECONDS < 30 else "64M"]  # fmt: skip
    with trio.fail_after(SECONDS + 150):
        proc = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    out = proc.stdout.decode()
    assert out.strip(), proc.stderr.decode()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["failures"] == [], json.dumps(summary, indent=2)
    assert proc.returncode == 0
    assert summary["fio"]["bytes_verified"] > 0
    assert summary["meta"]["errors"] == 0 and summary["meta"]["ops"] > 1000
    assert summary["daemon"]["handler_failures"] == 0
    assert summary["daemon"]["requests"][transport] > 10_000
    assert summary["rss"]["growth_kib"] <= summary["rss"]["limit_kib"]
