"""Workstation: torch checkpoint -> ONNX graph -> INT8 graph -> bundle."""
