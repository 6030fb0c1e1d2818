"""ONNX export, precision variants and their release gates."""
