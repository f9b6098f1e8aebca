"""The Broker on Redis Streams consumer groups (Redis >= 6.2: XAUTOCLAIM): XREADGROUP hands out
new messages, XAUTOCLAIM the ones a dead consumer held, and one Lua script per batch writes the
outputs (XADD), sets each event's idempotency key (SET NX EX) and XACKs: a script runs atomically,
so a kill at any point leaves either all of a message's outputs and its ack, or none of them.

Across machines it is a managed Redis / Valkey; on Redis Cluster every stream and key must share
one hash slot, so name them with one hash tag (`{mm}:listings`, `{mm}:decisions`, ...).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import redis

from mmdetect.serving.worker.broker import KINDS, BrokerError, BrokerUnavailable, Commit, Message

log = logging.getLogger(__name__)
SCHEMES = ("redis", "rediss", "unix")
MIN_VERSION = (6, 2)

# KEYS: the input stream, then the output streams in KINDS order. ARGV: group, key TTL (s),
# output MAXLEN (0: none), JSON [[message id, done key or "", [[kind index, [f, v, ...]], ...]]].
COMMIT_LUA = """
local entries = cjson.decode(ARGV[4])
local maxlen = tonumber(ARGV[3])
local out = {}
for i, e in ipairs(entries) do
  local fresh = 1
  if e[2] ~= "" then
    fresh = redis.call('SET', e[2], e[1], 'NX', 'EX', ARGV[2]) and 1 or 0
  end
  if fresh == 1 then
    for _, o in ipairs(e[3]) do
      if maxlen > 0 then
        redis.call('XADD', KEYS[o[1] + 2], 'MAXLEN', '~', maxlen, '*', unpack(o[2]))
      else
        redis.call('XADD', KEYS[o[1] + 2], '*', unpack(o[2]))
      end
    end
  end
  redis.call('XACK', KEYS[1], ARGV[1], e[1])
  out[i] = fresh
end
return out
"""


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def connect(url: str, socket_timeout_s: float = 10.0) -> redis.Redis:
    """A client for a redis:// rediss:// or unix:// URL; BrokerError naming what is wrong."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise BrokerError(f"--broker {redacted(url)!r}: expected redis://HOST:PORT/DB "
                          f"(or rediss://, unix://), got scheme {scheme or 'none'!r}")  # fmt: skip
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=3.0,
                                    socket_timeout=socket_timeout_s, health_check_interval=15)  # fmt: skip
    except ValueError as exc:
        raise BrokerError(f"--broker {redacted(url)!r}: {exc}") from None


class RedisStreams:
    """A consumer `consumer` of group `group` on `stream`; outputs to `outputs[kind]` streams."""

    def __init__(self, url: str, stream: str, group: str, consumer: str,
                 outputs: dict[str, str], done_prefix: str, done_ttl_s: int = 7 * 86400,
                 maxlen: int = 0, block_ms: int = 1000, start: str = "0"):  # fmt: skip
        self.where = redacted(url)
        self.client = connect(url, socket_timeout_s=block_ms / 1000 + 10)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.keys = [stream, *(outputs[k] for k in KINDS)]
        self.done_prefix, self.done_ttl_s, self.maxlen = done_prefix, done_ttl_s, maxlen
        self.start = start
        self._script = self.client.register_script(COMMIT_LUA)
        self._cursor = "0-0"
        self._group_ready = False

    def _call(self, fn, *args, **kw):
        """Run one command: BrokerUnavailable for a connection problem, BrokerError otherwise."""
        try:
            if not self._group_ready:
                self.ensure_group()
            return fn(*args, **kw)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"{self.where}: {exc}") from None
        except redis.ResponseError as exc:
            if str(exc).startswith("NOGROUP"):  # the stream was deleted or the server emptied
                log.warning("consumer group gone: creating it again", extra={"group": self.group})
                self._group_ready = False
                raise BrokerUnavailable(f"{self.where}: {exc}") from None
            raise BrokerError(f"{self.where}: {exc}") from None

    def ensure_group(self) -> None:
        """Check the server's version, create the stream and the group if missing."""
        version = str(self.client.info("server").get("redis_version", "0"))
        if tuple(int(x) for x in version.split(".")[:2] if x.isdigit()) < MIN_VERSION:
            raise BrokerError(f"{self.where}: Redis {version}: XAUTOCLAIM needs Redis >= 6.2")
        try:
            self.client.xgroup_create(self.stream, self.group, id=self.start, mkstream=True)
            log.info("consumer group created", extra={"stream": self.stream, "group": self.group})
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def ping(self) -> None:
        self._call(self.client.ping)

    def read(self, count: int, block_ms: int) -> list[Message]:
        got = self._call(self.client.xreadgroup, self.group, self.consumer, {self.stream: ">"},
                         count=count, block=block_ms or None)  # fmt: skip
        return [
            Message(_text(mid), fields or {}) for _, entries in got or [] for mid, fields in entries
        ]

    def claim(self, min_idle_ms: int, count: int) -> list[Message]:
        res = self._call(self.client.xautoclaim, self.stream, self.group, self.consumer,
                         min_idle_ms, start_id=self._cursor, count=count)  # fmt: skip
        self._cursor = _text(res[0])
        entries = [(_text(mid), fields) for mid, fields in res[1] if fields is not None]
        if len(res) > 2 and res[2]:
            log.warning("pending messages deleted from the stream (trimmed?) before delivery",
                        extra={"count": len(res[2])})  # fmt: skip
        if not entries:
            return []
        pending = self._call(self.client.xpending_range, self.stream, self.group,
                             min=entries[0][0], max=entries[-1][0], count=len(entries) * 4,
                             consumername=self.consumer)  # fmt: skip
        times = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [Message(mid, fields, times.get(mid, 2)) for mid, fields in entries]

    def commit(self, commits: Sequence[Commit]) -> list[bool]:
        if not commits:
            return []
        index = {k: i for i, k in enumerate(KINDS)}
        payload = [[c.message_id, f"{self.done_prefix}{c.done}" if c.done else "",
                    [[index[kind], [x for kv in fields.items() for x in kv]]
                     for kind, fields in c.outputs]] for c in commits]  # fmt: skip
        args = [self.group, self.done_ttl_s, self.maxlen, json.dumps(payload)]
        return [bool(x) for x in self._call(self._script, keys=self.keys, args=args)]

    def lag(self) -> dict[str, int | None]:
        for g in self._call(self.client.xinfo_groups, self.stream):
            if _text(g["name"]) == self.group:
                return {"lag": g.get("lag"), "pending": g.get("pending")}
        return {"lag": None, "pending": None}

    def publish(self, entries: Sequence[dict[str, str]], stream: str | None = None) -> list[str]:
        """XADD each entry (one round trip): the producer's side (mmdetect publish)."""
        pipe = self.client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(stream or self.stream, fields)
        return [_text(x) for x in self._call(pipe.execute)]

    def last_entries(self, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """The newest `count` entries of the input stream, newest first (publish --resume)."""
        got = self._call(self.client.xrevrange, self.stream, count=count)
        return [(_text(mid), fields) for mid, fields in got]

    def close(self) -> None:
        self.client.close()


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x
