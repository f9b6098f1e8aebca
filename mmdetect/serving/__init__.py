"""The HTTP scoring service (`mmdetect serve`): FastAPI + uvicorn, dynamic batching, blue-green
bundle switching over a registry. docs/serving.md describes the API and the switch protocol."""
