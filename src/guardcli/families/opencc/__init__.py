"""opencc: a frozen Qwen3 base plus a LoRA adapter and linear heads (weight_frame.json)."""

from guardcli.core.registry import Family

OPENCC_MARKER = "weight_frame.json"

FAMILY = Family(
    name="opencc",
    guard="guardcli.families.opencc.guard:OpenCCGuard",
    threshold=0.5,
    max_length=512,
    marker=OPENCC_MARKER,
    priority=20,
    order=30,
    resolve="guardcli.families.opencc.resolve:resolve_folder",
    variants="guardcli.families.opencc.resolve:folder_variants",
    export="guardcli.families.opencc.export:export_checkpoint",
    exports="guardcli.families.opencc.export:is_opencc_folder",
    export_in_place=True,
    openai_categories={
        "CBRN": ("illicit/violent",),
        "Hate Speech": ("hate",),
        "Illegal Activities": ("illicit",),
        "Physical Harm": ("violence",),
        "Self-Harm": ("self-harm",),
        "Sexual Content": ("sexual",),
    },
    synth={
        "opencc-cm": "guardcli.families.opencc.synthetic:synth",
        "opencc-jb": "guardcli.families.opencc.synthetic:synth",
    },
)
