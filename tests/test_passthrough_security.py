"""examples/passthrough.py mounted by root with allow_other, attacked by another user.

The rule: the daemon never acts with root's rights on an object the caller could not act
on with its own. The kernel checks permissions (``default_permissions``) against what it
cached: a name it saw missing, attributes it saw before SOURCE changed. Every attack
below makes that cache stale on purpose (long timeouts), changing SOURCE directly as
root, then asks through the mount as ``nobody``; each answer must be the one SOURCE
itself gives ``nobody`` now (what tmpfs and ext4 give), and root's files must stay
untouched.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from errno import EACCES, EEXIST, EPERM
from pathlib import Path

import pytest
from helpers import client
from passthrough import Passthrough

NOBODY = 65534

# Run as nobody: argv = [root fd of the mount, phase]; prints {"step": errno or 0}.
_ATTACKER = r"""
import errno, json, os, sys
root, phase = int(sys.argv[1]), sys.argv[2]
OWNED = json.loads(sys.argv[3])
os.umask(0)
out = {}

def attempt(step, fn):
    try:
        fn()
        out[step] = 0
    except OSError as exc:
        out[step] = exc.errno

def write_open(name, flags, mode=0o644):
    fd = os.open(name, flags, mode, dir_fd=root)
    try:
        if flags & os.O_ACCMODE:
            os.write(fd, b"pwned")
    finally:
        os.close(fd)

if phase == "prime":
    # Names the kernel now believes missing, files it believes to be nobody's.
    for name in ("pub/victim", "pub/target", "pub/victim_excl"):
        attempt("negative " + name, lambda: os.stat(name, dir_fd=root))
    for name in OWNED:
        attempt("create " + name, lambda: write_open("pub/" + name, os.O_CREAT | os.O_WRONLY))
else:
    O = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
    attempt("create over root's file", lambda: write_open("pub/victim", O))
    attempt("exclusive create", lambda: write_open("pub/victim_excl", O | os.O_EXCL))
    attempt("rename onto root's file", lambda: os.rename("pub/mine", "pub/target",
                                                         src_dir_fd=root, dst_dir_fd=root))
    # Each on its own file: a reply with fresh attributes would warn the kernel.
    P = f"/proc/self/fd/{root}/pub/"
    attempt("open for writing", lambda: write_open("pub/open", os.O_WRONLY))
    attempt("chmod", lambda: os.chmod(P + "chmod", 0o4777))
    attempt("chown to own group", lambda: os.chown(P + "chown", -1, os.getgid()))
    attempt("utimes", lambda: os.utime(P + "utimes", ns=(1, 1)))
    attempt("truncate", lambda: os.truncate(P + "truncate", 0))
    attempt("setxattr", lambda: os.setxattr(P + "setxattr", "user.x", b"1"))
    attempt("hard link", lambda: os.link(P + "link", P + "link2"))
    attempt("unlink", lambda: os.unlink(P + "unlink"))
    attempt("rename away", lambda: os.rename(P + "rename", P + "renamed"))
    # Created by nobody: nobody's, with every bit asked for (set-user-ID included).
    # (Read-only: a write by anyone without CAP_FSETID clears set-user-ID natively.)
    attempt("create set-user-ID", lambda: write_open("pub/suid", os.O_CREAT | os.O_RDONLY,
                                                     0o4755))
    attempt("mkdir", lambda: os.mkdir("pub/dir", 0o1750, dir_fd=root))
