"""The default taxonomy. Logic never names a class: it takes the list from config."""

DEFAULT_TAXONOMY: tuple[str, ...] = (
    "counterfeit",
    "stolen_goods",
    "adult",
    "cash_voucher",
    "game_account",
    "keyword_stuffing",
    "inappropriate",
)
