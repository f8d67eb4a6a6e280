"""Qwen3Guard-Gen: a generative guard (chat template, strict output grammar, KV-cache ONNX)."""
