"""`mmdetect worker` and `mmdetect publish`: listing events from a message broker (docs/worker.md)."""
