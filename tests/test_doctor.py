"""``python -m trio_fuse_uring doctor`` and the transport fallback reasons.

Every branch is provoked on a simulated machine (a :class:`Host` whose paths point at
files made here), never by changing the real /dev/fuse or module parameter, which other
processes on the machine rely on. The real machine's branches run for real.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import trio
from helpers import REPO, require

import trio_fuse_uring as tfu
from trio_fuse_uring import _doctor, _uring_support
from trio_fuse_uring._abi import InitFlag
from trio_fuse_uring._doctor import Verdict
from trio_fuse_uring._mountlib import fusermount_hint, is_mountpoint
from trio_fuse_uring._uring_support import Host

NOBODY = 65534


def _no_extension() -> None:
    raise ModuleNotFoundError(
        "No module named 'trio_fuse_uring._ring_cffi'", name="trio_fuse_uring._ring_cffi"
    )


def _no_liburing_so() -> None:
    raise ImportError("liburing.so.2: cannot open shared object file: No such file or directory")


def _loads() -> None:
    pass


@pytest.fixture
def fake(tmp_path: Path) -> Host:
    """A machine where everything works: /dev/fuse is the real device node's twin."""
    param = tmp_path / "enable_uring"
    param.write_text("Y\n")
    mounts = tmp_path / "mounts"
    mounts.write_text("none /sys/fs/fuse/connections fusectl rw 0 0\n")
    return Host(
        kernel_release="6.18.0-test", enable_uring_param=str(param), proc_mounts=str(mounts),
        fusermount=shutil.which("fusermount3") or "/usr/bin/fusermount3", import_extension=_loads,
    )  # fmt: skip


def _verdicts(host: Host, euid: int = 0) -> dict[str, Check]:
    return {c.name: c for c in _doctor.run_checks(host, euid=euid, mounter=None)}


Check = _doctor.Check


def test_everything_ok_on_a_good_machine(fake: Host) -> None:
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.skip("needs /dev/fuse and fusermount3")
    checks = _verdicts(fake)
    assert {c.verdict for c in checks.values()} == {Verdict.OK}, checks


def test_enable_uring_off_says_how_and_how_to_keep_it(fake: Host) -> None:
    Path(fake.enable_uring_param).write_text("N\n")
    check = _verdicts(fake)["enable_uring"]
    assert check.verdict is Verdict.WARN
    assert f"echo Y > {fake.enable_uring_param}" in (check.fix or "")
    assert "/etc/modprobe.d/" in (check.fix or "")
    reason = _uring_support.unavailable_reason(InitFlag.OVER_IO_URING, fake)
    assert reason is not None and "enable_uring=N" in reason and "echo Y >" in reason


