"""Workstation-side model toolkit: export/ (export, quantize, pack) and train/.

Imports torch, transformers and onnx lazily; the daemon never imports this package.
"""
