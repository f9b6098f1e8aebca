"""Bundle format and its checks, TorchScript tracing, ONNX export and runtime, atomic bundle
directories, the registry's on-disk pointer. Imports models, policy, data, common; no training.
"""
