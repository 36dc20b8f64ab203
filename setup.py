# Only wires the cffi extension; all metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
