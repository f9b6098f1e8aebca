"""The small interface the worker needs from a message broker (Redis Streams: redis_streams.py).

A broker hands out messages of one input stream to the consumers of one group (each message to
one consumer at a time), hands a message that a dead consumer held to a live one after an idle
time, and commits a batch: each message's outputs written and the message acknowledged in one
atomic step, skipped where the message's `done` key was committed before. A Kafka or NATS
JetStream adapter implements the same five methods (docs/worker.md says what changes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# The output streams an event can produce; the adapter maps each kind to a stream name.
KINDS = ("decisions", "actions", "reviews", "dead")


class BrokerError(RuntimeError):
    """The broker cannot be used as configured (bad URL, refused command): not retried."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached now (refused, reset, timed out): retried with backoff."""


@dataclass(frozen=True)
class Message:
    """One delivered message: its broker id, its fields, how often it has been delivered."""

    id: str
    fields: dict[str, bytes]
    deliveries: int = 1


@dataclass
class Commit:
    """What one message produced: outputs by kind (KINDS) and the key that makes it once-only.

    `done`: the idempotency key (listing id, version); None for a dead letter, which is written
    whenever its message is committed."""

    message_id: str
    outputs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    done: str | None = None


class Broker(Protocol):
    """What the worker loop calls; every method may raise BrokerUnavailable."""

    def read(self, count: int, block_ms: int) -> list[Message]:
        """Up to `count` messages never delivered to this group, waiting up to block_ms."""

    def claim(self, min_idle_ms: int, count: int) -> list[Message]:
        """Messages delivered to some consumer but not committed for min_idle_ms, now ours."""

    def commit(self, commits: Sequence[Commit]) -> list[bool]:
        """Write each commit's outputs and acknowledge its message, all at once; per commit,
        False where its `done` key was already committed (nothing written, message acked)."""

    def lag(self) -> dict[str, int | None]:
        """{"lag": messages not yet delivered to the group, "pending": delivered, not acked}."""

    def close(self) -> None: ...