def test_enable_uring_on_says_whether_it_lasts(fake: Host, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 quiet\n")
    conf = tmp_path / "modprobe.d"
    conf.mkdir()
    host = Host(**{**fake.__dict__, "modprobe_dir": str(conf), "kernel_cmdline": str(cmdline)})
    check = _verdicts(host)["enable_uring"]
    assert check.verdict is Verdict.OK and "until reboot" in check.found
    assert check.line().endswith(
        "; to keep it: `echo 'options fuse enable_uring=1' > /etc/modprobe.d/fuse-uring.conf` "
        "(and, if fuse is built into the kernel, add fuse.enable_uring=1 to the kernel "
        "command line)"
    )
    (conf / "fuse-uring.conf").write_text("# on\noptions fuse enable_uring=1\n")
    check = _verdicts(host)["enable_uring"]
    assert check.found.endswith(f"(set at boot by {conf / 'fuse-uring.conf'})") and not check.fix
    (conf / "fuse-uring.conf").unlink()
    cmdline.write_text("quiet fuse.enable_uring=1\n")
    assert _verdicts(host)["enable_uring"].found.endswith(f"(set at boot by {cmdline})")


def test_old_kernel(fake: Host, tmp_path: Path) -> None:
    old = Host(kernel_release="6.8.0-51-generic", enable_uring_param=str(tmp_path / "absent"),
               proc_mounts=fake.proc_mounts, import_extension=_loads)  # fmt: skip
    checks = _verdicts(old)
    assert checks["kernel"].verdict is Verdict.WARN and "6.14" in checks["kernel"].found
    assert checks["enable_uring"].verdict is Verdict.WARN
    reason = _uring_support.unavailable_reason(InitFlag.OVER_IO_URING, old)
    assert reason == (
        "this kernel (6.8.0-51-generic) has no FUSE io-uring support: it needs Linux 6.14 or newer"
    )


def test_new_kernel_without_the_parameter_is_not_called_old(fake: Host, tmp_path: Path) -> None:
    host = Host(kernel_release="6.15.2", enable_uring_param=str(tmp_path / "absent"),
                import_extension=_loads)  # fmt: skip
    reason = _uring_support.unavailable_reason(InitFlag.OVER_IO_URING, host)
    assert reason is not None and "CONFIG_FUSE_IO_URING" in reason and "6.14 or newer" not in reason


def test_extension_not_built(fake: Host) -> None:
    host = Host(**{**fake.__dict__, "import_extension": _no_extension})
    check = _verdicts(host)["extension"]
    assert check.verdict is Verdict.WARN
    assert "built without its io-uring extension" in check.found
    assert "install liburing-dev" in check.found
    reason = _uring_support.unavailable_reason(InitFlag.OVER_IO_URING, host)
    assert reason == check.found


def test_extension_built_but_liburing_missing_at_run_time(fake: Host) -> None:
    host = Host(**{**fake.__dict__, "import_extension": _no_liburing_so})
    found = _verdicts(host)["extension"].found
    assert "installed but cannot load liburing" in found and "liburing2" in found
    assert "not built" not in found and "without" not in found


def test_kernel_not_offering_uring_in_init(fake: Host) -> None:
    assert _uring_support.unavailable_reason(0, fake) == (
        "the kernel did not offer FUSE_OVER_IO_URING in INIT"
    )
    assert _uring_support.unavailable_reason(InitFlag.OVER_IO_URING, fake) is None


def test_dev_fuse_missing_fails(fake: Host, tmp_path: Path) -> None:
    host = Host(**{**fake.__dict__, "dev_fuse": str(tmp_path / "fuse")})
    check = _verdicts(host)["/dev/fuse"]
    assert check.verdict is Verdict.FAIL and "modprobe fuse" in (check.fix or "")


def test_dev_fuse_not_a_device_fails(fake: Host, tmp_path: Path) -> None:
    (tmp_path / "fuse").write_text("")
    host = Host(**{**fake.__dict__, "dev_fuse": str(tmp_path / "fuse")})
    check = _verdicts(host)["/dev/fuse"]
    assert check.verdict is Verdict.FAIL and "mknod" in (check.fix or "")


def test_dev_fuse_mode_0600(fake: Host) -> None:
    """A device node twin of /dev/fuse with mode 0600: root is warned that others cannot
    mount; another uid, running the check itself, is told it cannot mount at all."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to make a device node and to become another uid")
    public = Path(tempfile.mkdtemp(prefix="tfu-", dir="/tmp"))
    try:
        public.chmod(0o755)
        node = public / "fuse"
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(10, 229))
        node.chmod(0o600)
        host = Host(**{**fake.__dict__, "dev_fuse": str(node)})
        check = _verdicts(host)["/dev/fuse"]
        assert check.verdict is Verdict.WARN and "chmod 666" in (check.fix or "")
        assert _doctor.check_dev_fuse(host, euid=NOBODY).verdict is Verdict.FAIL
        as_nobody = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-c",
             "import os, sys; from trio_fuse_uring import _doctor, _uring_support as u;"
             "print(_doctor.check_dev_fuse(u.Host(dev_fuse=sys.argv[1]), os.geteuid()).line())",
             str(node)],
            capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
        assert as_nobody.stdout.startswith("[FAIL] /dev/fuse: "), as_nobody.stdout
        assert f"not readable and writable by uid {NOBODY}" in as_nobody.stdout
        assert f"chmod 666 {node}" in as_nobody.stdout
    finally:
        shutil.rmtree(public)


def test_fusermount_missing(fake: Host, tmp_path: Path) -> None:
    host = Host(**{**fake.__dict__, "fusermount": str(tmp_path / "fusermount3")})
    assert _verdicts(host, euid=0)["fusermount3"].verdict is Verdict.WARN
    check = _verdicts(host, euid=NOBODY)["fusermount3"]
    assert check.verdict is Verdict.FAIL and "apt-get install fuse3" in (check.fix or "")


def test_fusermount_not_setuid(fake: Host, tmp_path: Path) -> None:
    copy = tmp_path / "fusermount3"
    copy.write_text("")
    copy.chmod(0o755)
    host = Host(**{**fake.__dict__, "fusermount": str(copy)})
    check = _verdicts(host, euid=NOBODY)["fusermount3"]
    assert check.verdict is Verdict.FAIL and "chmod u+s" in (check.fix or "")


def test_fusectl_not_mounted(fake: Host) -> None:
    Path(fake.proc_mounts).write_text("proc /proc proc rw 0 0\n")
    check = _verdicts(fake)["fusectl"]
    assert check.verdict is Verdict.WARN
    assert check.fix == "as root: `mount -t fusectl none /sys/fs/fuse/connections`"


def test_exit_code_and_one_line_per_check(fake: Host, tmp_path: Path, capsys) -> None:
    def broken_mount() -> tuple[str, str]:
        raise tfu.MountError(errno.EPERM, "simulated")

    assert _doctor.main([], fake, mounter=lambda: ("uring", "why")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and all(line.startswith("[  ok] ") for line in lines[:7]), lines
    assert _doctor.main([], fake, mounter=broken_mount) == 1
    assert "[FAIL] mount: uid" in capsys.readouterr().out
    host = Host(**{**fake.__dict__, "dev_fuse": str(tmp_path / "nope")})
    assert _doctor.main([], host, mounter=lambda: pytest.fail("mounted after a failure")) == 1


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_doctor_on_this_machine(user: str, tmp_path: Path) -> None:
    """The real checks and a real test mount, as root and as another uid."""
    require("devfuse")
    cmd = [sys.executable, "-m", "trio_fuse_uring", "doctor"]
    if user == "nobody":
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            pytest.skip("needs root to become another uid")
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    names = [line[7:].partition(":")[0] for line in lines[:-1]]
    assert names == ["kernel", "enable_uring", "/dev/fuse", "fusermount3", "fusectl",
                     "extension", "mount"], lines  # fmt: skip
    uid = 0 if user == "root" else NOBODY
    assert lines[6].startswith(f"[  ok] mount: uid {uid} mounted a test filesystem over "), lines
    expected = (
        "uring" if _uring_support.unavailable_reason(InitFlag.OVER_IO_URING) is None else "devfuse"
    )
    assert f" over {expected} (" in lines[6], lines


def test_usage() -> None:
    proc = subprocess.run([sys.executable, "-m", "trio_fuse_uring", "frobnicate"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2 and "usage: python -m trio_fuse_uring doctor" in proc.stderr


async def test_fallback_reason_reaches_the_mount(tmp_path: Path, monkeypatch) -> None:
    """A real mount with transport="auto" on a machine whose parameter is off (simulated)
    serves over /dev/fuse and says why; transport="uring" refuses with the same reason."""
    require("devfuse")
    param = tmp_path / "enable_uring"
    param.write_text("N\n")
    monkeypatch.setattr(_uring_support, "Host", lambda: Host(enable_uring_param=str(param)))
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    class Root(tfu.Operations):
        async def getattr(self, inode, ctx):
            return tfu.EntryAttributes(st_ino=1, st_mode=0o40755, st_nlink=2)

    with trio.fail_after(30):
        async with tfu.mount(Root(), mnt) as m:
            assert m.transport == "devfuse"
            assert "enable_uring=N" in m.transport_reason
            assert f"echo Y > {param}" in m.transport_reason
        with pytest.raises(tfu.UringUnavailable, match="enable_uring=N"):
            async with tfu.mount(Root(), mnt, tfu.Options(transport="uring")):
                pass


def test_fusermount_hints() -> None:
    assert "chmod 666 /dev/fuse" in (fusermount_hint(
        "fusermount3: failed to open /dev/fuse: Permission denied", "/m", already_mounted=False
    ) or "")  # fmt: skip
    hint = fusermount_hint("fusermount3: failed to access mountpoint /m: Permission denied",
                           "/m", already_mounted=True)  # fmt: skip
    assert hint is not None and "already" in hint and "fusermount3 -u /m" in hint
    hint = fusermount_hint("fusermount3: failed to access mountpoint /m: Permission denied",
                           "/m", already_mounted=False)  # fmt: skip
    assert hint is not None and "already" not in hint
    hint = fusermount_hint("fusermount3: option allow_other only allowed if 'user_allow_other' "
                           "is set in /etc/fuse.conf", "/m", already_mounted=False)  # fmt: skip
    assert hint is not None and "/etc/fuse.conf" in hint


def test_second_mount_by_the_same_user_says_already_mounted(tmp_path: Path) -> None:
    """Real fusermount3, as another uid: mounting twice at one path."""
    require("devfuse")
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("fusermount3"):
        pytest.skip("needs root (to become another uid), setpriv and fusermount3")
    base = Path(tempfile.mkdtemp(prefix="tfu-", dir="/tmp"))
    os.chmod(base, 0o755)
    mnt = base / "mnt"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    hello = str(REPO / "examples" / "hello.py")
    first = subprocess.Popen([*as_nobody, sys.executable, hello, str(mnt)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not is_mountpoint(str(mnt)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run([*as_nobody, sys.executable, hello, str(mnt)],
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert second.returncode != 0
        assert f"{mnt} is already a mount point" in second.stderr, second.stderr
        assert f"fusermount3 -u {mnt}" in second.stderr, second.stderr
    finally:
        subprocess.run([*as_nobody, "fusermount3", "-u", str(mnt)], check=False)
        first.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
