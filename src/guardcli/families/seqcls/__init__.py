"""seqcls: an ONNX sequence classifier (CSAM-Guard: Qwen3 encoder, last-token pooling, MLP head).
The fallback family: a folder no other family claims is one."""

from guardcli.core.registry import Family

FAMILY = Family(
    name="seqcls",
    guard="guardcli.families.classifier:SeqClsGuard",
    threshold=0.5,
    max_length=384,  # CSAM-Guard's
    entry_max_length=512,  # a models.toml entry: the usual fine-tune context
    priority=1000,
    order=10,
    runs_onnx=True,
    synth={"csam-guard": "guardcli.families.seqcls.synthetic:synth"},
    export="guardcli.families.seqcls.export:export_checkpoint",
)
