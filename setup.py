"""The optional compiled parts: the writer's hot path (rldk/writer/_hotpath.c) and the
PELT search of the detectors (rldk/detectors/_pelt.c).

Everything else is in pyproject.toml. Without a C compiler the build warns and goes
on: rldk then runs the same logic in pure Python.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("rldk.writer._hotpath", ["src/rldk/writer/_hotpath.c"], optional=True),
    Extension("rldk.detectors._pelt", ["src/rldk/detectors/_pelt.c"], optional=True),
])
