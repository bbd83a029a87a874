"""Build hook for the cffi io-uring extension; all metadata is in pyproject.toml.

Where liburing cannot be compiled against, the package is built without the extension
(it then serves over /dev/fuse only, and its fallback message says how to get io-uring)
rather than failing the whole install.
"""

import sys
import warnings
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "trio_fuse_uring"))
import _ring_build

# setuptools runs this file once per build step; say it once, when the wheel is built.
_BUILDING = {"bdist_wheel", "editable_wheel", "build_ext", "build", "develop", "install"}

library, why = _ring_build.liburing_link()
if library is None:
    if _BUILDING & set(sys.argv):
        # A warning, not a print: pip shows a build backend's warnings, not its output.
        warnings.warn(
            f"trio-fuse-uring: building WITHOUT the io-uring extension ({why}); it will serve "
            "over /dev/fuse only. For io-uring install liburing-dev (Debian, Ubuntu) or "
            "liburing-devel (Fedora) and reinstall.",
            stacklevel=1,
        )
    setup()
else:
    setup(
        cffi_modules=["trio_fuse_uring/_ring_build.py:make_ffibuilder"],
        # The extension uses only the stable ABI (cffi compiles with Py_LIMITED_API).
        options={"bdist_wheel": {"py_limited_api": "cp311"}},
    )
