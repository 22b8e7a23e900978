"""How many pixels a process decodes at once: a semaphore weighted by pixels.

A decoded image costs memory in proportion to its pixels (Pillow holds RGB as 4 bytes a pixel, and a
conversion briefly holds a second copy), not to its compressed size: a 90 KB PNG can decode to 40
megapixels. Each image takes its pixel count from the budget before its pixels are decoded (the count
is in the header) and gives it back once it is preprocessed, so a process never holds more decoded
images than the budget, whatever the number of request threads.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Overloaded


class PixelBudget:
    """``capacity`` pixels shared by the threads of one process; whoever fits goes first.

    A request for more than the whole capacity is charged the whole capacity, so it waits for an
    empty budget rather than forever.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("a pixel budget needs a capacity of at least one pixel")
        self.capacity = capacity
        self.in_use = 0
        self._changed = threading.Condition()

    def acquire(self, pixels: int, *, timeout: float) -> bool:
        """Take ``pixels`` (at most the capacity) within ``timeout`` seconds; return whether it was taken."""
        pixels = min(pixels, self.capacity)
        with self._changed:
            if not self._changed.wait_for(lambda: self.in_use + pixels <= self.capacity, timeout):
                return False
            self.in_use += pixels
            return True

    def release(self, pixels: int) -> None:
        """Give back what ``acquire(pixels)`` took."""
        with self._changed:
            self.in_use -= min(pixels, self.capacity)
            self._changed.notify_all()

    @contextmanager
    def hold(self, pixels: int, *, timeout: float) -> Iterator[None]:
        """Hold ``pixels`` for the ``with`` block; raises Overloaded (503, Retry-After) if they cannot be
        had within ``timeout`` seconds."""
        if not self.acquire(pixels, timeout=timeout):
            raise Overloaded("The server is decoding as many pixels as it can hold; retry shortly.")
        try:
            yield
        finally:
            self.release(pixels)
