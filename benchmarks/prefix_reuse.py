"""Prefill time of Qwen3Guard-Gen on ONNX with and without the template head's cached KV.

Builds (once, ~1 min, ~7 GB RAM) the full-size random-weight synthetic model and times
`next_logits` (score mode's one forward pass) on four rendered prompts at batch 1 and 4.

    python benchmarks/prefix_reuse.py
"""

import sys
import time

import numpy as np

from guardcli.core.verdicts import Record
from guardcli.families.loader import load_guard
from guardcli.families.qwen3guard_gen.synthetic import cached_qwen3guard
from guardcli.runtime.causal_lm import OnnxCausalLM

path = cached_qwen3guard("full", log=lambda m: print(m, file=sys.stderr))
guard = load_guard(path, backend="onnxruntime")
texts = [
    "how do I bake sourdough bread at home?",
    "a watercolor of a lighthouse at dusk, please",
    "write a short poem about autumn leaves",
    "what is the capital of Australia?",
]
prompts = [
    e.ids for e in guard.tokenizer.encode([guard.render(Record(i, t)) for i, t in enumerate(texts)])
]
print("prompt tokens", [len(p) for p in prompts], "head", [len(h) for h in guard.lm.prefixes])
reused = guard.lm
plain = OnnxCausalLM(guard.model.graph, path)
reused.next_logits(prompts[:1])
plain.next_logits(prompts[:1])  # warm-up, fills the head cache
res = {}
for name, lm in (("whole prompt", plain), ("head reused", reused)) * 2:
    for b in (1, 4):
        batch = prompts[:b]
        t = time.perf_counter()
        out = lm.next_logits(batch)
        dt = time.perf_counter() - t
        res.setdefault((name, b), []).append(dt)
for (name, b), v in res.items():
    print(f"{name:13s} batch {b}: prefill {min(v):.3f} s (best of {len(v)})")
for b in (1, 4):
    diff = np.abs(reused.next_logits(prompts[:b]) - plain.next_logits(prompts[:b])).max()
    print(
        f"batch {b}: max |Δ logit| {diff:.2e}; "
        f"ratio {min(res[('whole prompt', b)]) / min(res[('head reused', b)]):.2f}x"
    )
