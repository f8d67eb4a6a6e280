"""OpenCC: a frozen Qwen3 base plus a LoRA adapter and heads (weight_frame.json)."""
