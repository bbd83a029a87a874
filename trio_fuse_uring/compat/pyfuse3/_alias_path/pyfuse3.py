# On PYTHONPATH, this makes `import pyfuse3` load trio_fuse_uring.compat.pyfuse3.
from trio_fuse_uring.compat.pyfuse3 import _alias

_alias.install()
_alias.replace_self("pyfuse3")
