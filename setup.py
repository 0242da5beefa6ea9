"""Only here for ``cffi_modules``, which pyproject.toml cannot express; all metadata is there."""

# Fail loudly without cffi: setuptools would otherwise just warn "Unknown distribution option:
# 'cffi_modules'" and build a wheel without the extension (see native/README.md, "Packaging").
import cffi  # noqa: F401
from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
