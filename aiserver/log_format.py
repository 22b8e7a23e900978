"""Structured logs (DJANGO_LOG_FORMAT=json): one JSON object per line for every log record.

Each line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, ``exception`` (the
traceback) when the record carries one, and the record's ``extra=`` fields, such as the request
line's request id, key prefix, route, method, status and latency (classifier.api.middleware).
"""

import datetime as dt
import json
import logging

# What every LogRecord has; anything else on a record came from ``extra=`` and is written as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A ``logging.Formatter`` writing each record as one line of JSON (configured in settings.LOGGING)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((name, value) for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class SkipServiceUnavailable(logging.Filter):
    """Drops django.request's record of a 503: the server says it on purpose (a model still loading, a store down,
    an overload), the cause is logged once where it happens, and a probe asking every few seconds would repeat it as
    an ERROR. The answer's own line (uvicorn's access log, aiserver.requests) still records each one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503
