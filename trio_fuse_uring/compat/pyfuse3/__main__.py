"""Run an unmodified pyfuse3 program on trio-fuse-uring.

    python -m trio_fuse_uring.compat.pyfuse3 [--transport auto|uring|devfuse] SCRIPT [ARGS...]

SCRIPT runs as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]``; its ``import pyfuse3``,
``import pyfuse3.asyncio`` and ``import pyfuse3_asyncio`` load this package. Its own
argument parsing, logging and exit status are unchanged. ``--alias-path`` prints a
directory to put on PYTHONPATH for programs that are started without this runner.
"""

from __future__ import annotations

import os
import runpy
import sys

from . import _alias
from ._api import TRANSPORT_ENV

USAGE = (
    "usage: python -m trio_fuse_uring.compat.pyfuse3 [--transport auto|uring|devfuse] "
    "SCRIPT [ARGS...]\n"
    "       python -m trio_fuse_uring.compat.pyfuse3 --alias-path\n"
)


def main(argv: list[str]) -> int:
    """Parse the runner's own options, then run the script; returns an exit status."""
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "--alias-path":
            print(_alias.ALIAS_PATH)
            return 0
        if opt in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if opt == "--transport" and args:
            value = args.pop(0)
        elif opt.startswith("--transport="):
            value = opt.partition("=")[2]
        else:
            sys.stderr.write(f"unknown option {opt!r}\n{USAGE}")
            return 2
        if value not in ("auto", "uring", "devfuse"):
            sys.stderr.write(f"--transport must be auto, uring or devfuse, not {value!r}\n")
            return 2
        # Through the environment, so that child processes of the program use it too.
        os.environ[TRANSPORT_ENV] = value
    if not args:
        sys.stderr.write(USAGE)
        return 2
    script = args[0]
    if not os.path.exists(script):
        sys.stderr.write(f"{script}: no such file\n")
        return 2
    _alias.install()
    # Child processes started as plain scripts (multiprocessing spawn, subprocess of
    # sys.executable) resolve pyfuse3 to this package too.
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _alias.ALIAS_PATH + (os.pathsep + path if path else "")
    sys.argv = args
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
