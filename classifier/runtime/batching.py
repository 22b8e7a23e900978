"""Dynamic micro-batching: one worker thread owns the queue and the forward passes.

Request threads ``submit`` preprocessed images and wait on a Future; a worker takes the
first waiting image, gathers more until ``max_batch_size`` or ``max_delay_s`` has passed,
runs them as one batch and resolves each Future. Several workers may share one queue (on a
CPU, one per core with one torch thread each: two single-threaded batches at once beat one
two-threaded batch). A full queue refuses at once (load shedding) instead of letting
latency grow without bound.

No more forward passes run at once than there are workers (``_passes``). With no wait for a
batch to fill (``max_delay_s`` 0), a request thread that finds no image waiting and a pass free
runs its one image itself (``run_now``): a worker would have taken it alone at once too, and the
two thread hand-offs (to the worker and back) are saved.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from .errors import BatcherClosed, Overloaded

logger = logging.getLogger(__name__)
_STOP = object()  # put once per worker by close(): that worker finishes what it has taken and exits


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    last_batch_size: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.images / self.batches if self.batches else 0.0


class MicroBatcher:
    def __init__(
        self,
        run_batch: Callable[[list[np.ndarray]], np.ndarray],
        *,
        max_batch_size: int,
        max_delay_s: float,
        queue_size: int,
        on_start: Callable[[], None] = lambda: None,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
        name: str = "batcher",
        workers: int = 1,
    ):
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._queue: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue(maxsize=queue_size)
        self._on_start = on_start
        self._on_batch = on_batch
        self.stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._closing = threading.Lock()  # a submit sees the batcher open and queues, or sees it closed
        self.closed = False
        self._passes = threading.Semaphore(workers)  # forward passes running now, the workers' and run_now's
        self._started = threading.local()  # whether on_start ran in this thread (run_now's callers)
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{index}", daemon=True) for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, pixels: np.ndarray) -> Future:
        """Queue one preprocessed image; the Future resolves to its probability row.

        Raises Overloaded when the queue is full.
        """
        future: Future = Future()
        with self._closing:
            if self.closed:
                raise BatcherClosed()
            try:
                self._queue.put_nowait((pixels, future))
            except queue.Full:
                raise Overloaded() from None
        return future

    def run_now(self, pixels: np.ndarray) -> np.ndarray | None:
        """Run one image in the calling thread when that is what a worker would do at once (no wait for a batch
        to fill, no image waiting, a forward pass free); its probability row, or None (then ``submit`` it).

        Raises BatcherClosed when the batcher was closed, and what the model raises."""
        if self.closed:
            raise BatcherClosed()
        if self.max_delay_s > 0 or self._queue.qsize() or not self._passes.acquire(blocking=False):
            return None
        try:
            if self.closed:
                raise BatcherClosed()
            if not getattr(self._started, "done", False):
                self._on_start()
                self._started.done = True
            started = time.perf_counter()
            row = self._run_batch([pixels])[0]
            self._count(1, time.perf_counter() - started)
            return row
        finally:
            self._passes.release()

    def submit_many(self, images: list[np.ndarray]) -> list[Future]:
        """Queue several preprocessed images back to back, so that a worker takes them as one batch.

        Raises Overloaded (and queues none of them) when the queue cannot take them all, BatcherClosed
        when the batcher was closed.
        """
        futures = []
        try:
            for pixels in images:
                futures.append(self.submit(pixels))
        except (Overloaded, BatcherClosed):
            for future in futures:
                future.cancel()
            raise
        return futures

    def close(self) -> None:
        """Refuse new images (BatcherClosed), answer every image already queued, then stop the workers and
        drop the model's references (``run_batch``), so that the model can be freed; returns once they stopped
        and no forward pass runs (run_now's included)."""
        with self._closing:
            if self.closed:
                return
            self.closed = True
            for _ in self._threads:
                self._queue.put(_STOP)  # type: ignore[arg-type]  # the one marker among the images: behind every queued image: those are answered first
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        if threading.current_thread() not in self._threads:
            for _ in self._threads:  # and every pass run_now started before the batcher closed has ended
                self._passes.acquire()
        self._run_batch = _closed_run_batch
        self._on_batch = lambda size, seconds: None

    def _collect(self) -> tuple[list[tuple[np.ndarray, Future]], bool]:
        """The next batch, and whether this worker took its stop marker (then it exits after this batch)."""
        items: list[tuple[np.ndarray, Future]] = []
        first = self._queue.get()
        if first is _STOP:
            return items, True
        items.append(first)
        stop = False
        deadline = time.monotonic() + self.max_delay_s
        while len(items) < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                stop = True
                break
            items.append(item)
        return [(pixels, future) for pixels, future in items if future.set_running_or_notify_cancel()], stop

    def _loop(self) -> None:
        self._on_start()
        stop = False
        while not stop:
            items, stop = self._collect()
            if not items:
                continue
            with self._passes:
                started = time.perf_counter()
                try:
                    probabilities = self._run_batch([pixels for pixels, _ in items])
                except BaseException as exc:  # noqa: BLE001 - an OOM or model error fails this batch only
                    logger.exception("inference failed on a batch of %d", len(items))
                    for _, future in items:
                        future.set_exception(exc)
                    continue
                elapsed = time.perf_counter() - started
            for row, (_, future) in zip(probabilities, items):
                future.set_result(row)
            self._count(len(items), elapsed)

    def _count(self, size: int, seconds: float) -> None:
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.images += size
            self.stats.last_batch_size = size
        self._on_batch(size, seconds)


def _closed_run_batch(images: list[np.ndarray]) -> np.ndarray:
    raise BatcherClosed()
