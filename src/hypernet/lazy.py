"""Module attributes resolved on first use, so importing a package stays cheap."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, table: dict[str, tuple[str, str]], namespace: dict):
    """A module-level `__getattr__` for `package` that imports `table[name]` =
    (module, attribute) on first access and caches it in the package's `namespace`."""

    def __getattr__(name: str):
        if name in table:
            module_name, attribute = table[name]
            value = getattr(importlib.import_module(module_name), attribute)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
