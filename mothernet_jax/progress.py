"""The progress bar of long work (training, benchmarks): the library's one bar.

On a terminal it is a `rich.progress` bar redrawn in place; elsewhere (CI logs, notebooks, files)
it prints a plain line every `every` updates, so logs stay readable. It writes to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress(total, "train") as bar: bar.update(1, loss=0.5)`; `total=None`: no known end.

    `bar.rich` is the `rich.progress.Progress` drawing it on a terminal (None elsewhere)."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        *,
        stream: TextIO | None = None,
        every: int | None = None,
        enabled: bool = True,
    ):
        self.total = total
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.count = 0
        self.start = time.perf_counter()
        self.fields: dict[str, object] = {}
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else max(1, (total or 100) // 20)
        self.rich = None
        if enabled and self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.rich = RichProgress(*columns, TextColumn("{task.fields[info]}"), console=Console(file=self.stream))
            self._task = self.rich.add_task(desc, total=total, info="")
            self.rich.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **fields: object) -> None:
        self.count += n
        self.fields.update(fields)
        if self.rich is not None:
            self.rich.update(self._task, advance=n, info=self._tail())
        elif self.enabled and (self.count % self.every == 0 or self.count == self.total):
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def _tail(self) -> str:
        shown = lambda value: f"{value:.4g}" if isinstance(value, float) else str(value)
        return " ".join(f"{k}={shown(v)}" for k, v in self.fields.items())

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        if self.total:
            rate = self.count / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.count) / rate if rate > 0 else float("nan")
            done = int(24 * min(self.count, self.total) / self.total)
            head = f"{self.desc} [{'#' * done}{'.' * (24 - done)}] {self.count}/{self.total} {elapsed:.0f}s<{eta:.0f}s"
        else:
            head = f"{self.desc} {self.count} {elapsed:.0f}s"
        return f"{head} {self._tail()}".rstrip()

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()
            self.rich = None
