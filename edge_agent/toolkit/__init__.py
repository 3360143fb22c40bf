"""Workstation-side model toolkit: export, quantize, pack, train, sign, push.

Imports torch, transformers and onnx lazily; the daemon never imports this package.
"""
