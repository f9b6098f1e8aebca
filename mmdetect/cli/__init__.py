"""`mmdetect <verb>`: the one registry of verbs (cli/commands.py COMMANDS) and the verbs that span
stages (evaluate/thresholds, registry, explain). Imports everything; nothing imports it.
"""
