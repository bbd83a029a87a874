"""Compatibility layers: run programs written for other FUSE libraries unchanged.

``trio_fuse_uring.compat.pyfuse3`` is pyfuse3's API served by trio-fuse-uring;
``trio_fuse_uring.compat.fusepy`` is fusepy's and mfusepy's, on the path API.
"""
