"""The optional compiled hot path of the writer (rldk/writer/_hotpath.c).

Everything else is in pyproject.toml. Without a C compiler the build warns and goes
on: the writer then runs the same logic in pure Python.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("rldk.writer._hotpath", ["src/rldk/writer/_hotpath.c"], optional=True)])
