"""Label Studio over its SDK: create a project from our labeling config, push tasks, pull the
JSON export. The API key comes from LABEL_STUDIO_API_KEY (a personal access token, or a legacy
token where the organisation enables them), never from a command line that `ps` shows."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any


class LabelStudioError(RuntimeError):
    """The server refused or could not be reached; worded for the user."""


def client(url: str, api_key: str | None = None):
    from label_studio_sdk import LabelStudio

    key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not key:
        raise LabelStudioError("set LABEL_STUDIO_API_KEY to a Label Studio access token")
    return LabelStudio(base_url=url.rstrip("/"), api_key=key, timeout=60)


def _call(what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the SDK raises httpx and its own ApiError: one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise LabelStudioError(f"Label Studio {what} failed: {first}") from None


def create_project(ls, title: str, label_config: str) -> int:
    project = _call("project creation", ls.projects.create, title=title, label_config=label_config)
    return int(project.id)


def push_tasks(ls, project: int, tasks: Sequence[dict[str, Any]]) -> int:
    """Import tasks (with their predictions) into a project; returns how many it took."""
    answer = _call("task import", ls.projects.import_tasks, id=project, request=list(tasks))
    return int(getattr(answer, "task_count", None) or len(tasks))


def pull_export(ls, project: int) -> Any:
    """The project's JSON export, every task (annotated or not), decoded."""
    chunks = _call("export", lambda: b"".join(
        ls.projects.exports.download_sync(id=project, export_type="JSON", download_all_tasks=True)))  # fmt: skip
    try:
        return json.loads(chunks)
    except ValueError as exc:
        raise LabelStudioError(f"Label Studio export is not JSON: {exc}") from None
