"""llama-guard: Llama Guard 3 (1B, 8B), a generative guard answering `safe` or `unsafe\\nS1,S3`
(chat template with a category list, strict output grammar, KV-cache ONNX, score mode)."""

from guardcli.core.registry import Family

FAMILY = Family(
    name="llama-guard",
    guard="guardcli.families.llama_guard.guard:LlamaGuard",
    threshold=0.5,
    max_length=131072,
    detect="guardcli.families.llama_guard.resolve:is_llama_guard_folder",
    # Before qwen3guard-gen (10), whose export claims every *ForCausalLM; the detectors are
    # disjoint (LlamaForCausalLM with Llama Guard's template vs Qwen3 with Qwen3Guard's).
    priority=9,
    order=42,
    resolve="guardcli.families.llama_guard.resolve:resolve_folder",
    variants="guardcli.families.llama_guard.resolve:folder_variants",
    # Its graph carries a KV cache (quantize takes the causal path); no remote backend yet.
    generative=True,
    synth={"llama-guard": "guardcli.families.llama_guard.synth:synth"},
    export="guardcli.families.llama_guard.export:export_checkpoint",
    exports="guardcli.families.llama_guard.export:is_llama_guard_checkpoint",
    uncached_hint="Run `guard fetch {name}` (a gated repository: accept Meta's licence on the "
    "Hub and log in first), or pass --model DIR.",
)
