"""A node's log file, rotated by size, and one line (not a traceback) for errors that are the client's.

`pygmy up` names each child's log file in `PYGMY_LOG_FILE` (and points the child's stdout and stderr at
it too, for output that bypasses logging, such as a crash's traceback). The file is rotated at
`PYGMY_LOG_MAX_BYTES` (default 10 MiB), keeping 5 old files; after each rotation stdout and stderr are
moved to the new file, so nothing keeps writing into a rotated one.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

LOG_FILE_ENV = "PYGMY_LOG_FILE"
MAX_BYTES_ENV = "PYGMY_LOG_MAX_BYTES"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5


class NodeLogFile(logging.handlers.RotatingFileHandler):
    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)


class ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a malformed request (bad header, broken chunk) with a traceback at ERROR; it is the
    client's error, not ours: one INFO line that says what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError):
            # aiohttp reading what is left of a broken body after the 400 went out: the error middleware
            # has logged this request's line already.
            return False
        if isinstance(exc, HttpProcessingError):
            text = exc.message or exc
            record.msg = f"{record.getMessage()}: the client's request was malformed ({' '.join(str(text).split())})"
            record.args = None
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def log_handler() -> logging.Handler:
    """Where this process logs: its rotated node log file when `pygmy up` names one, else stderr."""
    path = os.environ.get(LOG_FILE_ENV)
    if not path:
        return logging.StreamHandler()
    max_bytes = int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))
    return NodeLogFile(path, maxBytes=max_bytes, backupCount=BACKUPS)
