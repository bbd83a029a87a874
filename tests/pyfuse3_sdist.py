"""pyfuse3's own examples and test suite, fetched at test time (never committed).

The sdist of the pinned version comes from the package index (``pip download``) into
the git-ignored ``.cache/`` of the repository, once; its files are used unmodified.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "3.5.0"
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"


def sdist_dir(cache: Path = CACHE) -> tuple[Path | None, str]:
    """The unpacked ``pyfuse3-<VERSION>`` directory, or None and why it cannot be had."""
    root = cache / f"pyfuse3-{VERSION}"
    if (root / "test" / "test_fs.py").exists():
        return root, ""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cp = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"pyfuse3=={VERSION}", "-d", tmp],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        sdists = list(Path(tmp).glob("pyfuse3-*.tar.gz"))
        if cp.returncode != 0 or not sdists:
            tail = (cp.stderr or cp.stdout).strip().splitlines()[-1:] or ["no sdist"]
            return None, f"could not download the pyfuse3 {VERSION} sdist: {tail[0]}"
        with tarfile.open(sdists[0]) as tf:
            for member in tf.getmembers():  # (no extraction filters before 3.11.4)
                name = Path(member.name)
                if (
                    name.is_absolute()
                    or ".." in name.parts
                    or not (member.isfile() or member.isdir())
                ):
                    return None, f"the pyfuse3 sdist has an unsafe member {member.name!r}"
            tf.extractall(tmp)
        Path(tmp, f"pyfuse3-{VERSION}").rename(root)
    return root, ""
