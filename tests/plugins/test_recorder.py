"""The SSE recorder: exact bytes on disk, replayable; a closed, partial file when cut short."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

import pipeline
from pipeline.testing import aiter_chunks, all_cases, chunk_events, chunk_random, mixed_body
from plugins.recorder import Recorder, Recording, record


async def final_dict(source: object, **options: bool) -> dict[str, object]:
    async with pipeline.open_stream(source, **options) as stream:
        message = await stream.get_final_message()
    return message.to_dict()


@pytest.mark.parametrize("name", ["mixed", "thinking", "citations", "server_tool", "unknown_event"])
async def test_a_recording_replays_to_the_same_message(tmp_path: Path, name: str) -> None:
    body = all_cases(seed=4)[name].body()
    path = tmp_path / f"{name}.sse"
    recording = record(aiter_chunks(chunk_random(body, seed=11, max_size=40), checkpoint=True), path)
    live = await final_dict(recording)

    assert recording.closed
    assert path.read_bytes() == body
    assert recording.bytes_written == len(body)
    # replayed through open_stream, cut differently
    replayed = await final_dict(aiter_chunks(chunk_random(path.read_bytes(), seed=5, max_size=7)))
    assert replayed == live
    # and by the command line, as a user would
    result = await anyio.run_process([sys.executable, "-m", "pipeline", "replay", "--json", str(path)], check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == live


async def test_cancellation_mid_stream_leaves_a_closed_partial_file(tmp_path: Path) -> None:
    chunks = chunk_events(mixed_body(seed=1))
    half = len(chunks) // 2
    starved = anyio.Event()
    source_closed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal source_closed
        try:
            for chunk in chunks[:half]:
                yield chunk
            starved.set()
            await anyio.sleep_forever()  # the network stalls
            yield b""
        finally:
            source_closed = True

    recording = record(source(), tmp_path / "cut.sse")
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:

            async def cancel_when_starved() -> None:
                await starved.wait()
                scope.cancel()

            tg.start_soon(cancel_when_starved)
            async with pipeline.open_stream(recording) as stream:
                await stream.until_done()
    assert scope.cancelled_caught
    assert recording.closed and source_closed
    assert (tmp_path / "cut.sse").read_bytes() == b"".join(chunks[:half])
    assert recording.bytes_written == len(b"".join(chunks[:half]))


async def test_leaving_the_stream_early_closes_the_file(tmp_path: Path) -> None:
    chunks = chunk_events(mixed_body(seed=2))
    recording = record(aiter_chunks(chunks), tmp_path / "early.sse")
    async with pipeline.open_stream(recording) as stream:
        async for event in stream:
            if isinstance(event, pipeline.TextEvent):
                break
    assert recording.closed
    written = (tmp_path / "early.sse").read_bytes()
    assert 0 < len(written) < sum(map(len, chunks))
    assert mixed_body(seed=2).startswith(written)


async def test_a_failing_source_leaves_a_closed_partial_file(tmp_path: Path) -> None:
    chunks = chunk_events(mixed_body(seed=3))

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks[:4]:
            yield chunk
        raise OSError("connection reset")

    recording = record(source(), tmp_path / "broken.sse")
    with pytest.raises(pipeline.SourceError) as caught:
        await final_dict(recording)
    assert isinstance(caught.value.__cause__, OSError)
    assert recording.closed
    assert (tmp_path / "broken.sse").read_bytes() == b"".join(chunks[:4])
    # the partial file replays as far as it goes
    replayed = await final_dict(aiter_chunks([b"".join(chunks[:4])]), allow_incomplete=True)
    assert replayed["id"] == json.loads(chunks[0].split(b"data: ")[1])["message"]["id"]


async def test_an_http_response_records_its_body_only(tmp_path: Path) -> None:
    body = mixed_body(seed=5)
    request = httpx.Request("POST", "https://api.example/v1/messages", headers={"x-api-key": "sk-ant-secret"})
    response = httpx.Response(200, headers={"request-id": "req_123"}, content=body, request=request)
    recording = record(response, tmp_path / "http.sse")
    async with pipeline.open_stream(recording) as stream:
        await stream.get_final_message()
        assert stream.request_id == "req_123"  # response headers still reach the stream
    data = (tmp_path / "http.sse").read_bytes()
    assert data == body
    assert b"sk-ant-secret" not in data and b"req_123" not in data


async def test_an_unread_recording_creates_no_file_and_closes_its_source(tmp_path: Path) -> None:
    closed = False

    class Source:
        def __aiter__(self) -> AsyncIterator[bytes]:
            return aiter_chunks([b"never read"])

        async def aclose(self) -> None:
            nonlocal closed
            closed = True

    recording = record(Source(), tmp_path / "unread.sse")
    await recording.aclose()
    assert closed and recording.closed
    assert not (tmp_path / "unread.sse").exists()
    with pytest.raises(StopAsyncIteration):
        await recording.__anext__()


async def test_recorder_names_one_file_per_stream(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "recordings", prefix="turn")
    bodies = [mixed_body(seed=n) for n in range(3)]
    for body in bodies:
        await final_dict(recorder.wrap(aiter_chunks(chunk_random(body, seed=1))))
    named = recorder.wrap(aiter_chunks([bodies[0]]), name="named.sse")
    await final_dict(named)

    assert [r.path.name for r in recorder.recordings] == [
        "turn-0001.sse",
        "turn-0002.sse",
        "turn-0003.sse",
        "named.sse",
    ]
    assert [r.path.read_bytes() for r in recorder.recordings] == [*bodies, bodies[0]]
    assert all(isinstance(r, Recording) and r.closed for r in recorder.recordings)
    for bad in ("../x.sse", "sub/x.sse", "", ".."):
        with pytest.raises(ValueError):
            recorder.wrap(aiter_chunks([]), name=bad)
