"""Slow clients and connection floods, cut at the server protocol (uvicorn's httptools one).

uvicorn (0.55) has a keep-alive timeout (idle between requests) and `limit_concurrency`, which
answers 503 to every request once that many connections are open, /healthz included, while it
keeps accepting. It has no deadline for a request's headers, and a response sent before its body
was read leaves the connection open for the rest of that body (a byte a second keeps it alive).
So the protocol here adds, per connection:

- a header deadline: from the connection's first byte (or its opening) to the end of the
  request's headers, at most `header_timeout_s`, else the connection is closed;
- at most `max_connections` open connections: one more is closed at once (not queued, not
  answered), so the file descriptors of the process are never exhausted;
- a response sent before the request's body was in closes the connection.

The body deadline is the request's (--timeout-s, mmdetect.serving.http_body.read_body: 408). Cut
connections are logged as one info line a second at most, with counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class _CutLog:
    """Counts cut connections by reason; logs them at most once a second."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.last = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] += 1
        self.total[reason] += 1
        now = time.monotonic()
        if now - self.last >= 1.0:
            log.info("connections cut", extra={"cut": dict(self.counts)})
            self.counts.clear()
            self.last = now


CUT = _CutLog()


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header deadline and a connection limit (see the module doc);
    make a configured subclass with `guarded_protocol`."""

    header_timeout_s: float = 5.0
    max_connections: int = 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            CUT.add("max_connections")
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            CUT.add("header_timeout")
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a keep-alive connection's next request: its headers have the deadline too

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            CUT.add("body_unread")
            self.transport.close()  # what is buffered is still written first


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedProtocol]:
    """A GuardedProtocol subclass with these limits (uvicorn.Config(http=...) takes a class)."""
    attrs = {"header_timeout_s": header_timeout_s, "max_connections": max_connections}
    return type("GuardedProtocol", (GuardedProtocol,), attrs)


def uvicorn_options(header_timeout_s: float = 5.0, max_connections: int = 1024) -> dict:
    """The uvicorn.Config arguments `mmdetect serve` runs with (tests start the app with them)."""
    return {"http": guarded_protocol(header_timeout_s, max_connections),
            "timeout_keep_alive": max(1, round(header_timeout_s))}  # fmt: skip
