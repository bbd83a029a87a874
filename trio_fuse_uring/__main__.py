"""Command line: ``python -m trio_fuse_uring doctor [--no-mount]``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m trio_fuse_uring doctor [--no-mount]

doctor   check that FUSE and FUSE-over-io-uring can work here: kernel, enable_uring,
         /dev/fuse, fusermount3, fusectl, the io-uring extension, and a test mount as
         this user (skipped with --no-mount). One line per check with the command that
         fixes it; exits 1 if FUSE cannot work at all."""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "doctor" and set(argv[1:]) <= {"--no-mount"}:
        from ._doctor import main as doctor

        return doctor(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
