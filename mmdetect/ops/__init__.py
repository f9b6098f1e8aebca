"""Operations: what a live team runs around the model (registry, feedback, the review round trip).
Imports every earlier stage; nothing but the CLI imports it."""
