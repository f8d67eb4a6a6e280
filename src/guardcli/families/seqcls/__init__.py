"""seqcls: a sequence classifier (CSAM-Guard: Qwen3 encoder, last-token pooling, MLP head)."""
