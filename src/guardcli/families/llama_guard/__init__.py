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
    # The MLCommons hazard names its templates list (S1-S14); S5-S8, S13 and S14 have no OpenAI
    # counterpart. Sex Crimes (trafficking, assault, harassment, prostitution) is sexual content
    # and an illicit act in OpenAI's terms; OpenAI has no category for crimes as such.
    openai_categories={
        "Violent Crimes": ("violence",),
        "Non-Violent Crimes": ("illicit",),
        "Sex Crimes": ("sexual", "illicit"),
        "Child Exploitation": ("sexual/minors",),
        "Indiscriminate Weapons": ("illicit/violent",),
        "Hate": ("hate",),
        "Self-Harm": ("self-harm",),
        "Sexual Content": ("sexual",),
    },
    exports="guardcli.families.llama_guard.export:is_llama_guard_checkpoint",
    uncached_hint="Run `guard fetch {name}` (a gated repository: accept Meta's licence on the "
    "Hub and log in first), or pass --model DIR.",
)
