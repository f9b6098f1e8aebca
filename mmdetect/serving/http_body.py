"""The HTTP service's request and answer plumbing: reading a body under the deadline and the
size limit (read_body, Disconnected), JSON answers and error bodies (answer, _error).
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from starlette.requests import ClientDisconnect

from mmdetect.serving.decision import Decision
from mmdetect.serving.inputs import BodyError, Parsed
from mmdetect.serving.responses import SafeJSONResponse as JSONResponse


class Disconnected(BodyError):
    """The client went away before its body was in: nobody to answer."""

    def __init__(self) -> None:
        super().__init__(499, "client disconnected before the body was read")


async def read_body(request: Request, limit: int, seconds: float = 3600.0) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes, declared or streamed; 408
    unless all of it is in within `seconds` (a client sending a byte a second is cut);
    Disconnected if the client leaves mid-body."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"body: {declared} bytes over the limit of {limit}")
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body: over the limit of {limit} bytes")
            chunks.append(chunk)

    try:  # wait_for, not asyncio.timeout: Python 3.10 is supported
        await asyncio.wait_for(read(), max(seconds, 0.001))
    except asyncio.TimeoutError:
        got = sum(map(len, chunks))
        raise BodyError(
            408, f"body: not received within {seconds:.3g} s ({got} bytes in)"
        ) from None
    except ClientDisconnect:
        raise Disconnected() from None
    return b"".join(chunks)


def answer(p: Parsed, outcome: tuple[str, Decision] | BaseException | None) -> dict:
    """One listing's item: the decision and the bundle that scored it, or its error."""
    if p.error is not None:
        return {"index": p.index, "id": p.id, "error": p.error}
    if isinstance(outcome, BaseException) or outcome is None:
        error = {"field": "-", "reason": "scoring_error", "message": str(outcome)[:300]}
        return {"index": p.index, "id": p.id, "error": error}
    bundle, d = outcome
    out = {"id": d.id, "bundle": bundle, "decision": d.decision, "decisions": d.decisions,
           "scores": d.scores, "priority": d.priority, "rules": list(d.rules),
           "ruleset": d.ruleset}  # fmt: skip
    if d.rules_timed_out:
        out["rules_timed_out"] = list(d.rules_timed_out)
    if p.photo_problems:
        out["photo_problems"] = p.photo_problems
    return out


def _error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status in (408, 499):  # the rest of a slow or abandoned body is not worth reading
        headers["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)
