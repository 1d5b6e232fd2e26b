"""The API key never appears in logs (structlog and stdlib, httpx's included), errors, reprs or
recordings, whatever goes wrong; the redaction processor masks what applications log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from structlog.testing import capture_logs

import pipeline
from pipeline.client import RetryPolicy
from pipeline.fake_server import FakeServer, Script
from pipeline.testing import text_body
from plugins.recorder import Recorder

SECRET = "sk-ant-api03-" + "S3cr3tK3yS3cr3t" * 4
BODY = text_body(20, seed=9)
FAST = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.01)
REQUEST: dict[str, Any] = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def exception_texts(error: BaseException | None) -> Iterator[str]:
    """str and repr of an error and of every error in its cause / context chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield str(error)
        yield repr(error)
        yield repr(getattr(error, "partial_message", None))
        error = error.__cause__ or error.__context__


async def attempt(client: pipeline.MessagesClient, texts: list[str]) -> None:
    try:
        async with client.stream(**REQUEST) as stream:
            texts.append(repr(stream))
            await stream.until_done()
    except pipeline.PipelineError as exc:
        texts.extend(exception_texts(exc))


async def test_the_api_key_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log requests at DEBUG / INFO
    texts: list[str] = []
    scripts = [
        Script(status=529), Script(body=BODY),  # a retry (logged), then success
        Script(body=BODY, cut_after_events=4, cut_mid_event=True),  # SourceError
        Script(body=BODY, error_event_after=3),  # OverloadedError
        Script(status=400),  # InvalidRequestError
        Script(body=BODY, cut_after_events=0), Script(body=BODY, cut_after_events=0),  # worker retry, fails
        Script(body=BODY),  # recorded
    ]  # fmt: skip
    with capture_logs() as logs:
        async with FakeServer(scripts, api_key=SECRET) as server:
            async with pipeline.MessagesClient(api_key=SECRET, base_url=server.url, retry=FAST) as client:
                texts.append(repr(client))
                for _ in range(4):
                    await attempt(client, texts)
                job = pipeline.JobRequest(id="j", **REQUEST, extra_headers={"X-Api-Key": SECRET, "x-trace": "t"})
                texts.append(repr(job))
                async with pipeline.Worker(client=client, concurrency=1, retry=FAST) as worker:
                    [result] = await worker.run([job])
                texts += [repr(result), *exception_texts(result.error)]
            async with pipeline.MessagesClient(api_key="sk-ant-api03-wrongwrongwrong", base_url=server.url) as bad:
                await attempt(bad, texts)  # AuthenticationError
            # a recording of a response made with the key holds the body only
            recorder = Recorder(tmp_path)
            async with httpx.AsyncClient() as http:
                headers = {"x-api-key": SECRET, "anthropic-version": "2023-06-01"}
                async with http.stream("POST", server.url + "/v1/messages", json={**REQUEST, "stream": True},
                                       headers=headers) as response:
                    async with pipeline.open_stream(recorder.wrap(response)) as stream:
                        await stream.until_done()
        async with pipeline.MessagesClient(api_key=SECRET, base_url=server.url, retry=FAST) as gone:
            await attempt(gone, texts)  # the server is closed: APIConnectionError
    assert "'X-Api-Key': '[redacted]'" in next(t for t in texts if t.startswith("JobRequest("))
    assert any("SourceError" in t for t in texts) and any("AuthenticationError" in t for t in texts)
    assert any("APIConnectionError" in t for t in texts) and any(log["event"] == "request_retry" for log in logs)
    recorded = b"".join([await path.read_bytes() async for path in anyio.Path(tmp_path).iterdir()])
    assert recorded == BODY
    everything = "\n".join([*texts, *map(repr, logs), caplog.text])
    assert SECRET not in everything
    assert SECRET not in recorded.decode()


def test_job_request_repr_masks_secret_headers_only() -> None:
    job = pipeline.JobRequest(id="j", **REQUEST, extra_headers={"Authorization": f"Bearer {SECRET}", "x-trace": "t"})
    text = repr(job)
    assert SECRET not in text and "'Authorization': '[redacted]'" in text and "'x-trace': 't'" in text
    assert text.startswith("JobRequest(id='j', subscribers=(), model='m', max_tokens=8,")
    assert job.extra_headers == {"Authorization": f"Bearer {SECRET}", "x-trace": "t"}  # the job itself keeps it


@pytest.mark.parametrize("as_json", [False, True])
def test_configure_logging_masks_secrets_and_writes_where_told(as_json: bool) -> None:
    out = io.StringIO()
    try:
        pipeline.configure_logging(logging.INFO, json=as_json, file=out)
        log = structlog.get_logger("test")
        log.debug("hidden")
        log.info("sent", headers={"x-api-key": SECRET, "accept": "text/event-stream"}, note=f"key {SECRET} leaked")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert SECRET not in text and "hidden" not in text
    assert text.count(pipeline.REDACTED) == 2 and "text/event-stream" in text
    if as_json:
        line = json.loads(text)
        assert line["event"] == "sent" and line["level"] == "info" and line["headers"]["x-api-key"] == "[redacted]"


async def test_the_fake_server_binds_loopback_by_default() -> None:
    async with FakeServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
