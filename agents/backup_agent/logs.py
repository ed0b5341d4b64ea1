"""Logging set-up: readable text for people, one JSON object per line for machines.

Structured fields are passed with ``extra=`` (service, job, snapshot, bytes,
duration_seconds) and appear in both formats. Messages pass through
``execute.mask`` so a secret can never reach a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from backup_agent.execute import mask

FIELDS = ("service", "task", "kind", "snapshot", "bytes", "bytes_added", "duration_seconds")


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        message = mask(record.getMessage())
        if record.exc_info and record.levelno >= logging.ERROR:
            message += "\n" + mask(self.formatException(record.exc_info))
        fields = {key: getattr(record, key) for key in FIELDS if hasattr(record, key)}
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        if self.as_json:
            entry = {"time": stamp, "level": record.levelname.lower(), "logger": record.name}
            return json.dumps({**entry, "msg": message, **fields}, default=str)
        extras = "".join(f" {key}={value}" for key, value in fields.items())
        return f"{stamp} {record.levelname:<7} {message}{extras}"


def setup(level: str = "INFO", as_json: bool = False) -> None:
    """Send logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
