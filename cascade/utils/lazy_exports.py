"""Package names imported on first use (PEP 562), so importing a package stays light."""

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, names_by_module: dict[str, list[str]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: each name listed under a module of
    ``names_by_module`` is imported from that module the first time it is read, then kept in the package's
    namespace. (A name must not be the name of one of the package's modules: once that module is imported,
    Python sets the package attribute of that name to the module.)"""
    namespace = sys.modules[package].__dict__
    module_of = {name: module for module, names in names_by_module.items() for name in names}

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *module_of])

    return __getattr__, __dir__, sorted(module_of)
