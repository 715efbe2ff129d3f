"""structlog configured for JSON lines (or console in dev) with the request id and
trace id of the current request bound from context variables.

Everything goes through one stdlib handler with structlog's ProcessorFormatter,
so logs from uvicorn, grpc or sqlalchemy come out in the same format as ours.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_HANDLER_NAME = "chatmesh"
# Loggers that install their own handlers; they must propagate to ours instead.
_FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is *now* (pytest and daemons swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _add_service(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def configure_logging(service: str, *, level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and stdlib logging once per process.

    Calling it again replaces the previous configuration (no duplicate lines).
    """
    level_no = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so a later configure_logging() reaches loggers already in use.
        cache_logger_on_first_use=False,
    )
    renderer: list[Processor]
    if fmt == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer()]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    for name in _FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
