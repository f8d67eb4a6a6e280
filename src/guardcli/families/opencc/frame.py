"""OpenCC's checkpoint description: `weight_frame.json`, `train_config.json`, the thresholds
sidecar, and where the base model lives. Plain JSON reading; no torch here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardcli.core.cache import cached_snapshot
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.thresholds import canonical_category, parse_thresholds

TAXONOMY = (
    "Benign",
    "CBRN",
    "Cyber",
    "Harm to Minors",
    "Harmful Manipulation",
    "Hate Speech",
    "Illegal Activities",
    "Information Integrity",
    "Physical Harm",
    "Privacy",
    "Self-Harm",
    "Sexual Content",
)
HARM_CATEGORIES = TAXONOMY[1:]
JAILBREAK_LABELS = ("benign", "jailbreak")
JAILBREAK_THRESHOLD = 0.34
DEFAULT_MAX_LENGTH = 512
FRAME_KEYS = ("classifier", "jailbreak_classifier")
LORA_DEFAULTS: dict[str, Any] = {
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_target_modules": ["q_proj", "v_proj"],
}
# A folder named `base` inside the model folder holds the base model when it is not in the
# Hugging Face cache (how `guard synth` writes it, and how an offline copy can carry it).
LOCAL_BASE = "base"


@dataclass(frozen=True)
class OpenCCFrame:
    path: Path
    jailbreak: bool
    base_model: str
    objective: str  # multilabel | softmax
    taxonomy: tuple[str, ...]
    head_file: Path
    adapter_file: Path
    thresholds: dict[str, float] = field(default_factory=dict)  # calibrated, per category
    threshold: float | None = None  # the jailbreak model's
    lora: dict[str, Any] = field(default_factory=dict)
    max_length: int = DEFAULT_MAX_LENGTH

    @property
    def categories(self) -> tuple[str, ...]:
        """The harm categories a verdict reports (every label but Benign)."""
        return tuple(c for c in self.taxonomy if c.casefold() != "benign")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GuardError(f"Cannot read {path}: {exc}.") from None


def _taxonomy(value: Any, where: Path, known: tuple[str, ...]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):  # {"0": "Benign", ...} or {"Benign": 0, ...}
        if all(isinstance(v, int) for v in value.values()):
            return tuple(str(k) for k, _ in sorted(value.items(), key=lambda kv: kv[1]))
        return tuple(str(value[k]) for k in sorted(value, key=lambda k: int(k)))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(canonical_category(v, known) for v in value)
    raise GuardError(f"{where}: 'taxonomy' must be a list of label names.")


def _jailbreak_sidecar(path: Path) -> float:
    data = _json(path)
    if isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if isinstance(data, dict) and isinstance(data.get("threshold"), int | float):
        return float(data["threshold"])
    values = list(parse_thresholds(data, str(path), ExitCode.MODEL).values())
    if len(values) != 1:
        raise GuardError(f"{path}: expected one jailbreak threshold, found {len(values)}.")
    return values[0]


def read_frame(model_dir: Path) -> OpenCCFrame:
    """Everything needed to rebuild an OpenCC classifier, from the files it ships."""
    model_dir = Path(model_dir)
    wf_path, tc_path = model_dir / "weight_frame.json", model_dir / "train_config.json"
    frame: dict[str, Any] = {}
    key = "classifier"
    if wf_path.exists():
        data = _json(wf_path)
        found = [k for k in FRAME_KEYS if isinstance(data, dict) and k in data]
        if not found or not isinstance(data[found[0]], dict):
            raise GuardError(
                f"{wf_path} has neither a 'classifier' nor a 'jailbreak_classifier' object."
            )
        key, frame = found[0], data[found[0]]
    train = _json(tc_path) if tc_path.exists() else {}
    if not frame and not train:
        raise GuardError(
            f"{model_dir} has no weight_frame.json or train_config.json: not an OpenCC model."
        )
    jailbreak = key == "jailbreak_classifier" or (
        "threshold" in frame and "thresholds" not in frame
    )
    base_model = frame.get("base_model") or train.get("model_name")
    if not base_model:
        raise GuardError(f"{model_dir}: no base_model in weight_frame.json or train_config.json.")
    objective = str(frame.get("objective") or train.get("objective") or "softmax")
    known = () if jailbreak else TAXONOMY
    taxonomy = _taxonomy(frame.get("taxonomy") or train.get("taxonomy"), wf_path, known) or (
        JAILBREAK_LABELS if jailbreak else TAXONOMY
    )
    head = frame.get("head_filename") or (
        "jailbreak_head.pt" if jailbreak else "classification_head.pt"
    )
    adapter = next(
        (
            model_dir / n
            for n in ("adapter_model.safetensors", "adapter_model.bin")
            if (model_dir / n).exists()
        ),
        model_dir / "adapter_model.safetensors",
    )
    lora = {k: train.get(k, frame.get(k, v)) for k, v in LORA_DEFAULTS.items()}
    max_length = int(
        frame.get("max_length") or train.get("max_length") or train.get("max_seq_length") or 0
    )
    thresholds: dict[str, float] = {}
    threshold: float | None = None
    if jailbreak:
        if isinstance(frame.get("threshold"), int | float):
            threshold = float(frame["threshold"])
        elif (model_dir / "threshold.json").exists():
            threshold = _jailbreak_sidecar(model_dir / "threshold.json")
        else:
            threshold = JAILBREAK_THRESHOLD
    else:
        raw = frame.get("thresholds")
        where = f"{wf_path} 'thresholds'"
        if raw is None and (model_dir / "thresholds.json").exists():
            where = str(model_dir / "thresholds.json")
            raw = _json(model_dir / "thresholds.json")
        if raw is not None:
            parsed = parse_thresholds(raw, where, ExitCode.MODEL)
            thresholds = {canonical_category(k, taxonomy): v for k, v in parsed.items()}
    return OpenCCFrame(
        path=model_dir,
        jailbreak=jailbreak,
        base_model=str(base_model),
        objective=objective,
        taxonomy=tuple(taxonomy),
        head_file=model_dir / head,
        adapter_file=adapter,
        thresholds=thresholds,
        threshold=threshold,
        lora=lora,
        max_length=max_length or DEFAULT_MAX_LENGTH,
    )


def find_base(frame: OpenCCFrame, cache_dir: str | None = None) -> Path:
    """The base model's folder: `base_model` as a path (absolute, or relative to the model
    folder), else the model folder's `base/`, else the Hugging Face cache (offline)."""
    as_path = Path(frame.base_model).expanduser()
    for candidate in (as_path, frame.path / as_path, frame.path / LOCAL_BASE):
        if candidate.is_dir() and (candidate / "config.json").exists():
            return candidate
    if "/" in frame.base_model:
        snapshot = cached_snapshot(frame.base_model, cache_dir=cache_dir)
        if snapshot is not None and (snapshot / "config.json").exists():
            return snapshot
    raise GuardError(
        f"The base model {frame.base_model} of {frame.path} is not in the cache.",
        hint=f"Download it with `hf download {frame.base_model}`, or put a copy of it in "
        f"{frame.path / LOCAL_BASE}.",
    )


def tokenizer_dir(frame: OpenCCFrame, base: Path | Callable[[], Path]) -> Path:
    """The checkpoint's tokenizer, else the base model's (`base` may be a callable, so that a
    folder with its own tokenizer never needs its base found)."""
    if (frame.path / "tokenizer.json").exists():
        return frame.path
    return base() if callable(base) else base


# The record `guard export` leaves beside an OpenCC graph: which adapter and head it came from.
EXPORT_INFO = "onnx/opencc_export.json"


def sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export_info(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / EXPORT_INFO
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stale_export(frame: OpenCCFrame) -> str | None:
    """Which file (adapter, head) changed since the graph was exported from it, if any."""
    info = read_export_info(frame.path)
    for key, path in (("adapter_sha256", frame.adapter_file), ("head_sha256", frame.head_file)):
        recorded, now = info.get(key), sha256(path)
        if recorded and now and recorded != now:
            return path.name
    return None
