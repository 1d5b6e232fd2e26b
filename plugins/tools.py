"""Tool dispatcher: run the client tools a message calls, and build the results to send back.

::

    tools = ToolDispatcher()

    @tools.tool
    async def get_weather(city: str, unit: str = "celsius") -> str: ...

    async with tools:                                   # owns the tool calls' task group
        async with pipeline.open_stream(source, subscribers=[tools]) as stream:
            message = await stream.get_final_message()
    # leaving `async with tools` waited for every call
    next_turn = {"role": "user", "content": tools.tool_result_blocks()}

**Calling convention.** When a ``tool_use`` block completes, the function registered under
its name is called with the parsed input: ``await fn(**input)`` when the input is a JSON
object (the API always sends one; an empty input calls ``fn()``), ``await fn(input)``
otherwise. Unknown arguments are a ``TypeError``, reported like any tool error.

**Concurrency.** ``on_content_block`` is async, so the dispatcher is an async subscriber:
it runs in its own task behind the stream's bounded buffer (keep the default
``overflow="block"``: a dropped block would be a tool call never made). It only starts each
call, as a task of the dispatcher's own task group, so a call starts as soon as its block
completes, while the rest of the message still streams, and calls run concurrently
(at most ``limit`` at once, if given). Leaving ``async with dispatcher`` waits for them;
cancelling it cancels them.

**Errors.** A tool that raises, or a name with no tool, gives a :class:`ToolResult` with
``is_error`` true and the exception kept (and a structlog warning); it never fails the
stream. :meth:`ToolDispatcher.results` lists the results in block order.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, final, overload

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup

import pipeline

__all__ = ["ToolDispatcher", "ToolResult", "UnknownToolError", "tool_result_blocks"]

ToolFunction = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=ToolFunction)

_log = structlog.get_logger("plugins.tools")


class UnknownToolError(LookupError):
    """The model called a tool that is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no tool named {name!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call.

    Attributes:
        tool_use_id: The ``id`` of the ``tool_use`` block.
        name: The tool's name.
        input: The input it was called with.
        output: What the tool returned (``None`` on error).
        error: The exception it raised (an :class:`UnknownToolError` for an unknown name),
            or ``None``.
    """

    tool_use_id: str
    name: str
    input: Any
    output: Any = None
    error: BaseException | None = None

    @property
    def is_error(self) -> bool:
        """Whether the call failed."""
        return self.error is not None

    def to_block(self) -> dict[str, Any]:
        """The ``tool_result`` content block for the next request.

        ``content`` is the output when it is a string or a list of content blocks (dicts
        with a ``type``), its JSON text otherwise (``str()`` if it is not JSON), absent for
        ``None``; for an error, ``"ExceptionType: message"``.
        """
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": self.tool_use_id}
        if self.error is not None:
            text = str(self.error)
            block["content"] = f"{type(self.error).__name__}: {text}" if text else type(self.error).__name__
        elif self.output is not None:
            block["content"] = _content(self.output)
        block["is_error"] = self.is_error
        return block


def tool_result_blocks(results: Iterable[ToolResult]) -> list[dict[str, Any]]:
    """The ``tool_result`` content blocks of *results*, in their order (see :meth:`ToolResult.to_block`)."""
    return [result.to_block() for result in results]


@final
class ToolDispatcher:
    """Registered async tools, called when the model's ``tool_use`` blocks complete.

    Use it as an async context manager around the stream, and as the stream's subscriber
    (see the module doc). Entering it again starts a new set of results.

    Args:
        limit: At most this many calls at once (default: no limit).
    """

    __slots__ = ("_tools", "_limit", "_limiter", "_tg", "_slots", "_pending", "_idle")

    def __init__(self, *, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._tools: dict[str, ToolFunction] = {}
        self._limit = limit
        self._limiter: anyio.CapacityLimiter | None = None
        self._tg: TaskGroup | None = None
        self._slots: list[ToolResult | None] = []
        self._pending = 0
        self._idle: anyio.Event | None = None

    # ------------------------------------------------------------------ registering

    def register(self, name: str, fn: ToolFunction) -> None:
        """Register the async function *fn* as the tool *name*.

        Raises:
            TypeError: *fn* is not an async function.
            ValueError: *name* is empty or already registered.
        """
        if not name:
            raise ValueError("a tool needs a name")
        if name in self._tools:
            raise ValueError(f"a tool named {name!r} is already registered")
        if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)):
            raise TypeError(f"tool {name!r} must be an async function, got {fn!r}")
        self._tools[name] = fn

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def tool(self, fn: Any = None, *, name: str | None = None) -> Any:
        """Register a tool by decorating it: ``@dispatcher.tool`` or ``@dispatcher.tool(name="x")``.

        The tool's name defaults to the function's ``__name__``.
        """

        def decorate(function: F) -> F:
            self.register(name or function.__name__, function)
            return function

        return decorate(fn) if fn is not None else decorate

    @property
    def tools(self) -> Mapping[str, ToolFunction]:
        """The registered tools, by name (read-only)."""
        return MappingProxyType(self._tools)

    # ------------------------------------------------------------------ running

    async def __aenter__(self) -> ToolDispatcher:
        if self._tg is not None:
            raise RuntimeError("this ToolDispatcher is already in use")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg, self._slots, self._pending, self._idle = tg, [], 0, anyio.Event()
        self._limiter = anyio.CapacityLimiter(self._limit) if self._limit is not None else None
        self._idle.set()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        return await tg.__aexit__(exc_type, exc, tb)

    async def on_content_block(self, block: pipeline.ContentBlock) -> None:
        """Start the call of a completed ``tool_use`` block (other blocks are ignored).

        Raises:
            RuntimeError: The dispatcher is not entered (``async with dispatcher``).
        """
        if not isinstance(block, pipeline.ToolUseBlock):
            return
        if self._tg is None:
            raise RuntimeError("enter the dispatcher (`async with dispatcher:`) around the stream")
        slot = len(self._slots)
        self._slots.append(None)
        if self._pending == 0:
            self._idle = anyio.Event()
        self._pending += 1
        self._tg.start_soon(self._call, slot, block, name=f"tool {block.name} {block.id}")

    async def _call(self, slot: int, block: pipeline.ToolUseBlock) -> None:
        name, args = block.name, block.input
        try:
            fn = self._tools.get(name)
            if fn is None:
                raise UnknownToolError(name)
            if self._limiter is not None:
                async with self._limiter:
                    output = await _invoke(fn, args)
            else:
                output = await _invoke(fn, args)
        except Exception as exc:
            _log.warning("tool_failed", tool=name, tool_use_id=block.id, error=repr(exc))
            self._slots[slot] = ToolResult(block.id, name, args, error=exc)
        else:
            self._slots[slot] = ToolResult(block.id, name, args, output)
        finally:
            self._pending -= 1
            if self._pending == 0 and self._idle is not None:
                self._idle.set()

    async def wait(self) -> None:
        """Wait until every call started so far has finished (without leaving the block)."""
        if self._pending and self._idle is not None:
            await self._idle.wait()

    @property
    def pending(self) -> int:
        """Calls started and not finished yet."""
        return self._pending

    def results(self) -> list[ToolResult]:
        """The finished calls, in block order (all of them once ``async with`` is left)."""
        return [result for result in self._slots if result is not None]

    def tool_result_blocks(self) -> list[dict[str, Any]]:
        """The ``tool_result`` content blocks of :meth:`results`, for the next user message."""
        return tool_result_blocks(self.results())


async def _invoke(fn: ToolFunction, args: Any) -> Any:
    if args is None:
        return await fn()
    if isinstance(args, dict):
        return await fn(**args)
    return await fn(args)


def _content(output: Any) -> Any:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and output and all(isinstance(b, dict) and "type" in b for b in output):
        return output
    try:
        return msgspec.json.encode(output).decode()
    except (TypeError, ValueError):
        return str(output)
