"""Start mfusepy's examples/loopback.py ``Loopback`` class, unmodified, with timeouts 0.

    python benchmarks/_fusepy_loopback.py EXAMPLES_DIR SOURCE MOUNTPOINT [nothreads]

Run with the real mfusepy on the path, or under ``python -m
trio_fuse_uring.compat.fusepy`` (then ``import mfusepy`` is the shim). The example's own
command line takes no mount options, so this passes the same ones to both.
"""

import sys

examples, source, mountpoint = sys.argv[1:4]
sys.path.insert(0, examples)

import loopback  # noqa: E402
import mfusepy  # noqa: E402

mfusepy.FUSE(
    loopback.Loopback(source),
    mountpoint,
    foreground=True,
    entry_timeout=0,
    attr_timeout=0,
    nothreads=sys.argv[4:] == ["nothreads"],
)
