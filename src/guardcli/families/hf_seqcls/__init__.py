"""hf-seqcls: any transformers encoder *ForSequenceClassification (BERT, RoBERTa, DeBERTa-v2/v3,
ModernBERT, ...) exported to ONNX."""

from guardcli.core.registry import Family

FAMILY = Family(
    name="hf-seqcls",
    guard="guardcli.families.hf_seqcls.guard:HfSeqClsGuard",
    threshold=0.5,
    max_length=512,
    # config.json names an encoder classifier that no other family's export wrote; asked after
    # the marker families (a dialogue folder's config may name an encoder too).
    detect="guardcli.families.hf_seqcls.detect:is_hf_seqcls_folder",
    priority=40,
    order=50,
    runs_onnx=True,
    synth={"hf-seqcls": "guardcli.families.hf_seqcls.synth:synth"},
    export="guardcli.families.hf_seqcls.export:export_checkpoint",
    exports="guardcli.families.hf_seqcls.detect:is_hf_seqcls_folder",
    # The toxicity labels of Detoxify's models (unbiased-toxic-roberta and its kin).
    openai_categories={
        "toxicity": ("harassment",),
        "severe_toxicity": ("harassment",),
        "insult": ("harassment",),
        "threat": ("harassment/threatening",),
        "identity_attack": ("hate",),
        "sexual_explicit": ("sexual",),
    },
)
