"""ExplainGate: explain=true requests on the HTTP service are bounded outside the Batcher (at most
`limit` at once, 429 beyond; 504 past the deadline, the slot held until the thread ends)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mmdetect.explain import service
from mmdetect.explain.service import ExplainGate, ExplainRefused


def _blocking(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """explain_scored replaced by one that waits for `release` (and says it `entered`)."""
    entered, release = threading.Event(), threading.Event()

    def slow(predictor, listing, root):
        entered.set()
        release.wait(10)
        return {"id": getattr(listing, "id", listing)}  # a Listing from the HTTP layer

    monkeypatch.setattr(service, "explain_scored", slow)
    return entered, release


def test_the_gate_refuses_beyond_its_limit_and_past_the_deadline(monkeypatch):
    entered, release = _blocking(monkeypatch)

    async def scenario() -> None:
        gate = ExplainGate(limit=2)
        first = asyncio.ensure_future(gate.run(None, "a", None, 5.0))
        second = asyncio.ensure_future(gate.run(None, "b", None, 0.2))
        await asyncio.sleep(0.05)
        assert gate.running == 2
        with pytest.raises(ExplainRefused) as busy:
            await gate.run(None, "c", None, 5.0)
        assert busy.value.status == 429 and busy.value.retry_after_s >= 1
        with pytest.raises(ExplainRefused) as late:
            await second  # waited 0.2 s: 504, but its thread still runs and holds the slot
        assert late.value.status == 504
        assert gate.running == 2
        with pytest.raises(ExplainRefused) as none_left:
            await gate.run(None, "d", None, 5.0)
        assert none_left.value.status == 429
        release.set()
        assert await first == {"id": "a"}
        for _ in range(100):  # the abandoned thread ends: its slot comes back
            if gate.running == 0:
                break
            await asyncio.sleep(0.01)
        assert gate.running == 0
        assert await gate.run(None, "e", None, 5.0) == {"id": "e"}
        with pytest.raises(ExplainRefused) as expired:
            await gate.run(None, "f", None, 0.0)  # no time left: not started at all
        assert expired.value.status == 504 and gate.running == 0

    asyncio.run(scenario())
    assert entered.is_set()


def test_the_gate_needs_at_least_one_slot():
    with pytest.raises(ValueError, match="concurrency"):
        ExplainGate(limit=0)


def test_retry_after_follows_the_last_explanation(monkeypatch):
    monkeypatch.setattr(service, "explain_scored", lambda p, x, r: time.sleep(0.05) or {})
    gate = ExplainGate()
    asyncio.run(gate.run(None, "a", None, 5.0))
    assert 0.05 <= gate.last_s < 1 and gate.retry_after_s() == 1
    gate.last_s = 2.3
    assert gate.retry_after_s() == 3
