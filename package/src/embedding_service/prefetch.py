"""Run a producer one step ahead of its consumer, in a background thread.

The model layer uses it to tokenise and pad the next window of texts while the device runs
the current one. Items arrive in the producer's order; at most `depth` wait finished. An
exception in the producer is raised in the consumer at the item where it happened, and
closing early (the consumer stopped at a deadline, or failed) stops the producer after its
current item, so nothing runs on after the call returns.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_ITEM, _ERROR, _DONE = "item", "error", "done"


class Prefetch(Generic[T]):
    """`with Prefetch(items) as ahead: for item in ahead: ...`"""

    def __init__(self, items: Iterable[T], depth: int = 1, name: str = "prefetch"):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def __enter__(self) -> "Prefetch[T]":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == _DONE:
                return
            if kind == _ERROR:
                raise value
            yield value

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item in hand first)."""
        self._stop.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(timeout=0.05)

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((_ITEM, item)):
                    return
        except BaseException as error:  # delivered to the consumer, raised there
            self._put((_ERROR, error))
            return
        self._put((_DONE, None))

    def _put(self, entry: tuple) -> bool:
        """Wait for room unless asked to stop; False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

