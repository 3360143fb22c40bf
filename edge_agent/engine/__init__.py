"""Inference: a bundle's tokenizer and onnxruntime graph behind `classify(texts)`."""
