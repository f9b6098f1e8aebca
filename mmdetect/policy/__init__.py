"""Operating points: calibration, thresholds, certified auto-hide, review budget, decisions and
rules; arrays in, decisions out, the one place every decider calls. Imports data, common.
"""

from mmdetect.policy.config import PolicyConfig, PolicyError, load_policy, policy_from_dict
from mmdetect.policy.decide import (
    FORMAT_VERSION,
    TIERS,
    Decisions,
    check_operating_point,
    decide,
    unfitted_operating_point,
)
from mmdetect.policy.fit import certify_hide, fit_operating_point, review_threshold

__all__ = [
    "FORMAT_VERSION",
    "TIERS",
    "Decisions",
    "PolicyConfig",
    "PolicyError",
    "certify_hide",
    "check_operating_point",
    "decide",
    "fit_operating_point",
    "load_policy",
    "policy_from_dict",
    "review_threshold",
    "unfitted_operating_point",
]
