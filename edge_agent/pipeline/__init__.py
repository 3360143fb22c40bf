"""PURE message core: deliveries in, publishes out. No paho, onnxruntime, config or daemon."""
