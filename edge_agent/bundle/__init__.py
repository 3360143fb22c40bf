"""The model bundle format and nothing else: manifest, files, versions, signatures, ONNX scan."""
