"""Heavy modules imported at their first use, not when harmonize's modules are imported.

``harmonize workflows`` and ``harmonize --help`` load the workflow adapters and the modules
they import, but use none of pandas, xarray or most of scipy (issue #17: start-up within 2×
of ``import numpy, scipy.optimize``). A module that needs one of them at run time binds a
:class:`LazyModule` under the usual name and imports the real module for the type checker::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        pd = lazy_module("pandas")

The first attribute access (``pd.DataFrame``) imports the module with the ordinary import
system and caches it; from then on the proxy only forwards attribute look-ups.
``tests/test_startup.py`` checks which heavy packages each command imports.

Why not ``lazy_loader`` (scientific-python) or the documented recipe of
:class:`importlib.util.LazyLoader`: both register the module in :data:`sys.modules` before
it is imported (so "is pandas imported?"
can no longer be asked of ``sys.modules``), and for a subpackage such as ``scipy.ndimage``
``lazy_loader`` imports the parent package at once and warns that it does (``RuntimeWarning``,
lazy_loader 0.6). This proxy imports nothing until an attribute is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "lazy_module"]


class LazyModule:
    """Stand-in for a module, imported on first attribute access."""

    __slots__ = ("_lazy_module", "_lazy_name")

    def __init__(self, name: str) -> None:
        self._lazy_name = name
        self._lazy_module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._lazy_module is None:
            self._lazy_module = importlib.import_module(self._lazy_name)
        return self._lazy_module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy_"):  # a slot not yet set (copy, unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self._lazy_module is not None else "not yet imported"
        return f"<lazy module {self._lazy_name!r} ({state})>"


def lazy_module(name: str) -> Any:
    """A :class:`LazyModule` for ``name`` (typed ``Any``: the caller types it by a real import)."""
    return LazyModule(name)
