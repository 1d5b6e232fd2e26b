"""The exception tree of sse-pipeline.

Every error the library raises on bad input or a failing upstream is one of these::

    PipelineError
    ├── FramingError                the byte stream breaks the event-stream rules
    ├── DecodeError                 an event's data is not the JSON we expect
    ├── ProtocolError               events arrive in an order the API never sends
    ├── ToolInputError              a tool_use block's input is not valid JSON
    ├── IncompleteStreamError       the stream ended before ``message_stop``
    ├── SourceError                 reading the source failed (e.g. the connection was cut)
    ├── IdleTimeoutError            the source sent nothing for ``idle_timeout`` seconds
    ├── LimitExceededError          the stream went over one of its :class:`~pipeline.Limits`
    ├── APIConnectionError          the API could not be reached (before any event)
    │   └── APITimeoutError         the request timed out (before any event)
    ├── APIError                    the API reported an error, typed per error type: an
    │   │                           HTTP error answer before the body (``.status_code``), or an
    │   │                           ``event: error`` mid-stream (``.status_code`` is ``None``)
    │   ├── OverloadedError         (``overloaded_error``)
    │   ├── RateLimitError          (``rate_limit_error``)
    │   ├── APIInternalError        (``api_error``)
    │   ├── InvalidRequestError     (``invalid_request_error``)
    │   ├── AuthenticationError     (``authentication_error``)
    │   ├── PermissionDeniedError   (``permission_error``)
    │   ├── NotFoundError           (``not_found_error``)
    │   └── RequestTooLargeError    (``request_too_large``)
    ├── StageError                  a user stage raised; ``.name``, cause = original
    ├── SubscriberError             a subscriber raised; ``.name``, cause = original
    │   └── SubscriberOverflowError a subscriber with ``overflow="error"`` fell behind
    ├── JobCancelledError           a worker job was cancelled (``.job_id``, ``.reason``)
    └── WorkerClosedError           a job was submitted to a worker that is shutting down

``APIStreamError`` is another name of ``APIError``. Errors that happen after a message
started carry ``.partial_message``: the message as
accumulated so far (a :class:`pipeline.Message`), so data already received is never lost.
Channel errors are anyio's own (``ClosedResourceError``, ``BrokenResourceError``,
``EndOfStream``, ``WouldBlock``) and are not wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.message import Message

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIInternalError",
    "APIStreamError",
    "APITimeoutError",
    "AuthenticationError",
    "DecodeError",
    "FramingError",
    "IdleTimeoutError",
    "IncompleteStreamError",
    "InvalidRequestError",
    "JobCancelledError",
    "LimitExceededError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PipelineError",
    "ProtocolError",
    "RateLimitError",
    "RequestTooLargeError",
    "SourceError",
    "StageError",
    "SubscriberError",
    "SubscriberOverflowError",
    "ToolInputError",
    "WorkerClosedError",
    "api_error",
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


class SourceError(PipelineError):
    """Reading the source failed mid-stream (e.g. the connection was cut); the original
    exception is the ``__cause__`` and ``partial_message`` holds what arrived."""

    def __init__(self, error: BaseException, partial_message: Message | None = None) -> None:
        self.partial_message = partial_message
        super().__init__(f"reading the stream failed: {type(error).__name__}: {error}")


class IdleTimeoutError(PipelineError):
    """The source sent nothing for ``idle_timeout`` seconds; the stream was closed.

    Attributes:
        seconds: The idle timeout that expired.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no bytes for {seconds:g} s (idle_timeout)")


class LimitExceededError(PipelineError):
    """The stream went over one of its :class:`~pipeline.Limits`; it was closed.

    Attributes:
        limit: The name of the :class:`~pipeline.Limits` field, e.g. ``"max_blocks"``.
        value: That limit's value.
    """

    def __init__(self, limit: str, value: int, what: str) -> None:
        self.limit = limit
        self.value = value
        super().__init__(f"{what} exceeds {limit} ({value:,})")


