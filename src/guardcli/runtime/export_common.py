"""What every family's torch -> ONNX export shares: tokenizer files, the config key, the check
prompts, the checked result and the 4-D causal mask."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import ExitCode, GuardError, input_error
from guardcli.runtime.onnx_recipes import model_size

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)

# config.json key for what guardcli adds (not "max_length": old configs use it for generation).
CONFIG_KEY = "guardcli"
# Neutral prompts of different lengths, so that the check runs a padded batch.
CHECK_PROMPTS = (
    "A watercolor of a lighthouse at dusk.",
    "hi",
    "Write a short poem about the sea, the wind and a small boat that returns home at night.",
    "Ein Rezept für Apfelkuchen, bitte.",
    "¿Cuál es la capital de Australia?\n",
    "Summarise the plot of a detective novel set in 1920s Shanghai in three sentences.",
)


@dataclass
class ExportResult:
    out: Path
    kind: str
    graph: Path
    bytes: int
    external_data: bool
    max_abs_diff: float
    prompts: int
    tolerance: float
    notes: list[str] = field(default_factory=list)
    reference: str = "PyTorch"  # what the summary says the graph was checked against
    # How the summary line names what was exported ("" = "from KIND"), and what to add after it.
    origin: str = ""
    advice: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    @classmethod
    def checked(
        cls,
        out: Path,
        kind: str,
        graph: Path,
        diff: float,
        prompts: int,
        tolerance: float,
        *,
        reference: str,
        hint: str,
    ) -> ExportResult:
        """The result of an export whose logits differ from `reference` by `diff`; a
        GuardError (exit 3, files left for a look) when that is above `tolerance`."""
        result = cls(
            out=out,
            kind=kind,
            graph=graph,
            bytes=model_size(graph),
            external_data=graph.with_name(graph.name + "_data").exists(),
            max_abs_diff=diff,
            prompts=prompts,
            tolerance=tolerance,
        )
        if not result.ok:
            raise GuardError(
                f"The ONNX export differs from {reference}: max |Δ logit| {diff:.3g} > "
                f"{tolerance:g} on {prompts} prompts.",
                hint=f"Do not ship {graph}. {hint}",
                code=ExitCode.MODEL,
            )
        return result


def additive_causal_mask(torch: Any, attention_mask: Any) -> Any:
    """[B, 1, L, L] float mask: 0 where a query may attend, the float minimum elsewhere.

    Handing the encoder a 4-D mask keeps the TorchScript export free of the DynamicCache/vmap
    machinery transformers uses to build masks from a 2-D one."""
    length = attention_mask.shape[1]
    keys = attention_mask.bool()[:, None, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = causal[None, None, :, :] & keys
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
        ~allowed, torch.finfo(torch.float32).min
    )


def copy_tokenizer(dirs: list[Path], out: Path) -> list[str]:
    """Copy the tokenizer files from the first folder that has tokenizer.json."""
    for folder in dirs:
        if (folder / "tokenizer.json").exists():
            copied = []
            for name in TOKENIZER_FILES:
                if (folder / name).exists():
                    shutil.copyfile(folder / name, out / name)
                    copied.append(name)
            return copied
    raise input_error(
        f"No tokenizer.json in {' or '.join(str(d) for d in dirs)}.",
        "guardcli runs fast tokenizers: save one with "
        "AutoTokenizer.from_pretrained(...).save_pretrained(SRC).",
    )


def remove_stale_variants(out: Path, log=lambda _: None) -> None:
    """Variants made from an earlier model.onnx would no longer match a new one."""
    for variant in ("fp16", "int8"):
        stale = out / ONNX_VARIANT_FILES[variant]
        for path in (stale, stale.with_name(stale.name + "_data")):
            if path.exists():
                log(f"removing {path} (made from the previous export)")
                path.unlink()
