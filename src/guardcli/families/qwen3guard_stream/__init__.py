"""Qwen3Guard-Stream: a Qwen3 trunk with token-level risk and category heads, judged as text
streams in (../../../shared/specs/qwen3guard-stream.md; issue 17)."""
