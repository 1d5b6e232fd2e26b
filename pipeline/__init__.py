"""sse-pipeline: LLM server-sent-event streams -> typed events, live callbacks, a final message.

The public API is re-exported here::

    import pipeline

    async with pipeline.open_stream(source, subscribers=[...], stages=[...]) as stream:
        async for event in stream:
            ...
    message = await stream.get_final_message()
"""

from __future__ import annotations

from . import errors
from .bus import Subscription, SubscriberStatistics
from .errors import (
    APIStreamError,
    DecodeError,
    FramingError,
    IncompleteStreamError,
    OverloadedError,
    PipelineError,
    ProtocolError,
    StageError,
    SubscriberError,
    SubscriberOverflowError,
    ToolInputError,
)
from .events import (
    CitationEvent,
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    DerivedEvent,
    ErrorEvent,
    Event,
    InputJSONDelta,
    InputJsonEvent,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    RawContentBlockStopEvent,
    RawEvent,
    RawMessageStopEvent,
    SignatureDelta,
    SignatureEvent,
    TextDelta,
    TextEvent,
    ThinkingDelta,
    ThinkingEvent,
    UnknownDelta,
    UnknownEvent,
)
from .message import (
    ContainerUploadBlock,
    ContentBlock,
    Message,
    RedactedThinkingBlock,
    ServerToolResultBlock,
    ServerToolUseBlock,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    UnknownBlock,
    Usage,
)
from .runner import MessageStream, Pipeline, StreamStatistics, open_stream
from .sse import SSEDecoder, SSEFrame
from .stage import (
    Accumulate,
    AsyncStage,
    Boundary,
    Derive,
    Map,
    Parse,
    SyncStage,
    accumulate,
    boundary,
    derive,
    parse,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "APIStreamError",
    "Accumulate",
    "AsyncStage",
    "Boundary",
    "CitationEvent",
    "CitationsDelta",
    "ContainerUploadBlock",
    "ContentBlock",
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ContentBlockStopEvent",
    "DecodeError",
    "Derive",
    "DerivedEvent",
    "ErrorEvent",
    "Event",
    "FramingError",
    "IncompleteStreamError",
    "InputJSONDelta",
    "InputJsonEvent",
    "Map",
    "Message",
    "MessageDeltaEvent",
    "MessageStartEvent",
    "MessageStopEvent",
    "MessageStream",
    "OverloadedError",
    "Parse",
    "PingEvent",
    "Pipeline",
    "PipelineError",
    "ProtocolError",
    "RawContentBlockStopEvent",
    "RawEvent",
    "RawMessageStopEvent",
    "RedactedThinkingBlock",
    "SSEDecoder",
    "SSEFrame",
    "ServerToolResultBlock",
    "ServerToolUseBlock",
    "SignatureDelta",
    "SignatureEvent",
    "StageError",
    "StreamStatistics",
    "SubscriberError",
    "SubscriberOverflowError",
    "SubscriberStatistics",
    "Subscription",
    "SyncStage",
    "TextBlock",
    "TextDelta",
    "TextEvent",
    "ThinkingBlock",
    "ThinkingDelta",
    "ThinkingEvent",
    "ToolInputError",
    "ToolUseBlock",
    "UnknownBlock",
    "UnknownDelta",
    "UnknownEvent",
    "Usage",
    "__version__",
    "accumulate",
    "boundary",
    "derive",
    "errors",
    "open_stream",
    "parse",
]
