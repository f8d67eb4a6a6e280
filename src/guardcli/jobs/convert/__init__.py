"""Make model artifacts: tokenizers, ONNX exports, FP16/INT8 variants."""
