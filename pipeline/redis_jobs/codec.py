"""What :mod:`pipeline.redis_jobs` keeps in Redis: key names, encodings and Lua scripts.

Pure data and functions (no connection). Keys of one job share the hash tag ``{JOB_ID}``,
so a job's scripts touch one Redis Cluster slot::

    NAME:jobs              stream: one entry {id: JOB_ID} per delivery (consumer group NAME)
    NAME:dead              stream: dead-lettered jobs {id, attempts, error}
    NAME:job:{JOB_ID}      hash: request, attempt, failures, holder, last_error, result
    NAME:events:{JOB_ID}   stream: the job's derived events, id ATTEMPT-SEQ

Events stream entries (the id's first part is the attempt, so a newer attempt's entries
sort after every entry of an older one, and Redis itself rejects late writes of an
abandoned attempt):

    ATTEMPT-0    k=a w=WORKER     an attempt started: earlier attempts are abandoned
    ATTEMPT-SEQ  k=e d=[...]      a batch of events, SEQ = 1, 2, ... (JSON list: core.encode)
    ATTEMPT-*    k=f d={...}      the final result (written with the result, once)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ..errors import APIError, PipelineError
from ..worker.jobs import JobRequest

__all__ = [
    "ACK", "BEGIN", "DEFAULT_QUEUE", "FAIL", "FINISH", "HANDBACK", "HEARTBEAT", "SUBMIT", "Keys", "decode",
    "decode_request", "encode", "encode_request", "error_info", "parse_id",
]  # fmt: skip

DEFAULT_QUEUE: Final = "sse-pipeline"

encode: Final = msgspec.json.Encoder().encode
decode: Final = msgspec.json.Decoder().decode


class Keys:
    """The key names of one queue."""

    __slots__ = ("name", "jobs", "dead", "group")

    def __init__(self, name: str) -> None:
        if not name or any(c in name for c in "{} "):
            raise ValueError(f"a queue name is non-empty, without braces or spaces, got {name!r}")
        self.name = name
        self.jobs = f"{name}:jobs"
        self.dead = f"{name}:dead"
        self.group = name

    def job(self, job_id: str) -> str:
        return f"{self.name}:job:{{{job_id}}}"

    def events(self, job_id: str) -> str:
        return f"{self.name}:events:{{{job_id}}}"


def parse_id(identifier: str | bytes) -> tuple[int, int]:
    """``b"3-17"`` -> ``(3, 17)``."""
    text = identifier.decode() if isinstance(identifier, bytes) else identifier
    first, _, second = text.partition("-")
    return int(first), int(second)


def encode_request(job: JobRequest) -> bytes:
    """The request part of *job* as stored in Redis (its subscribers cannot travel)."""
    if job.subscribers:
        raise ValueError("a job sent through Redis cannot carry subscribers; give them to the worker's pipeline")
    if not job.id:
        raise ValueError("a job id must not be empty")
    return encode({
        "model": job.model, "max_tokens": job.max_tokens, "messages": job.messages, "params": job.params,
        "extra_headers": job.extra_headers,
    })  # fmt: skip


def decode_request(job_id: str, data: bytes, subscribers: tuple[object, ...]) -> JobRequest:
    """Rebuild the request stored by :func:`encode_request`, as attempt *job_id*."""
    fields: Mapping[str, Any] = decode(data)
    return JobRequest(
        id=job_id, subscribers=subscribers, model=fields["model"], max_tokens=fields["max_tokens"],
        messages=fields["messages"], params=fields.get("params") or {}, extra_headers=fields.get("extra_headers"),
    )  # fmt: skip


def error_info(error: BaseException) -> dict[str, Any]:
    """A failed job's error as plain data: class name, message, API details, partial message."""
    partial = error.partial_message if isinstance(error, PipelineError) else None
    api = error if isinstance(error, APIError) else None
    return {
        "type": type(error).__name__, "message": str(error),
        "error_type": api.error_type if api else None, "status_code": api.status_code if api else None,
        "request_id": api.request_id if api else None,
        "partial_message": partial.to_dict() if partial is not None else None,
    }  # fmt: skip


# --------------------------------------------------------------------------- scripts
# Every script is safe to run again after a lost reply (the worker retries them).

SUBMIT: Final = """
local existing = redis.call('HGET', KEYS[1], 'request')
if existing then
  if existing == ARGV[1] then return 2 end
  return 0
end
redis.call('HSET', KEYS[1], 'request', ARGV[1], 'submitted', ARGV[2], 'attempt', 0, 'failures', 0)
return 1
"""

