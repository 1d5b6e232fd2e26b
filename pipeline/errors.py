"""The exception tree of sse-pipeline.

Every error the library raises on bad input or a failing upstream is one of these::

    PipelineError
    ├── FramingError                the byte stream breaks the event-stream rules
    ├── DecodeError                 an event's data is not the JSON we expect
    ├── ProtocolError               events arrive in an order the API never sends
    ├── ToolInputError              a tool_use block's input is not valid JSON
    ├── IncompleteStreamError       the stream ended before ``message_stop``
    ├── APIStreamError              an ``event: error`` from the API, typed per error type
    │   ├── OverloadedError         (``overloaded_error``)
    │   ├── RateLimitError          (``rate_limit_error``)
    │   ├── APIInternalError        (``api_error``)
    │   ├── InvalidRequestError     (``invalid_request_error``)
    │   ├── AuthenticationError     (``authentication_error``)
    │   ├── PermissionDeniedError   (``permission_error``)
    │   ├── NotFoundError           (``not_found_error``)
    │   └── RequestTooLargeError    (``request_too_large``)
    ├── StageError                  a user stage raised; ``.name``, cause = original
    └── SubscriberError             a subscriber raised; ``.name``, cause = original
        └── SubscriberOverflowError a subscriber with ``overflow="error"`` fell behind

Errors that happen after a message started carry ``.partial_message``: the message as
accumulated so far (a :class:`pipeline.Message`), so data already received is never lost.
Channel errors are anyio's own (``ClosedResourceError``, ``BrokenResourceError``,
``EndOfStream``, ``WouldBlock``) and are not wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .message import Message

__all__ = [
    "APIInternalError",
    "APIStreamError",
    "AuthenticationError",
    "DecodeError",
    "FramingError",
    "IncompleteStreamError",
    "InvalidRequestError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PipelineError",
    "ProtocolError",
    "RateLimitError",
    "RequestTooLargeError",
    "StageError",
    "SubscriberError",
    "SubscriberOverflowError",
    "ToolInputError",
    "api_stream_error",
]

_EXCERPT = 200


def excerpt(data: bytes | str, limit: int = _EXCERPT) -> str:
    """Return at most *limit* characters of *data*, marking a cut with an ellipsis."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[:limit] + "…"


class PipelineError(Exception):
    """Base class of every error raised by sse-pipeline.

    Attributes:
        partial_message: The message accumulated before the failure, when one had started.
    """

    partial_message: Message | None = None


class FramingError(PipelineError):
    """The byte stream cannot be split into server-sent events."""


class DecodeError(PipelineError):
    """An event's ``data`` could not be decoded into the event type it names.

    Attributes:
        event: The SSE event name (``None`` when the frame had none).
        data: At most 200 characters of the offending payload.
    """

    def __init__(self, event: str | None, data: bytes | str, reason: str) -> None:
        self.event = event
        self.data = excerpt(data)
        self.reason = reason
        super().__init__(f"cannot decode {event or 'unnamed'!s} event: {reason}; data: {self.data!r}")


class ProtocolError(PipelineError):
    """The events break the Messages streaming protocol (order, indices).

    Attributes:
        event: The ``type`` of the offending event.
    """

    def __init__(self, event: str, problem: str) -> None:
        self.event = event
        super().__init__(f"{event} {problem}")


class ToolInputError(PipelineError):
    """A ``tool_use`` block finished with input that is not valid JSON.

    Attributes:
        index: The content block index.
        tool_name: The tool's name.
        excerpt: At most 200 characters of the input JSON.
    """

    def __init__(self, index: int, tool_name: str, json_text: str, reason: str) -> None:
        self.index = index
        self.tool_name = tool_name
        self.excerpt = excerpt(json_text)
        super().__init__(
            f"invalid input JSON for tool {tool_name!r} in block {index}: {reason}; got {self.excerpt!r}"
        )


class IncompleteStreamError(PipelineError):
    """The byte stream ended before ``message_stop``.

    Pass ``allow_incomplete=True`` to ``open_stream`` to get the partial message as the
    final message instead, as the official SDK does.
    """

    def __init__(self, partial_message: Message | None, last_event: str | None) -> None:
        self.partial_message = partial_message
        self.last_event = last_event
        where = f"after {last_event}" if last_event else "before any event"
        super().__init__(f"stream ended without message_stop, {where}")


class APIStreamError(PipelineError):
    """The API sent an ``event: error`` in the middle of a stream.

    Attributes:
        error_type: The API's error type, e.g. ``"overloaded_error"``.
        message: The API's error message.
        body: The decoded ``data`` of the error event.
        partial_message: The message accumulated before the error, if any.
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        body: Any = None,
        partial_message: Message | None = None,
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.body = body
        self.partial_message = partial_message
        super().__init__(f"{error_type}: {message}")


class OverloadedError(APIStreamError):
    """The API is temporarily overloaded (``overloaded_error``)."""


class RateLimitError(APIStreamError):
    """The request hit a rate limit (``rate_limit_error``)."""


class APIInternalError(APIStreamError):
    """The API failed internally (``api_error``)."""


class InvalidRequestError(APIStreamError):
    """The API rejected the request (``invalid_request_error``)."""


class AuthenticationError(APIStreamError):
    """The API key was not accepted (``authentication_error``)."""


class PermissionDeniedError(APIStreamError):
    """The key may not use this resource (``permission_error``)."""


class NotFoundError(APIStreamError):
    """The requested resource does not exist (``not_found_error``)."""


class RequestTooLargeError(APIStreamError):
    """The request is too large (``request_too_large``)."""


_BY_TYPE: dict[str, type[APIStreamError]] = {
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitError,
    "api_error": APIInternalError,
    "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "request_too_large": RequestTooLargeError,
}


def api_stream_error(
    error_type: str, message: str, *, body: Any = None, partial_message: Message | None = None
) -> APIStreamError:
    """Build the :class:`APIStreamError` subclass that matches *error_type*."""
    cls = _BY_TYPE.get(error_type, APIStreamError)
    return cls(error_type, message, body=body, partial_message=partial_message)


class StageError(PipelineError):
    """A stage raised an exception; the original is the ``__cause__``.

    Attributes:
        name: The stage's name.
    """

    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        super().__init__(f"stage {name!r} failed: {type(error).__name__}: {error}")


class SubscriberError(PipelineError):
    """A subscriber's callback raised; the original is the ``__cause__``.

    Attributes:
        name: The subscriber's name.
    """

    def __init__(self, name: str, error: BaseException | None = None, *, detail: str | None = None) -> None:
        self.name = name
        if detail is None:
            detail = f"{type(error).__name__}: {error}"
        super().__init__(f"subscriber {name!r} failed: {detail}")


class SubscriberOverflowError(SubscriberError):
    """A subscriber with ``overflow="error"`` fell behind by more than its buffer."""

    def __init__(self, name: str, buffer: int) -> None:
        self.buffer = buffer
        super().__init__(name, detail=f"fell behind by more than {buffer} batches")
