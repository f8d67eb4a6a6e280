"""`guard fetch` of a catalog entry whose repo ships a transformers checkpoint and no ONNX
(Llama Prompt Guard 2, Granite Guardian HAP, ...): the downloaded checkpoint is exported in
the family's layout, checked against transformers as `guard export` checks it, and the FP16 /
INT8 variants asked for are made by the same recipes as `guard quantize`; the graphs (and the
config.json the export writes) are then filed into the cached snapshot, so the entry resolves
offline like one whose repo ships its graphs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from guardcli.core.cache import _matching
from guardcli.core.catalog import get_entry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.fetch_plan import FetchResult, fetch_result, variant_patterns
from guardcli.core.model_entry import ONNX_VARIANT_FILES
from guardcli.jobs.convert.export import export_checkpoint
from guardcli.jobs.convert.quantize import quantize_model


def export_fetched(result: FetchResult, log: Callable[[str], None] = lambda _: None) -> FetchResult:
    """Make the variants `result` still needs from its checkpoint; the finished FetchResult."""
    entry = get_entry(result.name)
    # A variant of the checkpoint itself (a torch one: its safetensors) is already there.
    present = set(result.files)
    unknown = [
        v
        for v in result.variants
        if v not in ONNX_VARIANT_FILES and not _matching(present, [entry.variants[v][0]])
    ]
    wanted = [v for v in result.variants if v in ONNX_VARIANT_FILES]
    if unknown:
        raise GuardError(
            f"'{entry.name}' ships no graphs, and guard makes only "
            f"{', '.join(ONNX_VARIANT_FILES)} from its checkpoint (not {', '.join(unknown)}).",
            hint="Fetch --variant fp32 or int8, then `guard quantize` for the other runtimes.",
            code=ExitCode.INPUT,
        )
    snapshot = result.path
    # The work folder sits beside the snapshot (same filesystem: the files move, not copy).
    with tempfile.TemporaryDirectory(dir=snapshot.parent, prefix=".guard-export-") as tmp:
        work = Path(tmp) / "model"
        log(f"exporting {entry.repo} to ONNX (no graphs in the repo) …")
        export_checkpoint(snapshot, work, family=entry.family, log=log)
        targets = [v for v in wanted if v != "fp32"]
        # What the family's export did not make already (Qwen3Guard-Stream's makes INT8 too).
        todo = [v for v in targets if not (work / ONNX_VARIANT_FILES[v]).is_file()]
        if todo:
            # Every MatMul per row (batch-invariant), as `guard synth` and `guard export` make them.
            quantize_model(work, todo, keep_float=(), log=log)
        for variant in ("fp32", *targets):
            rel = ONNX_VARIANT_FILES[variant]
            for path in sorted((work / rel).parent.glob(Path(rel).name + "*")):
                dest = snapshot / path.relative_to(work)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), dest)
        # The export records max_length in config.json: the cached file becomes that one (the
        # snapshot's file is a link into the hub's blob store, which is left as it was).
        config = snapshot / "config.json"
        config.unlink()
        shutil.move(str(work / "config.json"), config)
    return fetch_result(entry, result.variants, snapshot, variant_patterns(entry, result.variants))
