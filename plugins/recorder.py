"""SSE recorder: keep the exact bytes of a response body, for ``sse-pipeline replay``.

A subscriber sees derived events, never bytes, so the recorder wraps the *source*::

    async with pipeline.open_stream(record(response, "turn-1.sse")) as stream:
        message = await stream.get_final_message()

    # later: sse-pipeline replay turn-1.sse --json   (the same final message)

Each chunk is written to the file before it is handed on, so the file always holds exactly
the bytes the pipeline has read: the whole body after a complete stream, a prefix of it
after an error or a cancellation. Only body bytes are written (an ``httpx.Response`` is
read through ``aiter_bytes()``, like ``open_stream`` does): never a request header, and so
never an API key.

Writes are **synchronous, without a worker thread**: one ``write`` and one ``flush`` per
network chunk, into the operating system's page cache (no ``fsync``). A network chunk is at
most some tens of kilobytes, so a write costs microseconds, less than a hop to a thread
would; for a slow or network file system, record to a local disk. The file is opened at the
first chunk and closed when the body ends, when reading it fails, when the stream is
cancelled, or by ``aclose()`` (which ``open_stream`` calls when the stream closes,
however it closes).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO, Any, final

import pipeline

__all__ = ["Recorder", "Recording", "record"]

StrPath = str | os.PathLike[str]


@final
class Recording:
    """An async iterator over a source's chunks that writes each chunk to a file first.

    Use it as the source of :func:`pipeline.open_stream`. Made by :func:`record` or
    :meth:`Recorder.wrap`.

    Attributes:
        path: The file the body is written to (created or truncated at the first chunk).
        bytes_written: Bytes written so far.
    """

    __slots__ = ("path", "bytes_written", "_source", "_iterator", "_file", "_done")

    def __init__(self, source: AsyncIterable[bytes] | Any, path: StrPath) -> None:
        self.path = Path(path)
        self.bytes_written = 0
        self._source = source
        self._iterator: AsyncIterator[bytes] | None = None
        self._file: IO[bytes] | None = None
        self._done = False

    @property
    def closed(self) -> bool:
        """Whether the recording ended: the file (if it was opened) is closed."""
        return self._done

    @property
    def headers(self) -> Any:
        """The source's response headers, if it has any (keeps ``stream.request_id`` working).

        They are never written to the file.
        """
        return getattr(self._source, "headers", None)

    def __aiter__(self) -> Recording:
        return self

    async def __anext__(self) -> bytes:
        """Read the next chunk from the source, append it to the file, and return it.

        Raises:
            StopAsyncIteration: The body ended (the file is closed).
            OSError: Writing failed (the file is closed; the stream fails with a
                ``SourceError``).
        """
        if self._done:
            raise StopAsyncIteration
        if self._iterator is None:
            self._iterator = pipeline.chunks_of(self._source)
            self._file = open(self.path, "wb")  # noqa: ASYNC230 - sync by design (module doc)
        try:
            chunk = await self._iterator.__anext__()
            if chunk:
                assert self._file is not None
                self._file.write(chunk)
                self._file.flush()
                self.bytes_written += len(chunk)
        except BaseException:  # the end, a failure or a cancellation: the recording is over
            self._finish()
            raise
        return chunk

    async def aclose(self) -> None:
        """Close the file, then the source (its iterator and, if it has one, its ``aclose``)."""
        self._finish()
        iterator, self._iterator = self._iterator, None
        try:
            if iterator is not None:
                await _aclose(iterator)
        finally:
            if self._source is not iterator:
                await _aclose(self._source)

    def _finish(self) -> None:
        self._done = True
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __repr__(self) -> str:
        state = "closed" if self._done else "open"
        return f"Recording({str(self.path)!r}, {self.bytes_written} bytes, {state})"


def record(source: AsyncIterable[bytes] | Any, path: StrPath) -> Recording:
    """Wrap *source* so that its bytes are written to *path* as they pass.

    Args:
        source: An ``AsyncIterable[bytes]`` of the SSE body, or an ``httpx.Response``
            opened with ``stream=True`` (read through ``aiter_bytes()``).
        path: The file to write; created, or truncated, when the first chunk is read.

    Returns:
        A :class:`Recording`: give it to :func:`pipeline.open_stream` as the source.
    """
    return Recording(source, path)


@final
class Recorder:
    """Records many streams into one directory, one ``.sse`` file per stream.

    Args:
        directory: Where the files go (created if missing).
        prefix: The start of generated file names: ``{prefix}-0001.sse``, ``-0002``, ...

    Example::

        recorder = Recorder("recordings")
        async with pipeline.open_stream(recorder.wrap(response)) as stream: ...
        print(recorder.recordings[-1].path)
    """

    __slots__ = ("directory", "prefix", "recordings", "_count")

    def __init__(self, directory: StrPath, *, prefix: str = "stream") -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.recordings: list[Recording] = []
        self._count = 0

    def wrap(self, source: AsyncIterable[bytes] | Any, name: str | None = None) -> Recording:
        """Wrap *source*, recording it to ``directory / name`` (default: the next generated name).

        Args:
            source: As for :func:`record`.
            name: A file name (no directory part), e.g. ``"turn-3.sse"``.

        Raises:
            ValueError: *name* has a directory part.
        """
        if name is None:
            self._count += 1
            name = f"{self.prefix}-{self._count:04d}.sse"
        elif not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"name must be a plain file name, got {name!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        recording = Recording(source, self.directory / name)
        self.recordings.append(recording)
        return recording


async def _aclose(obj: Any) -> None:
    aclose = getattr(obj, "aclose", None)
    if callable(aclose):
        await aclose()
