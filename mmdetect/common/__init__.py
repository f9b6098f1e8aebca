"""Helpers every stage may use: atomic outputs, staging pids, CLI argument types,
image normalisation constants, hardware probes, optional extras. Imports nothing else from mmdetect.
"""
