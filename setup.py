"""Only what pyproject.toml cannot say: the package ``cascade._data`` is the repository root (its package data
are weights_manifest.yaml and weights/demo), whose Python files (app.py, the Space's entry point) are not
modules of the package."""

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        return [] if package == "cascade._data" else super().find_package_modules(package, package_dir)


setup(cmdclass={"build_py": BuildPy})
