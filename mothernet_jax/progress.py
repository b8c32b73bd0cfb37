"""A dependency-free progress bar for long work (training, benchmarks).

It writes to stderr, redraws in place on a terminal and prints a plain line every `every` updates
elsewhere (CI logs, notebooks), so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress(total, "train") as bar: bar.update(1, loss=0.5)`."""

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
        if every is None:
            every = 1 if self.interactive else max(1, (total or 100) // 20)
        self.every = every
        self._last_line = ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **fields: object) -> None:
        self.count += n
        self.fields.update(fields)
        if self.enabled and (self.count % self.every == 0 or self.count == self.total):
            self._draw()

    def _format_field(self, value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    def _draw(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            width = 24
            done = int(width * min(self.count, self.total) / self.total)
            bar = "#" * done + "." * (width - done)
            eta = (self.total - self.count) / rate if rate > 0 else float("nan")
            head = f"{self.desc} [{bar}] {self.count}/{self.total} {elapsed:.0f}s<{eta:.0f}s"
        else:
            head = f"{self.desc} {self.count} {elapsed:.0f}s"
        tail = " ".join(f"{k}={self._format_field(v)}" for k, v in self.fields.items())
        line = f"{head} {tail}".rstrip()
        if self.interactive:
            pad = max(0, len(self._last_line) - len(line))
            self.stream.write("\r" + line + " " * pad)
        else:
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.interactive and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
