"""Run a fusepy / mfusepy program unmodified on trio-fuse-uring.

    python -m trio_fuse_uring.compat.fusepy [--transport auto|uring|devfuse] SCRIPT [ARGS...]
    python -m trio_fuse_uring.compat.fusepy [--transport ...] -m MODULE [ARGS...]

``import fuse`` and ``import mfusepy`` in the program (and anything it imports) load
:mod:`trio_fuse_uring.compat.fusepy`; the program then runs as ``__main__`` with
``sys.argv`` set to ``SCRIPT ARGS...``, as ``python SCRIPT ARGS...`` would run it.
"""

from __future__ import annotations

import builtins
import os
import runpy
import sys
import types

from . import _fuse
from ._api import ClassicOperations

USAGE = __doc__.split("\n\n")[1]


def classic_module(shim: types.ModuleType) -> types.ModuleType:
    """The shim as ``fuse``: the same, with fusepy 3.0's ``Operations``."""
    module = types.ModuleType("fuse", shim.__doc__)
    module.__dict__.update({k: v for k, v in vars(shim).items() if not k.startswith("__")})
    module.Operations = ClassicOperations  # type: ignore[attr-defined]
    return module


def main(argv: list[str]) -> None:
    args = list(argv)
    if args[:1] == ["--transport"] and len(args) > 1:
        os.environ[_fuse.TRANSPORT_ENV] = args[1]
        del args[:2]
    elif args and args[0].startswith("--transport="):
        os.environ[_fuse.TRANSPORT_ENV] = args.pop(0).partition("=")[2]
    if not args or args[0] in ("-h", "--help") or (args[0] == "-m" and len(args) < 2):
        sys.stderr.write(f"usage:\n{USAGE}\n")
        sys.exit(2)
    shim = sys.modules[__package__ or "trio_fuse_uring.compat.fusepy"]
    sys.modules["mfusepy"] = shim
    sys.modules["fuse"] = classic_module(shim)
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        script = args[0]
        sys.argv = args
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        # As `python SCRIPT` has it (runpy would give the builtins dict, and some
        # fusepy examples test `hasattr(__builtins__, "bytes")`).
        runpy.run_path(script, {"__builtins__": builtins}, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
