"""The quality bar as tests: the package is ruff clean, ruff formatted and mypy strict
clean, so that CI (which runs only pytest) refuses a change that breaks one of them.

The tools come with the `lint` extra, which `scripts/bootstrap.sh` installs."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> None:
    cp = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if cp.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` failed:\n{cp.stdout}{cp.stderr}", pytrace=False)


def test_ruff_check() -> None:
    _run("ruff", "check", ".")


def test_ruff_format() -> None:
    _run("ruff", "format", "--check", ".")


def test_mypy_strict() -> None:
    # The configuration ([tool.mypy] in pyproject.toml) says strict, and which files.
    _run("mypy")
