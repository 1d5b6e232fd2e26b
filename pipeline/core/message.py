"""The final message and its content blocks.

A :class:`Message` and its blocks are views over the JSON the API sent, with the deltas
applied: every field the API sent is kept, including fields this version does not know,
and ``to_dict()`` returns exactly what the official SDK's ``get_final_message().to_dict()``
returns for the same bytes (fields the API omitted stay omitted). Typed properties give
the fields users read most.

These objects are built once per block and once per message, never per delta, so they are
plain classes rather than Structs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Union

import msgspec

__all__ = [
    "ContainerUploadBlock",
    "ContentBlock",
    "Message",
    "RedactedThinkingBlock",
    "ServerToolResultBlock",
    "ServerToolUseBlock",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "UnknownBlock",
    "Usage",
    "block_from_dict",
    "with_datetimes",
]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def copy_json(value: Any) -> Any:
    """Return a deep copy of a JSON-like value (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return _decode(_encode(value))
    if isinstance(value, list):
        return _decode(_encode(value))
    return value


def with_datetimes(message: dict[str, Any]) -> dict[str, Any]:
    """Turn ``container.expires_at`` into a ``datetime`` in *message*, in place, as the
    SDK's pydantic models do (it is the only datetime field of a message)."""
    container = message.get("container")
    if isinstance(container, dict):
        expires_at = container.get("expires_at")
        if isinstance(expires_at, str):
            try:
                container["expires_at"] = datetime.fromisoformat(expires_at)
            except ValueError:
                pass
    return message


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


class _Block:
    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def type(self) -> str:
        """The block type, as the API names it."""
        return _text(self._data, "type")

    def to_dict(self) -> dict[str, Any]:
        """Return the block as the SDK's ``to_dict()`` does: a fresh deep copy."""
        out: dict[str, Any] = copy_json(self._data)
        return out

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Return the field *key* as sent by the API, or *default*."""
        return self._data.get(key, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Block):
            return type(self) is type(other) and self._data == other._data
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


class TextBlock(_Block):
    """A text block, with the citations that arrived for it."""

    __slots__ = ()

    @property
    def text(self) -> str:
        """The block's text."""
        return _text(self._data, "text")

    @property
    def citations(self) -> list[dict[str, Any]] | None:
        """The block's citations, or ``None`` when it has none."""
        value = self._data.get("citations")
        return value if isinstance(value, list) else None


class ThinkingBlock(_Block):
    """Extended thinking, with its signature."""

    __slots__ = ()

    @property
    def thinking(self) -> str:
        """The thinking text."""
        return _text(self._data, "thinking")

    @property
    def signature(self) -> str:
        """The signature that lets the API verify the thinking when it is sent back."""
        return _text(self._data, "signature")


class RedactedThinkingBlock(_Block):
    """Thinking the API encrypted; ``data`` must be sent back as is."""

    __slots__ = ()

    @property
    def data(self) -> str:
        """The encrypted thinking."""
        return _text(self._data, "data")


class _ToolBlock(_Block):
    __slots__ = ()

    @property
    def id(self) -> str:
        """The tool call id."""
        return _text(self._data, "id")

    @property
    def name(self) -> str:
        """The tool's name."""
        return _text(self._data, "name")

    @property
    def input(self) -> Any:
        """The parsed tool input."""
        return self._data.get("input")


class ToolUseBlock(_ToolBlock):
    """The model calls one of the request's tools."""

    __slots__ = ()


class ServerToolUseBlock(_ToolBlock):
    """The model calls a server tool (web search, code execution, ...)."""

    __slots__ = ()


class ServerToolResultBlock(_Block):
    """The result of a server tool: ``web_search_tool_result``, ``web_fetch_tool_result``,
    ``code_execution_tool_result`` and the other ``*_tool_result`` blocks."""

    __slots__ = ()

    @property
    def tool_use_id(self) -> str:
        """The id of the server tool call this answers."""
        return _text(self._data, "tool_use_id")

    @property
    def content(self) -> Any:
        """The result content, as the API sent it."""
        return self._data.get("content")


class ContainerUploadBlock(_Block):
    """A file uploaded to the code execution container."""

    __slots__ = ()

    @property
    def file_id(self) -> str:
        """The uploaded file's id."""
        return _text(self._data, "file_id")


class UnknownBlock(_Block):
    """A block of a type this version does not know; kept whole."""

    __slots__ = ()


ContentBlock = Union[
    TextBlock,
    ThinkingBlock,
    RedactedThinkingBlock,
    ToolUseBlock,
    ServerToolUseBlock,
    ServerToolResultBlock,
    ContainerUploadBlock,
    UnknownBlock,
]

_BLOCKS: Final[dict[str, type[_Block]]] = {
    "text": TextBlock,
    "thinking": ThinkingBlock,
    "redacted_thinking": RedactedThinkingBlock,
    "tool_use": ToolUseBlock,
    "server_tool_use": ServerToolUseBlock,
    "web_search_tool_result": ServerToolResultBlock,
    "web_fetch_tool_result": ServerToolResultBlock,
    "code_execution_tool_result": ServerToolResultBlock,
    "bash_code_execution_tool_result": ServerToolResultBlock,
    "text_editor_code_execution_tool_result": ServerToolResultBlock,
    "tool_search_tool_result": ServerToolResultBlock,
    "mcp_tool_result": ServerToolResultBlock,
    "container_upload": ContainerUploadBlock,
}


def block_from_dict(data: dict[str, Any]) -> ContentBlock:
    """Wrap a block dict (already owned by the caller) in its typed view."""
    cls = _BLOCKS.get(_text(data, "type"), UnknownBlock)
    block: ContentBlock = cls(data)  # type: ignore[assignment]
    return block


class Usage:
    """Token usage; a view over the API's ``usage`` object."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def _int(self, key: str) -> int | None:
        value = self._data.get(key)
        return value if isinstance(value, int) else None

    @property
    def input_tokens(self) -> int:
        """Input tokens used."""
        return self._int("input_tokens") or 0

    @property
    def output_tokens(self) -> int:
        """Output tokens used (cumulative)."""
        return self._int("output_tokens") or 0

    @property
    def cache_creation_input_tokens(self) -> int | None:
        """Input tokens written to the prompt cache."""
        return self._int("cache_creation_input_tokens")

    @property
    def cache_read_input_tokens(self) -> int | None:
        """Input tokens read from the prompt cache."""
        return self._int("cache_read_input_tokens")

    @property
    def server_tool_use(self) -> dict[str, Any] | None:
        """Server tool requests, e.g. ``{"web_search_requests": 1}``."""
        value = self._data.get("server_tool_use")
        return value if isinstance(value, dict) else None

    def to_dict(self) -> dict[str, Any]:
        """Return the usage as a fresh dict."""
        out: dict[str, Any] = copy_json(self._data)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Usage({self._data!r})"


class Message:
    """A message from the Messages API, as accumulated from its stream.

    Attributes:
        content: The content blocks, in index order.
    """

    __slots__ = ("_data", "content")

    def __init__(self, data: dict[str, Any], content: list[ContentBlock]) -> None:
        self._data = data  # every field but content, as the SDK would keep it
        self.content = content

    @property
    def id(self) -> str:
        """The message id (``msg_...``)."""
        return _text(self._data, "id")

    @property
    def type(self) -> str:
        """Always ``"message"``."""
        return _text(self._data, "type")

    @property
    def role(self) -> str:
        """Always ``"assistant"``."""
        return _text(self._data, "role")

    @property
    def model(self) -> str:
        """The model that wrote the message."""
        return _text(self._data, "model")

    @property
    def stop_reason(self) -> str | None:
        """Why the model stopped (``end_turn``, ``tool_use``, ``max_tokens``, ...)."""
        value = self._data.get("stop_reason")
        return value if isinstance(value, str) else None

    @property
    def stop_sequence(self) -> str | None:
        """The custom stop sequence that was generated, if any."""
        value = self._data.get("stop_sequence")
        return value if isinstance(value, str) else None

    @property
    def stop_details(self) -> dict[str, Any] | None:
        """Structured detail about the stop, if the API gave any."""
        value = self._data.get("stop_details")
        return value if isinstance(value, dict) else None

    @property
    def container(self) -> dict[str, Any] | None:
        """The code execution container used, if any."""
        value = self._data.get("container")
        return value if isinstance(value, dict) else None

    @property
    def usage(self) -> Usage:
        """Token usage, with ``message_delta`` totals applied."""
        value = self._data.get("usage")
        return Usage(value if isinstance(value, dict) else {})

    def get(self, key: str, default: Any = None) -> Any:
        """Return the top-level field *key* as accumulated, or *default*."""
        return self._data.get(key, default)

    @property
    def text(self) -> str:
        """The text of all text blocks, joined."""
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))

    def to_dict(self) -> dict[str, Any]:
        """Return the message as the SDK's ``get_final_message().to_dict()`` does."""
        out: dict[str, Any] = copy_json(self._data)
        out["content"] = [block.to_dict() for block in self.content]
        return with_datetimes(out)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return self._data == other._data and self.content == other.content
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, stop_reason={self.stop_reason!r}, content={self.content!r})"
