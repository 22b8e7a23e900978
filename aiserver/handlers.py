"""Django's ASGI handler, made cheaper per request for sync views (measured in docs/benchmarks.md).

Django's own handler runs each request's sync code in a new thread (a fresh
``ThreadSensitiveContext`` makes a one-thread executor, and a second thread joins it at the
end), so a thread's database connection never outlives its request. Under ASGI it also builds
the middleware chain in async mode, so a chain of sync middlewares steps from its thread back
to the event loop and into the thread again before the view runs.

This handler keeps a pool of request threads, as a WSGI server does, and builds the chain in
sync mode, entered with one ``sync_to_async`` call. Each request still runs all its sync code
(signals, middlewares, view, closing the response) in one thread of its own, so Django's
thread-sensitivity rules hold; only the thread is reused, and with it the SQLite connection
(``CONN_MAX_AGE``, see settings).
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers import asgi
from django.db import connections


class RequestThreads:
    """One-thread executors lent to requests and taken back, newest first.

    There are as many as requests were ever in flight at once; at most ``keep`` wait idle,
    the rest close their database connections and end.
    """

    def __init__(self, keep: int):
        self.keep = keep
        self.started = 0
        self._idle: list[ThreadPoolExecutor] = []

    def lease(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()
        self.started += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{self.started}")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.keep:
            self._idle.append(executor)
        else:
            self._retire(executor)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        """End the idle threads, each closing its database connections first; waits for them."""
        while self._idle:
            self._retire(self._idle.pop(), wait=True)

    @staticmethod
    def _retire(executor: ThreadPoolExecutor, *, wait: bool = False) -> None:
        executor.submit(connections.close_all)
        executor.shutdown(wait=wait)


class ASGIHandler(asgi.ASGIHandler):
    """``django.core.handlers.asgi.ASGIHandler`` with pooled request threads and a sync chain."""

    def __init__(self, *, idle_threads: int = 64):
        self.threads = RequestThreads(keep=idle_threads)
        super().__init__()

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)  # every middleware and the view in sync mode, as under WSGI
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django refuses it, as before
        executor = self.threads.lease()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)
