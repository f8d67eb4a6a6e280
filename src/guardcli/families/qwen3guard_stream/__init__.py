"""Qwen3Guard-Stream: a Qwen3 trunk with token-level risk and category heads, judged as text
streams in (`guard stream`), or a whole record at once (`guard classify`); see docs/stream.md."""

from guardcli.core.registry import Family

FAMILY = Family(
    name="qwen3guard-stream",
    guard="guardcli.families.qwen3guard_stream.guard:StreamGuard",
    threshold=0.5,
    max_length=8192,
    detect="guardcli.families.qwen3guard_stream.resolve:is_stream_folder",
    priority=11,
    order=45,
    resolve="guardcli.families.qwen3guard_stream.resolve:resolve_folder",
    variants="guardcli.families.qwen3guard_stream.resolve:folder_variants",
    synth={"qwen3guard-stream": "guardcli.families.qwen3guard_stream.synth:synth"},
    stream="guardcli.families.qwen3guard_stream.load:open_stream",
    export="guardcli.families.qwen3guard_stream.convert:export_checkpoint",
    exports="guardcli.families.qwen3guard_stream.resolve:is_stream_folder",
    fp16="guardcli.families.qwen3guard_stream.export:to_fp16",
    int8_keep_float=(),
    openai_categories={
        "Violent": ("violence",),
        "Non-violent Illegal Acts": ("illicit",),
        "Sexual Content or Sexual Acts": ("sexual",),
        "Suicide & Self-Harm": ("self-harm",),
    },
)
