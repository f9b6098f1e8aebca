"""The review round trip with Label Studio: tasks with pre-annotations and an audit sample out,
reviewers' labels back as reviews.jsonl for `feedback merge` (docs/review.md)."""
