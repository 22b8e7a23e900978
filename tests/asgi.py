"""Calling an ASGI app in-process, the way uvicorn calls it (tests and bench.overhead)."""

import asyncio
import json


async def call(app, path, *, method="GET", headers=(), body=b""):
    """One HTTP request through the ASGI app: (status, decoded JSON body)."""
    sent, pending = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if pending:
            return pending.pop()
        await asyncio.Future()  # the client never disconnects; Django cancels this wait

    async def send(message):
        sent.append(message)

    scope = http_scope(path, method=method, headers=[(b"content-length", str(len(body)).encode()), *headers])
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def http_scope(path: str, *, method: str = "GET", headers=()) -> dict:
    """The HTTP scope uvicorn would pass for ``method path`` from 127.0.0.1, with a Host header and ``headers``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
