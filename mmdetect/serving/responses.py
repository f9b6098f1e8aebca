"""A JSONResponse that cannot fail on text a client sent: lone surrogates come back escaped."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class SafeJSONResponse(JSONResponse):
    """starlette's JSONResponse writes UTF-8 (ensure_ascii=False), which a lone surrogate such
    as "\\ud800" cannot be encoded in; then the document is written with \\uXXXX escapes
    (still valid JSON) instead of raising UnicodeEncodeError (a plain-text 500)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False,
                              separators=(",", ":")).encode("ascii")  # fmt: skip
