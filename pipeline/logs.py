"""Logging: structlog to stderr with secrets masked, for apps and the command line.

The library logs through structlog (retries, detached subscribers, worker jobs). structlog's
default configuration prints to stdout; an application that has not configured structlog
may call :func:`configure_logging` once at startup, or put :func:`redact_secrets` in its
own processor chain::

    pipeline.configure_logging(logging.INFO)
    # or
    structlog.configure(processors=[pipeline.redact_secrets, ..., structlog.processors.JSONRenderer()])

The library never logs the API key or request headers; the processor is a second line of
defence for what applications bind to their own log lines.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "SECRET_KEYS", "configure_logging", "redact_secrets"]

SECRET_KEYS: Final = frozenset({"x-api-key", "api-key", "authorization", "proxy-authorization"})
"""Keys whose values :func:`redact_secrets` masks, compared lower-cased with ``_`` as ``-``."""

REDACTED: Final = "[redacted]"
_KEY_PATTERN: Final = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
_MAX_DEPTH: Final = 8


def configure_logging(level: int = logging.WARNING, *, json: bool = False, file: TextIO | None = None) -> None:
    """Configure structlog: lines of *level* and above, secrets masked, to *file*.

    Args:
        level: The lowest level written (a :mod:`logging` level).
        json: One JSON object per line instead of the console format.
        file: Where lines go (default: ``sys.stderr``, so that stdout stays the program's).
    """
    renderer: Processor = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file or sys.stderr),
        cache_logger_on_first_use=False,
    )


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A structlog processor that masks secrets before anything renders them.

    The value of any key in :data:`SECRET_KEYS` (``x-api-key``, ``authorization``,
    ``api_key``, ...; any case, ``_`` or ``-``) becomes :data:`REDACTED`, at the top level
    and inside nested mappings, lists and tuples (``headers={...}``); nested containers are
    copied only when something in them is masked. Strings that contain an Anthropic API key
    (``sk-ant-...``) anywhere are masked too.

    Args:
        logger: The wrapped logger (unused).
        method_name: The log method's name (unused).
        event_dict: The event dict; its top level is changed in place.

    Returns:
        The event dict.
    """
    for key, value in event_dict.items():
        event_dict[key] = REDACTED if _is_secret(key) else _scrub(value, 0)
    return event_dict


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "-") in SECRET_KEYS


def _scrub(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _KEY_PATTERN.sub(REDACTED, value) if "sk-ant-" in value else value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        changed = False
        items: list[tuple[Any, Any]] = []
        for k, v in value.items():
            new = REDACTED if _is_secret(k) else _scrub(v, depth + 1)
            changed = changed or new is not v
            items.append((k, new))
        return dict(items) if changed else value
    if isinstance(value, (list, tuple)):
        scrubbed = [_scrub(v, depth + 1) for v in value]
        if all(new is old for new, old in zip(scrubbed, value, strict=True)):
            return value
        return tuple(scrubbed) if isinstance(value, tuple) else scrubbed
    return value