print(json.dumps(out))
"""


# Files nobody creates, which root then takes (chown root, mode 600) behind the kernel.
_TAKEN = ["open", "chmod", "chown", "utimes", "truncate", "setxattr", "link", "unlink", "rename"]


def _as_nobody(root_fd: int, phase: str) -> dict[str, int]:
    owned = json.dumps([*_TAKEN, "mine"])
    r = subprocess.run(
        [sys.executable, "-c", _ATTACKER, str(root_fd), phase, owned], pass_fds=[root_fd],
        user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    result: dict[str, int] = json.loads(r.stdout)
    return result


def _root_file(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    os.chown(path, 0, 0)
    os.chmod(path, mode)


@pytest.mark.parametrize("cls", [Passthrough])
async def test_stale_cache_gives_another_user_nothing(mount_ops, tmp_path, cls):
    src = tmp_path / "src"
    (src / "pub").mkdir(parents=True)
    os.chmod(src / "pub", 0o1777)  # like /tmp: anyone creates, only owners remove
    m = await mount_ops(cls(src), allow_other=True, entry_timeout=60, attr_timeout=60)
    root_fd = await client(os.open, m.mountpoint, os.O_PATH | os.O_DIRECTORY)
    try:
        primed = await client(_as_nobody, root_fd, "prime")
        assert primed == {
            "negative pub/victim": 2, "negative pub/target": 2, "negative pub/victim_excl": 2,
            **{f"create {name}": 0 for name in [*_TAKEN, "mine"]},
        }  # fmt: skip
        # Root changes SOURCE behind the kernel's back.
        pub = src / "pub"
        _root_file(pub / "victim", b"root data", 0o600)
        _root_file(pub / "victim_excl", b"root data", 0o644)
        _root_file(pub / "target", b"root data", 0o644)
        for name in _TAKEN:
            os.chown(pub / name, 0, 0)
            os.chmod(pub / name, 0o600)
        got = await client(_as_nobody, root_fd, "attack")
    finally:
        os.close(root_fd)
    assert got == {
        "create over root's file": EACCES,
        "exclusive create": EEXIST,
        "rename onto root's file": EPERM,  # sticky directory
        "open for writing": EACCES,
        "chmod": EPERM,
        "chown to own group": EPERM,
        "utimes": EPERM,
        "truncate": EACCES,
        "setxattr": EACCES,
        "hard link": EPERM,  # fs.protected_hardlinks
        "unlink": EPERM,  # sticky directory
        "rename away": EPERM,  # sticky directory
        "create set-user-ID": 0,
        "mkdir": 0,
    }
    for name in ("victim", "victim_excl", "target"):
        st = os.stat(pub / name)
        assert (pub / name).read_bytes() == b"root data", name
        assert (st.st_uid, st.st_gid) == (0, 0), name
    assert stat.S_IMODE(os.stat(pub / "victim").st_mode) == 0o600
    for name in _TAKEN:  # as root left them
        st = os.stat(pub / name)
        assert (st.st_uid, st.st_gid, st.st_mode, st.st_size) == (0, 0, 0o100600, 5), name
        assert st.st_mtime > 1 and os.listxattr(pub / name) == [], name
    assert not (pub / "link2").exists() and not (pub / "renamed").exists()
    assert (pub / "mine").exists()
    for name, mode in (("suid", stat.S_IFREG | 0o4755), ("dir", stat.S_IFDIR | 0o1750)):
        st = os.stat(pub / name)
        assert (st.st_uid, st.st_gid, st.st_mode) == (NOBODY, NOBODY, mode), (name, st)


_GROUP_MEMBER = r"""
import json, os, sys
root = int(sys.argv[1])
out = {}
for step, fn in (
    ("read group file", lambda: os.close(os.open("shared/g", os.O_RDONLY, dir_fd=root))),
    ("create in group dir", lambda: os.close(os.open("shared/new", os.O_CREAT | os.O_WRONLY,
                                                       0o600, dir_fd=root))),
    ("chgrp to own group", lambda: os.chown("shared/new", -1, 4242, dir_fd=root)),
):
    try:
        fn()
        out[step] = 0
    except OSError as exc:
        out[step] = exc.errno
print(json.dumps(out))
"""


async def test_supplementary_groups_count(mount_ops, tmp_path):
    """Acting as the caller includes its supplementary groups (what it may do natively)."""
    src = tmp_path / "src"
    (src / "shared").mkdir(parents=True)
    os.chown(src / "shared", 0, 4242)
    os.chmod(src / "shared", 0o770)
    _root_file(src / "shared" / "g", b"group data", 0o640)
    os.chown(src / "shared" / "g", 0, 4242)
    m = await mount_ops(Passthrough(src), allow_other=True)
    root_fd = await client(os.open, m.mountpoint, os.O_PATH | os.O_DIRECTORY)
    try:
        r = await client(
            functools.partial(
                subprocess.run, [sys.executable, "-c", _GROUP_MEMBER, str(root_fd)],
                pass_fds=[root_fd], user=NOBODY, group=NOBODY, extra_groups=[4242],
                capture_output=True, timeout=60,
            )
        )  # fmt: skip
    finally:
        os.close(root_fd)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout) == {
        "read group file": 0, "create in group dir": 0, "chgrp to own group": 0,
    }  # fmt: skip
    st = os.stat(src / "shared" / "new")
    assert (st.st_uid, st.st_gid) == (NOBODY, 4242)
