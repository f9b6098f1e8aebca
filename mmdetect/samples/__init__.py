"""Sample-data generators that are tooling, not on the runtime path (independent.py: the independent-phrasing evaluation set)."""
