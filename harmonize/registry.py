"""Discovery of workflow adapters through the ``harmonize.workflows`` entry-point group.

Built-in adapters are registered in harmonize's own ``pyproject.toml`` exactly as a
third-party package registers its own::

    [project.entry-points."harmonize.workflows"]
    mycentre = "mypackage.workflow:MyCentreWorkflow"

Discovery is cached (``refresh=True`` rescans). A plugin that fails to import, or is not a
:class:`~harmonize.workflow.WorkflowAdapter` subclass, is skipped with a warning; when two
entry points claim one name the first (sorted by distribution) wins, with a warning. An
unknown name raises with the list of installed names. Adapters can also be registered at
run time with :func:`register_workflow` (e.g. one written in a notebook).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import numpy as np

from harmonize._warnings import HarmonizeWarning
from harmonize.workflow import WorkflowAdapter, WorkflowError

if TYPE_CHECKING:
    import pandas as pd
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginWarning",
    "format_rows",
    "get_workflow",
    "list_workflows",
    "register_workflow",
    "workflows_rows",
    "workflows_table",
]

#: The entry-point group adapters register in.
ENTRY_POINT_GROUP = "harmonize.workflows"

_RUNTIME: dict[str, type[WorkflowAdapter]] = {}


class PluginWarning(HarmonizeWarning):
    """A workflow plugin was skipped (import error, wrong type, duplicate name)."""


@functools.cache
def _discover() -> dict[str, type[WorkflowAdapter]]:
    found: dict[str, type[WorkflowAdapter]] = {}
    points = sorted(
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (ep.dist.name if ep.dist else "", ep.name),
    )
    for ep in points:
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not break harmonize
            warnings.warn(
                f"workflow plugin {ep.name!r} ({ep.value}) failed to load and is skipped: "
                f"{type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        if not (isinstance(cls, type) and issubclass(cls, WorkflowAdapter)):
            warnings.warn(
                f"workflow plugin {ep.name!r} ({ep.value}) is not a WorkflowAdapter subclass; skipped",
                PluginWarning,
                stacklevel=3,
            )
            continue
        name = cls.name or ep.name
        if name in found:
            warnings.warn(
                f"two workflow plugins are named {name!r}: keeping {found[name].__module__}."
                f"{found[name].__qualname__}, skipping {ep.value}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        found[name] = cls
    return found


def list_workflows(refresh: bool = False) -> dict[str, type[WorkflowAdapter]]:
    """Installed workflow adapters by name (entry points plus run-time registrations)."""
    if refresh:
        _discover.cache_clear()
    merged = dict(_discover())
    merged.update(_RUNTIME)
    return dict(sorted(merged.items()))


def register_workflow(
    cls: type[WorkflowAdapter], *, replace: bool = False
) -> type[WorkflowAdapter]:
    """Register an adapter class at run time (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, WorkflowAdapter)):
        raise TypeError(f"register_workflow expects a WorkflowAdapter subclass, got {cls!r}")
    if not cls.name:
        raise WorkflowError(f"{cls.__qualname__} has no class attribute 'name'")
    if cls.name in list_workflows() and not replace and _RUNTIME.get(cls.name) is not cls:
        raise WorkflowError(
            f"a workflow named {cls.name!r} is already installed; pass replace=True"
        )
    _RUNTIME[cls.name] = cls
    return cls


def get_workflow(name: str) -> type[WorkflowAdapter]:
    """The adapter class registered as ``name``.

    Raises
    ------
    WorkflowError
        If no such workflow is installed; the message lists the installed names.
    """
    installed = list_workflows()
    try:
        return installed[name]
    except KeyError:
        raise WorkflowError(
            f"unknown workflow {name!r}; installed workflows: {', '.join(installed) or '(none)'}"
        ) from None


def workflows_rows() -> list[dict[str, Any]]:
    """Installed adapters with their metadata and tags, one dict each (no pandas needed)."""
    return [
        {
            "name": name,
            "center": cls.center,
            "version": cls.version,
            "voxel_level": cls.tags.voxel_level,
            "min_time_points": cls.tags.min_time_points,
            "needs_ct": cls.tags.needs_ct,
            "references": ", ".join(cls.references),
            "description": cls.description,
            "module": f"{cls.__module__}.{cls.__qualname__}",
        }
        for name, cls in list_workflows().items()
    ]


def workflows_table() -> pd.DataFrame:
    """Installed adapters with their metadata and tags, one row each."""
    return pd.DataFrame(workflows_rows())


def format_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``columns`` of ``rows`` as text, exactly as ``DataFrame.to_string(index=False)`` shows them.

    ``harmonize workflows`` prints its listing with this so that it need not import pandas
    (issue #17, start-up); ``tests/test_startup.py`` compares the two renderings. Supported
    values are those of :func:`workflows_rows`: strings, booleans and integers. pandas' rules
    for them (``pandas.io.formats.format``, ``index=False``): a column of only booleans or
    only integers is numeric and its header gets a leading space (the values none, without an
    index); any other column holds objects, written ``str(v)`` with tab, carriage return and
    newline escaped; every column is right-justified to its
    widest entry, header included, and columns are separated by one space.

    Raises
    ------
    TypeError
        For a value that is not a string, boolean or integer.
    """
    header, body = [], []
    for c in columns:
        values = [row[c] for row in rows]
        bad = [v for v in values if not isinstance(v, str | bool | int | np.bool_ | np.integer)]
        if bad:
            raise TypeError(
                f"format_rows formats str, bool and int values; column {c!r} has {bad[0]!r}"
            )
        if values and all(isinstance(v, bool | np.bool_) for v in values):
            header.append(f" {c}")
            body.append([str(bool(v)) for v in values])
        elif values and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in values
        ):
            header.append(f" {c}")
            body.append([str(int(v)) for v in values])
        else:
            header.append(str(c))
            body.append([_escape(str(v)) for v in values])
    widths = [max([len(h), *(len(v) for v in col)]) for h, col in zip(header, body, strict=True)]
    lines = [header, *([col[i] for col in body] for i in range(len(rows)))]
    return "\n".join(
        " ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in lines
    )


def _escape(text: str) -> str:
    return text.replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")
