"""Progress over long work: a live ``tqdm`` bar on a terminal, plain lines elsewhere.

When standard error is not a terminal (CI, ``> log``, a pipe), a bar's carriage-return updates would flood the
log (``make demo`` once wrote 83 KB of them); :class:`Progress` then prints one line at most every
``interval`` seconds instead, and nothing at all for work that finishes sooner.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: Seconds between two plain progress lines when the output is not a terminal.
LOG_INTERVAL = 30.0


class Progress(Iterable[T]):
    """Iterate over ``iterable``, showing progress when ``enabled``.

    Args:
        total: number of items, when ``iterable`` has no ``len``.
        desc: what is being done (the line's prefix).
        stream: where to write (default: standard error); a terminal gets a ``tqdm`` bar.
    """

    def __init__(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        desc: str = "",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL,
    ) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.interval = interval
        self.postfix: dict[str, str] = {}
        terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = (
            tqdm(iterable, total=self.total, desc=desc, leave=False, dynamic_ncols=True, file=self.stream)
            if enabled and terminal
            else None
        )
        self.lines = enabled and not terminal

    def __iter__(self) -> Iterator[T]:
        if self.bar is not None:
            yield from self.bar
            return
        start = last = time.perf_counter()
        for count, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if self.lines and now - last >= self.interval:
                last = now
                of = f"/{self.total}" if self.total is not None else ""
                rate = count / max(now - start, 1e-9)
                extra = "".join(f"  {k} {v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {count}{of}  {rate:.1f} it/s{extra}", file=self.stream, flush=True)

    def set_postfix(self, values: dict[str, str]) -> None:
        """Figures shown beside the count (a bar's postfix, or the end of each plain line)."""
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
