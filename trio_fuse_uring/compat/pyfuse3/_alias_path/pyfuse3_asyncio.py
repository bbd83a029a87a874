# On PYTHONPATH, this makes `import pyfuse3_asyncio` load pyfuse3's asyncio mode switch
# of trio_fuse_uring.compat.pyfuse3.
from trio_fuse_uring.compat.pyfuse3 import _alias

_alias.install()
_alias.replace_self("pyfuse3_asyncio")
