"""qwen3guard-gen: a generative guard (chat template, strict output grammar, KV-cache ONNX)."""

from guardcli.core.registry import Family

FAMILY = Family(
    name="qwen3guard-gen",
    guard="guardcli.families.qwen3guard_gen.guard:Qwen3GuardGen",
    threshold=0.5,
    max_length=32768,
    detect="guardcli.families.qwen3guard_gen.resolve:is_qwen3guard_folder",
    priority=10,
    order=40,
    resolve="guardcli.families.qwen3guard_gen.resolve:resolve_folder",
    variants="guardcli.families.qwen3guard_gen.resolve:folder_variants",
    generative=True,
    synth={"qwen3guard-gen": "guardcli.families.qwen3guard_gen.synthetic:synth"},
    export="guardcli.families.qwen3guard_gen.export:export_checkpoint",
    exports="guardcli.families.qwen3guard_gen.export:is_causal_lm",
    openai_categories={
        "Violent": ("violence",),
        "Non-violent Illegal Acts": ("illicit",),
        "Sexual Content or Sexual Acts": ("sexual",),
        "Suicide & Self-Harm": ("self-harm",),
    },
    uncached_hint="Run `guard fetch {name}`, pass --model DIR, or use --endpoint URL for a "
    "served copy.",
)
