"""The package as a user gets it: a wheel from ``scripts/build-wheel.sh`` and a source
build on a machine without liburing, each installed into a fresh venv of Debian's python3
outside the repository and used from a directory where the checkout is not importable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, require
from markdown_blocks import DETACH_FUSE_COPIES

from trio_fuse_uring._mountlib import is_mountpoint

SYSTEM_PYTHON = "/usr/bin/python3"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc  # type: ignore[no-any-return]


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A venv of Debian's python3 with ``wheel`` (and its dependencies) installed."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"needs {SYSTEM_PYTHON}")
    _run([SYSTEM_PYTHON, "-m", "venv", str(where)])
    python = where / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=where)
    return python


def _outside(tmp: Path) -> Path:
    """A working directory where only the installed package is importable."""
    work = tmp / "work"
    work.mkdir()
    return work


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ as ``scripts/build-wheel.sh`` writes it (here into a temporary directory)."""
    out = tmp_path_factory.mktemp("dist")
    _run([str(REPO / "scripts" / "build-wheel.sh"), str(out)],
         env=dict(os.environ, PYTHON=sys.executable))  # fmt: skip
    return out


def test_wheel_is_abi3_manylinux_and_carries_license(built: Path) -> None:
    (wheel,) = built.glob("*.whl")
    assert "-cp311-abi3-manylinux_" in wheel.name, wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "trio_fuse_uring/_ring_cffi.abi3.so" in names, names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    assert b"License-Expression: MIT" in meta
    (sdist,) = built.glob("*.tar.gz")
    assert sdist.name == wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".tar.gz"


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "mnt"
    d.mkdir()
    yield d
    if is_mountpoint(str(d)):
        subprocess.run(["umount", "-l", str(d)], check=False)


def _wait_mounted(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not is_mountpoint(str(path)):
        if proc.poll() is not None:
            pytest.fail(f"daemon exited {proc.returncode}: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("daemon did not mount within 30 s")
        time.sleep(0.05)


def test_installed_wheel_mounts_memfs_over_uring(built: Path, tmp_path: Path, mnt: Path) -> None:
    require("uring")
    (wheel,) = built.glob("*.whl")
    python = _fresh_venv(tmp_path / "venv", wheel)
    work = _outside(tmp_path)
    shutil.copy(REPO / "examples" / "memfs.py", work)

    where = _run([str(python), "-c", "import trio_fuse_uring._ring_cffi as m; print(m.__file__)"],
                 cwd=work).stdout.strip()  # fmt: skip
    assert where.startswith(str(tmp_path / "venv")), where
    ldd = _run(["ldd", where]).stdout
    assert "liburing" not in ldd, ldd

    doctor = subprocess.run([str(python), "-m", "trio_fuse_uring", "doctor"], cwd=work,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "[  ok] extension: the io-uring extension loads" in doctor.stdout
    assert "mounted a test filesystem over uring" in doctor.stdout

    proc = subprocess.Popen([str(python), "memfs.py", str(mnt), "--transport", "uring"],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_mounted(mnt, proc)
        (mnt / "greeting").write_text("hello from the wheel\n")
        assert (mnt / "greeting").read_text() == "hello from the wheel\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    stats = json.loads(out.splitlines()[-1])
    assert stats["transport"] == "uring", stats
    assert not is_mountpoint(str(mnt))


def test_source_build_without_liburing_degrades_to_devfuse(tmp_path: Path) -> None:
    """liburing's header hidden in a private mount namespace (nothing else sees it): the
    build says so once at pip's default verbosity, the install works, and every run-time
    message says what to do."""
    require("devfuse")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to hide liburing.h from the build")
    out = tmp_path / "wheels"
    build = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-ec",
         f'{DETACH_FUSE_COPIES}; mount --bind /dev/null /usr/include/liburing.h && '
         'exec "$0" -m pip wheel --no-deps -w "$1" "$2"',
         sys.executable, str(out), str(REPO)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    said = (build.stdout + build.stderr).count("building WITHOUT the io-uring extension")
    assert said == 1, build.stdout + build.stderr
    (wheel,) = out.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name

    python = _fresh_venv(tmp_path / "venv", wheel)
    work = _outside(tmp_path)
    doctor = _run([str(python), "-m", "trio_fuse_uring", "doctor"], cwd=work).stdout
    missing = "was built without its io-uring extension"
    assert f"[warn] extension: this installation of trio-fuse-uring {missing}" in doctor, doctor
    assert "install liburing-dev" in doctor, doctor
    # A real mount falls back and says why.
    assert (
        f"over devfuse (io-uring unavailable: this installation of trio-fuse-uring {missing}"
        in doctor
    ), doctor


def test_editable_install_is_visible_to_mypy(tmp_path: Path) -> None:
    """bootstrap's editable install is a plain path entry, which type checkers follow
    (setuptools' default for this layout is an import hook that mypy cannot see)."""
    import trio_fuse_uring

    if not Path(trio_fuse_uring.__file__).is_relative_to(REPO):
        pytest.skip("the package is not installed from this checkout in editable mode")
    pytest.importorskip("mypy", reason="the lint extra")
    (tmp_path / "use.py").write_text("import trio_fuse_uring as tfu\nreveal_type(tfu.mount)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "use.py"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Revealed type is" in proc.stdout and "def (ops:" in proc.stdout, proc.stdout
