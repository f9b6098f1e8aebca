"""The default taxonomy and its severities. Logic never names a class: it takes the list from
config; the severities below are only defaults a policy file can override."""

DEFAULT_TAXONOMY: tuple[str, ...] = (
    "counterfeit",
    "stolen_goods",
    "adult",
    "cash_voucher",
    "game_account",
    "keyword_stuffing",
    "inappropriate",
)

# Relative harm of letting one violation through (docs/operating-points.md): the review queue is
# ordered by severity x calibrated probability. Legal exposure and direct victims weigh 1.0;
# fraud-adjacent trades 0.8-0.6; spam that only degrades search 0.3. A class not named here
# (a custom taxonomy) weighs 1.0.
DEFAULT_SEVERITY: dict[str, float] = {
    "counterfeit": 1.0,
    "stolen_goods": 1.0,
    "adult": 1.0,
    "cash_voucher": 0.8,
    "game_account": 0.6,
    "keyword_stuffing": 0.3,
    "inappropriate": 0.5,
}
