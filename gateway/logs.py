"""The gateway's log lines: `text` (one readable line, for `make demo` and people at a terminal) or `json`
(JSON lines for a log shipper: `time`, `level`, `logger`, `message`, `request_id`, `trace_id`, and for an
exception its type and traceback). `UCGW_LOG_FORMAT` chooses (docs/operating.md, "Logs and request ids").

`request_id` is the id of the request the line was written for (`gateway.http.request_ids.REQUEST_ID`, or a
record's own `request_id` given with `extra=`), null outside one. `trace_id` comes from the function given to
`configure_logging` (the tracing's current trace id, 32 hex digits), null without one. Nothing here adds
record values: a message is what the code wrote, and the code writes no A-number, name, birth date, address
or phone number into one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from gateway.http.request_ids import REQUEST_ID

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def no_trace() -> str | None:
    """The trace id hook while no tracing is wired: none."""
    return None


def _request_id(record: logging.LogRecord) -> str | None:
    given = record.__dict__.get("request_id")
    return given if isinstance(given, str) else REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `trace_id` reads the current trace id (None: no trace)."""

    def __init__(self, trace_id: Callable[[], str | None] = no_trace) -> None:
        super().__init__()
        self.trace_id = trace_id

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
                    + f".{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id(record),
            "trace_id": self.trace_id(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with ` [request_id]` (and ` trace=`) after the message when there is one."""

    def __init__(self, trace_id: Callable[[], str | None] = no_trace) -> None:
        super().__init__(TEXT_FORMAT)
        self.trace_id = trace_id

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id, trace_id = _request_id(record), self.trace_id()
        if request_id is None and trace_id is None:
            return text
        head, sep, rest = text.partition("\n")  # after the message, before a traceback
        tags = (f" request_id={request_id}" if request_id else "") + (f" trace_id={trace_id}" if trace_id else "")
        return head + tags + sep + rest


def configure_logging(log_format: str = "text", trace_id: Callable[[], str | None] = no_trace,
                      level: int = logging.INFO) -> None:
    """Every log line of the process (uvicorn's too, when its own config is turned off) to stderr in
    `log_format`; replaces whatever handlers the root logger had."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(trace_id) if log_format == "json" else TextFormatter(trace_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # theirs, if uvicorn configured them before
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
