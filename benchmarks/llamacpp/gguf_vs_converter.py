"""guard's GGUF writer (runtime.gguf_export) against llama.cpp's own convert_hf_to_gguf.py on the
same checkpoint: metadata keys and values, tensor names, shapes, types and bytes, and llama.cpp's
next-token logits from both files on the same token ids. A development check, not a test (the
converter needs llama.cpp's source, torch, transformers and sentencepiece).

    PYTHONPATH=src:LLAMA_CPP_SITE .venv/bin/python benchmarks/llamacpp/gguf_vs_converter.py \\
        MODEL_DIR --llama-cpp SRC/vendor/llama.cpp --pydeps PYDEPS --outtype f32

A synthetic Llama Guard's stand-in tokenizer is not one the converter knows by its hash; its
pre-tokenizer is Llama 3's regex, so the converter is told "llama-bpe", the name guard writes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CONVERT = """
import sys, runpy
src, pydeps, llama_bpe = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
sys.path[:0] = [src, src + "/gguf-py", pydeps]
if llama_bpe:
    import conversion.base as base
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"
sys.argv = ["convert_hf_to_gguf.py", *sys.argv[4:]]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
"""
# Keys that only name the model (the converter derives them from the folder name).
NAMING = {"general.name", "general.basename", "general.finetune", "general.size_label"}


def fields(reader) -> dict:
    import gguf

    out = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in NAMING:
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            out[key] = [f.contents(i) for i in range(len(f.data))]
        else:
            out[key] = f.contents()
    return out


def logits(path: Path, model_dir: Path, ids: list[int]) -> np.ndarray:
    """llama.cpp's next-token logits after `ids`, through guard's backend (which turns off
    llama.cpp's extra buffer types where they crash)."""
    from guardcli.runtime.causal_llamacpp import LlamaCppCausalLM

    return LlamaCppCausalLM(path, model_dir, threads=1).next_logits([ids])[0]


def main() -> int:
    import gguf

    from guardcli.runtime.gguf_export import write_gguf

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source folder")
    ap.add_argument("--pydeps", type=Path, required=True, help="a folder with sentencepiece")
    ap.add_argument("--outtype", default="f32", choices=("f32", "f16", "q8_0"))
    args = ap.parse_args()
    config = json.loads((args.model / "config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "guard.gguf", Path(tmp) / "converter.gguf"
        write_gguf(args.model, ours, args.outtype)
        llama_bpe = "1" if config["model_type"] == "llama" else "0"
        cmd = [sys.executable, "-c", CONVERT, str(args.llama_cpp), str(args.pydeps), llama_bpe]
        cmd += [str(args.model), "--outtype", args.outtype, "--outfile", str(theirs)]
        subprocess.run(cmd, check=True, capture_output=True)
        a, b = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)
        fa, fb = fields(a), fields(b)
        problems = [f"key only in guard's: {k}" for k in sorted(fa.keys() - fb.keys())]
        problems += [f"key only in the converter's: {k}" for k in sorted(fb.keys() - fa.keys())]
        problems += [f"value differs: {k}" for k in sorted(fa.keys() & fb.keys()) if fa[k] != fb[k]]
        ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
        problems += [f"tensor only in one file: {n}" for n in sorted(ta.keys() ^ tb.keys())]
        for name in sorted(ta.keys() & tb.keys()):
            x, y = ta[name], tb[name]
            if (x.tensor_type, list(x.shape)) != (y.tensor_type, list(y.shape)):
                problems.append(
                    f"tensor {name}: {x.tensor_type.name} {list(x.shape)} vs "
                    f"{y.tensor_type.name} {list(y.shape)}"
                )
            elif not np.array_equal(np.asarray(x.data), np.asarray(y.data)):
                problems.append(f"tensor {name}: different bytes")
        ids = list(range(10, 10 + min(64, config["vocab_size"] - 10)))
        gap = float(np.max(np.abs(logits(ours, args.model, ids) - logits(theirs, args.model, ids))))
    print(
        f"{args.model}: {len(ta)} tensors, {len(fa)} metadata keys compared "
        f"(naming keys skipped); max |logit difference| {gap:.3g}"
    )
    for p in problems:
        print(f"  {p}")
    return 1 if problems or gap > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
