# setuptools needs setup.py only to run cffi's build hook; all metadata is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["trio_fuse_uring/_ring_build.py:ffibuilder"])
