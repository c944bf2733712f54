"""Dynamic batching across requests for an engine that runs whole batches (CTranslate2's Whisper).

Every window of every request is queued; one worker thread takes the oldest item and every queued item that may
share its batch (same BatchKey), runs them as one call, and hands each caller its result. While a batch runs, new
windows queue up, so the next batch is as large as the load: at concurrency 1 a request's own windows batch, at
concurrency 8 windows from all requests do. The head of the queue is always served next, so no group starves.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchKey:
    """What must be equal within one batch: the call (generate or detect), CTranslate2's prompt-shape rule
    (<|startoftranscript|> at the same index, as many task tokens after it), and the decoding options."""

    kind: str  # "generate" or "detect"
    sot_at: int = 0
    after_sot: int = 0
    temperature: float = 0.0
    max_length: int = 448
    seed: int | None = None  # sampled decodes: the RNG seed set before the batch (its windows share the stream)


@dataclass(eq=False)
class Work:
    key: BatchKey
    samples: np.ndarray
    prompt: list[int]
    # called once, from the worker thread, with the result or the exception
    settle: Callable[[Any], None]
    cancelled: bool = field(default=False)


def take_batch(queue: deque[Work], limit: int) -> list[Work]:
    """Remove and return the head of the queue and every later item with its key, in order, at most `limit`."""
    if not queue:
        return []
    key = queue[0].key
    batch: list[Work] = []
    rest: deque[Work] = deque()
    while queue:
        work = queue.popleft()
        if work.key == key and len(batch) < limit:
            batch.append(work)
        else:
            rest.append(work)
    queue.extend(rest)
    return batch


class Batcher:
    """One worker thread running `run(key, items) -> results` (one result per item, in order) over take_batch."""

    def __init__(self, run: Callable[[BatchKey, list[Work]], Sequence[Any]], max_batch: int, name: str = "batcher"):
        self._run, self.max_batch = run, max_batch
        self._queue: deque[Work] = deque()
        self._running = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> None:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher has stopped")
            self._queue.append(work)
            self._cond.notify()

    def cancel(self, work: Work) -> None:
        """A queued item is dropped; one already in a running batch finishes there and its result is ignored."""
        with self._cond:
            work.cancelled = True
            try:
                self._queue.remove(work)
            except ValueError:
                pass

    @property
    def pending(self) -> int:
        """Items queued or in the running batch (cancelled items in the running batch count until it ends)."""
        with self._cond:
            return len(self._queue) + self._running

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            dropped = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for work in dropped:
            work.settle(RuntimeError("the engine shut down"))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                batch = take_batch(self._queue, self.max_batch)
                self._running = len(batch)
            try:
                results: Sequence[Any] = self._run(batch[0].key, batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for {len(batch)} items")
            except Exception as exc:  # the batch failed: every caller in it gets the error, the worker goes on
                log.exception("batch of %d failed", len(batch))
                results = [exc] * len(batch)
            with self._cond:
                self._running = 0
            for work, result in zip(batch, results, strict=True):
                if not work.cancelled:
                    work.settle(result)


class EncoderCache:
    """Encoder outputs by window: a window's audio is encoded once, then reused by every temperature-fallback
    attempt. Keyed by the samples array itself (the same object the transcriber passes
    each time), dropped when that array is freed, and at most `capacity` entries (oldest first)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, samples: np.ndarray) -> Any | None:
        with self._lock:
            value = self._entries.get(id(samples))
            if value is not None:
                self._entries.move_to_end(id(samples))
            return value

    def put(self, samples: np.ndarray, value: Any) -> None:
        key = id(samples)
        with self._lock:
            fresh = key not in self._entries
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        if fresh:
            # id() is reused once the array is freed: forget its entry then
            weakref.finalize(samples, self._forget, key)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
