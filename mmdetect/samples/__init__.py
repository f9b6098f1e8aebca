"""The sample-data generator (tooling, off the runtime path): synthetic listings, photos,
traffic and the README of data_samples/. Imports data only.
"""