# ARGV: max attempts, reclaimed (0/1), worker, events maxlen, jobs entry id.
# Returns {status, attempt, data}: missing | done | busy | dead (data: last error) | run (data: request).
# A repeat by the same worker for the same entry (its reply was lost) returns what the first call did.
BEGIN: Final = """
local job, events = KEYS[1], KEYS[2]
local request = redis.call('HGET', job, 'request')
if not request then return {'missing', 0, ''} end
if redis.call('HEXISTS', job, 'result') == 1 then return {'done', 0, ''} end
local holder = redis.call('HGET', job, 'holder')
local failures = tonumber(redis.call('HGET', job, 'failures') or '0')
if holder and holder == ARGV[3] and redis.call('HGET', job, 'entry') == ARGV[5] then
  local attempt = tonumber(redis.call('HGET', job, 'attempt'))
  if failures >= tonumber(ARGV[1]) then
    return {'dead', attempt, redis.call('HGET', job, 'last_error') or '{}'}
  end
  return {'run', attempt, request}
end
if holder and ARGV[2] == '0' then return {'busy', 0, ''} end
if holder then
  local lost = redis.call('HGET', job, 'attempt')
  if redis.call('HGET', job, 'failed_attempt') ~= lost then
    failures = redis.call('HINCRBY', job, 'failures', 1)
    redis.call('HSET', job, 'failed_attempt', lost, 'last_error', cjson.encode({
      type = 'WorkerLostError', message = 'worker ' .. holder .. ' stopped during attempt ' .. lost}))
  end
end
local attempt = redis.call('HINCRBY', job, 'attempt', 1)
redis.call('HSET', job, 'holder', ARGV[3], 'entry', ARGV[5])
if failures >= tonumber(ARGV[1]) then
  return {'dead', attempt, redis.call('HGET', job, 'last_error') or '{}'}
end
redis.call('XADD', events, 'MAXLEN', '~', ARGV[4], attempt .. '-0', 'k', 'a', 'w', ARGV[3])
return {'run', attempt, request}
"""

# ARGV: attempt, result JSON, events maxlen, retention seconds (0: keep).
# Returns 1 when the job's result is this attempt's, 0 when the attempt was superseded.
FINISH: Final = """
local job, events = KEYS[1], KEYS[2]
if redis.call('HGET', job, 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HSETNX', job, 'result', ARGV[2]) == 1 then
  redis.call('HDEL', job, 'holder')
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], ARGV[1] .. '-*', 'k', 'f', 'd', ARGV[2])
  if tonumber(ARGV[4]) > 0 then
    redis.call('EXPIRE', job, ARGV[4])
    redis.call('EXPIRE', events, ARGV[4])
  end
end
return 1
"""

# ARGV: attempt, error JSON. Returns the job's failures, or -1 when superseded.
FAIL: Final = """
local job = KEYS[1]
if redis.call('HGET', job, 'attempt') ~= ARGV[1] then return -1 end
if redis.call('HGET', job, 'failed_attempt') ~= ARGV[1] then
  redis.call('HINCRBY', job, 'failures', 1)
  redis.call('HSET', job, 'failed_attempt', ARGV[1], 'last_error', ARGV[2])
end
redis.call('HDEL', job, 'holder')
return tonumber(redis.call('HGET', job, 'failures'))
"""

# ARGV: attempt. Returns 1, or 0 when superseded.
HANDBACK: Final = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'holder')
return 1
"""

# The jobs stream's entries are acked only by the consumer they are pending for: XACK itself
# acks any consumer's delivery, and an entry that another worker reclaimed is its delivery
# now (acking it would leave nobody to reclaim the job if that worker dies).

# KEYS: jobs stream. ARGV: group, consumer, entry id, '1' to queue the entry's job again.
# Returns 1 when the entry was this consumer's and is acked (and deleted), 0 when it is
# not pending for this consumer (another's delivery now, or acked already): left alone.
ACK: Final = """
local stream, group, me, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if #redis.call('XPENDING', stream, group, id, id, 1, me) == 0 then return 0 end
if ARGV[4] == '1' then
  local entry = redis.call('XRANGE', stream, id, id)[1]
  if entry then
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'id' then redis.call('XADD', stream, '*', 'id', fields[i + 1]) end
    end
  end
end
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return 1
"""

# KEYS: jobs stream. ARGV: group, consumer, entry ids. Resets the idle time of the entries
# still pending for this consumer (so that nobody reclaims a live worker's jobs) without
# taking any from another consumer; returns the ids that are not this consumer's any more.
HEARTBEAT: Final = """
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  if #redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1, me) == 1 then
    redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
