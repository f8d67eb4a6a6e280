"""Which local folders are hf-seqcls models (no heavy imports: the registry asks every folder)."""

from __future__ import annotations

import json
from pathlib import Path

NAME = "hf-seqcls"
CONFIG_KEY = "guardcli"
# transformers model types whose *ForSequenceClassification is a bidirectional encoder.
ENCODER_TYPES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "deberta",
    "deberta-v2",
    "modernbert",
    "distilbert",
    "electra",
    "camembert",
)


def is_hf_seqcls_folder(model_dir: Path) -> bool:
    """config.json names an encoder *ForSequenceClassification, and no other family's export
    (the seqcls family's decoder graph, `guard export` of the card layout) wrote the folder."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    if not isinstance(data, dict):
        return False
    architectures = data.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return False
    ours = data.get(CONFIG_KEY) or {}
    exported = ours.get("exported_from") if isinstance(ours, dict) else None
    if exported is not None:
        return exported == NAME
    return data.get("model_type") in ENCODER_TYPES
