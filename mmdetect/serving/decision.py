"""One listing's decision as predict, the HTTP service and the review queue write it:
id, tier, labels, probabilities (Decision), and the review fields carried through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Review metadata that scoring never reads; dropped so a bad label cannot cost a listing its score.
REVIEW_FIELDS = ("labels", "label_source", "reviewed_at")


@dataclass(frozen=True)
class Decision:
    """One scored listing: calibrated probabilities, review priority, tier per class, overall tier.

    `model_scores` are the model's raw probabilities (what calibration was fitted on); `rules`
    the rules that fired (policy/combine.py), of the rule set `ruleset` (None: no rules)."""

    id: str
    scores: dict[str, float]
    decisions: dict[str, str]
    decision: str
    priority: float = 0.0
    model_scores: dict[str, float] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    ruleset: str | None = None
    rules_timed_out: tuple[str, ...] = ()  # rules whose regex timed out: they did not fire

    def to_json(self) -> dict:
        slow = {"rules_timed_out": list(self.rules_timed_out)} if self.rules_timed_out else {}
        return {
            "id": self.id,
            "decision": self.decision,
            "priority": self.priority,
            "decisions": self.decisions,
            "scores": self.scores,
            "model_scores": self.model_scores,
            "rules": list(self.rules),
            "ruleset": self.ruleset,
            **slow,
        }
