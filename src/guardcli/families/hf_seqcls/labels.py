"""Which function turns logits into scores, what each output is called, and which count as unsafe.

- `config.problem_type == "multi_label_classification"`: an independent sigmoid per label;
  anything else (single-label, or unset as transformers leaves it): softmax over the labels.
- Label names come from `config.id2label`.
- Unsafe labels come from `--unsafe-labels` (names or indices), else the catalog entry, else:
  a single-label model's labels other than index 0 (index 1 of a binary head, as Prompt Guard 2's
  MALICIOUS and protectai's INJECTION), and every label of a multi-label model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from guardcli.core.errors import ExitCode, GuardError

MULTI_LABEL = "multi_label_classification"


@dataclass(frozen=True)
class LabelSpec:
    names: tuple[str, ...]
    multi_label: bool
    unsafe: tuple[int, ...]  # indices of the labels that count as unsafe

    @property
    def safe_name(self) -> str:
        """The label a single-label verdict reports when nothing unsafe wins: the most likely
        safe class is reported by `judge`; this is the fallback for a binary head."""
        rest = [n for i, n in enumerate(self.names) if i not in self.unsafe]
        return rest[0] if rest else "safe"


def label_names(config: dict[str, Any]) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    count = config.get("num_labels") or len(id2label) or 2
    return tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(count))


def parse_unsafe_labels(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """`--unsafe-labels MALICIOUS,INJECTION` (or a list) as label names/indices; None: not given."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(v).strip() for v in items if str(v).strip())
    if not names:
        raise GuardError(
            "--unsafe-labels is empty.",
            hint="Name the labels that count as unsafe, e.g. --unsafe-labels MALICIOUS.",
            code=ExitCode.INPUT,
        )
    return names


def label_spec(
    config: dict[str, Any], unsafe_labels: Sequence[str] | None = None, *, model: str = "model"
) -> LabelSpec:
    names = label_names(config)
    multi = config.get("problem_type") == MULTI_LABEL
    if unsafe_labels is None:
        unsafe = (
            tuple(range(len(names))) if multi or len(names) == 1 else tuple(range(1, len(names)))
        )
        return LabelSpec(names, multi, unsafe)
    lowered = {n.lower(): i for i, n in enumerate(names)}
    chosen: list[int] = []
    for label in unsafe_labels:
        if label.lower() in lowered:
            index = lowered[label.lower()]
        elif label.isdigit() and int(label) < len(names):
            index = int(label)
        else:
            raise GuardError(
                f"--unsafe-labels names {label!r}, which is not a label of {model}.",
                hint=f"Its labels (config.json id2label): {', '.join(names)}; or give indices.",
                code=ExitCode.INPUT,
            )
        if index not in chosen:
            chosen.append(index)
    if not multi and len(chosen) == len(names) and len(names) > 1:
        raise GuardError(
            f"--unsafe-labels names every label of {model}: every text would be flagged.",
            hint="Leave at least one safe label.",
            code=ExitCode.INPUT,
        )
    return LabelSpec(names, multi, tuple(sorted(chosen)))


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Sigmoid per label (multi-label) or softmax over labels, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label or logits.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def unsafe_score(probs: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """P(unsafe) per row: the summed probability of the unsafe classes (single-label, as Prompt
    Guard's inference utility sums its score indices), or the highest unsafe label's (multi)."""
    picked = probs[..., list(spec.unsafe)]
    return picked.max(axis=-1) if spec.multi_label else picked.sum(axis=-1)
