"""Bounded read-ahead on a thread pool, shared by the verbs that decode many files
(`liss translate`, `liss data depth`): decoding overlaps the model without holding every
decoded image in memory at once."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, depth: int
             ) -> Iterator[tuple[T, Future[R]]]:
    """(item, future of fn(item)) in order, at most `depth` running ahead."""
    queue: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        queue.append((item, pool.submit(fn, item)))
        if len(queue) > depth:
            yield queue.popleft()
    yield from queue
