"""Progress bars for long work (rich), silent when disabled or not on a terminal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TypeVar

__all__ = ["progress_iter"]

T = TypeVar("T")


def progress_iter(items: Sequence[T], description: str, *, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar when ``enabled``."""
    if not enabled:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


class DaskRichProgress:
    """A rich progress bar fed by Dask's local-scheduler callbacks (one tick per task).

    Used as a context manager around ``dask.compute`` with the synchronous or
    multiprocessing scheduler; counts the tasks whose key starts with ``prefix``.
    """

    def __init__(self, description: str, total: int, prefix: str = "_run_study") -> None:
        self.description = description
        self.total = total
        self.prefix = prefix

    def __enter__(self) -> DaskRichProgress:
        from dask.callbacks import Callback
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self._task = self._bar.add_task(self.description, total=self.total)
        prefix, bar, task = self.prefix, self._bar, self._task

        def posttask(
            key: object, result: object, dsk: object, state: object, worker_id: object
        ) -> None:
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith(prefix):
                bar.advance(task)

        self._callback = Callback(posttask=posttask)
        self._bar.__enter__()
        self._callback.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._callback.__exit__(exc_type, exc, tb)
        self._bar.__exit__(exc_type, exc, tb)
