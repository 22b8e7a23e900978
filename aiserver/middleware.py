"""Wiring for Django's middleware chain under ASGI."""


class SyncChainMiddleware:
    """A sync-only no-op, placed last, so that Django runs the whole middleware chain in sync mode.

    Django builds the chain from the view outwards and keeps each middleware in the mode of the
    handler below it. Under ASGI that handler is async, so without this the middlewares that can
    do both (sessions, CSRF, auth, messages, ...) run async, and Django's ``MiddlewareMixin`` then
    calls each one's ``process_request`` / ``process_response`` through ``sync_to_async``: about 16
    thread hops per request instead of 3 (measured in docs/benchmarks.md).
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