class APIConnectionError(PipelineError):
    """The API could not be reached, or the connection failed before the body started.

    The original exception (usually an ``httpx.TransportError``) is the ``__cause__``.
    """


class APITimeoutError(APIConnectionError):
    """The request timed out before the body started."""


class APIError(PipelineError):
    """The API reported an error.

    Either the HTTP answer was an error (before any event: ``status_code`` is set and the
    request may have been retried), or an ``event: error`` arrived mid-stream
    (``status_code`` is ``None``, ``partial_message`` holds what arrived; never retried).

    Attributes:
        error_type: The API's error type, e.g. ``"overloaded_error"``.
        message: The API's error message.
        status_code: The HTTP status of an error answer; ``None`` for an error event.
        request_id: The ``request-id`` header, when known.
        body: The decoded error body (the raw text when an HTTP answer was not JSON; for an
            error event whose data was not the API's shape, an API-shaped body quoting it).
        partial_message: The message accumulated before an error event, if any.
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
        partial_message: Message | None = None,
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.partial_message = partial_message
        status = f"{status_code} " if status_code is not None else ""
        request = f" (request-id {request_id})" if request_id else ""
        super().__init__(f"{status}{error_type}: {message}{request}")


APIStreamError = APIError


class OverloadedError(APIError):
    """The API is temporarily overloaded (``overloaded_error``)."""


class RateLimitError(APIError):
    """The request hit a rate limit (``rate_limit_error``)."""


class APIInternalError(APIError):
    """The API failed internally (``api_error``)."""


class InvalidRequestError(APIError):
    """The API rejected the request (``invalid_request_error``)."""


class AuthenticationError(APIError):
    """The API key was not accepted (``authentication_error``)."""


class PermissionDeniedError(APIError):
    """The key may not use this resource (``permission_error``)."""


class NotFoundError(APIError):
    """The requested resource does not exist (``not_found_error``)."""


class RequestTooLargeError(APIError):
    """The request is too large (``request_too_large``)."""


_BY_TYPE: dict[str, type[APIError]] = {
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitError,
    "api_error": APIInternalError,
    "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "request_too_large": RequestTooLargeError,
}


_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def api_error(
    error_type: str | None,
    message: str,
    *,
    status_code: int | None = None,
    request_id: str | None = None,
    body: Any = None,
    partial_message: Message | None = None,
) -> APIError:
    """Build the :class:`APIError` subclass that matches *error_type* (or, when the body
    named none, the HTTP *status_code*)."""
    if not error_type:
        error_type = _BY_STATUS.get(status_code or 0, "api_error")
    cls = _BY_TYPE.get(error_type, APIError)
    return cls(
        error_type,
        message,
        status_code=status_code,
        request_id=request_id,
        body=body,
        partial_message=partial_message,
    )


def api_stream_error(
    error_type: str, message: str, *, body: Any = None, partial_message: Message | None = None
) -> APIError:
    """Build the error for an ``event: error`` mid-stream."""
    return api_error(error_type, message, body=body, partial_message=partial_message)


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


class JobCancelledError(PipelineError):
    """A :class:`~pipeline.worker.Worker` job was cancelled before it finished.

    It is the ``error`` of the job's :class:`~pipeline.worker.JobResult`, never raised by
    the worker itself; ``partial_message`` holds what the stream accumulated until then.

    Attributes:
        job_id: The job's id.
        reason: ``"cancelled"`` (``Worker.cancel``), ``"shutdown"`` (the shutdown deadline
            passed, or a queued job was dropped by the shutdown) or ``"aborted"`` (the
            worker was left by an exception or a cancellation).
    """

    def __init__(self, job_id: str, reason: str, partial_message: Message | None = None) -> None:
        self.job_id = job_id
        self.reason = reason
        self.partial_message = partial_message
        super().__init__(f"job {job_id!r} was cancelled ({reason})")


class WorkerClosedError(PipelineError):
    """A job was submitted to a :class:`~pipeline.worker.Worker` whose shutdown began."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"worker {name!r} is shutting down and takes no more jobs")
