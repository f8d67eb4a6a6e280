"""--backend llamacpp: GGUF files written by runtime.gguf_export from the tiny synthetic
qwen3guard-gen and llama-guard checkpoints, run by llama.cpp (llama-cpp-python), against
transformers (the reference: TorchCausalLM in float32) on the same rendered prompts. Writing
the three GGUF files of each model takes ~15 s, so the tests on them are marked slow.

The writer's tests need only the `gguf` package; the door errors need neither; the runtime
tests need `llama_cpp` too (the 'llamacpp' extra builds llama.cpp from source; CI skips them)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.core.verdicts import Record
from guardcli.runtime.causal_lm import TorchCausalLM

from .. import model_store
from ..conftest import invoke

HAS_GGUF = importlib.util.find_spec("gguf") is not None
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
NO_GGUF = "the 'gguf' package (llamacpp extra) is absent"
needs_gguf = pytest.mark.skipif(not HAS_GGUF, reason=NO_GGUF)
needs_llama = pytest.mark.skipif(
    not (HAS_GGUF and HAS_LLAMA),
    reason="llama_cpp (llama-cpp-python, the llamacpp extra, built from source) is absent",
)
MARKER = "zorblax"
CONVERSATIONS = [
    [{"role": "user", "content": "How do I bake bread?"}],
    [{"role": "user", "content": f"a {MARKER} lighthouse please"}],
    [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": f"meadow {MARKER} lantern"},
    ],
    [
        {"role": "user", "content": "what is a good name for a cat?"},
        {"role": "assistant", "content": "Biscuit, or maybe Pepper."},
    ],
]


def _tiny(name: str, tmp: pytest.TempPathFactory) -> Path:
    """A private copy of a stored tiny model (GGUF files get written into it)."""
    if name == "qwen3guard-gen":
        from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

        src = cached_tiny_qwen3guard()
    else:
        from guardcli.families.llama_guard.synth import synth_llama_guard

        src = model_store.cached_build(
            "llama-guard-tiny",
            "guardcli.families.llama_guard.synth",
            "synth_llama_guard(size='tiny', seed=0)",
            lambda out: synth_llama_guard(out, size="tiny", seed=0),
            tmp.mktemp("models") / "llama-guard-tiny",
        )
    out = tmp.mktemp("gguf") / name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("onnx"))
    return out


@pytest.fixture(scope="module", params=["qwen3guard-gen", "llama-guard"])
def folder(request, tmp_path_factory) -> Path:
    """A tiny model with its gguf-f16 and gguf-q8_0 variants and, where llama.cpp can run it,
    an F32 GGUF beside them."""
    from guardcli.jobs.convert.quantize import quantize_model
    from guardcli.runtime.gguf_export import write_gguf

    if not HAS_GGUF:
        pytest.skip(NO_GGUF)
    out = _tiny(request.param, tmp_path_factory)
    quantize_model(out, ["gguf-f16", "gguf-q8_0"])
    if HAS_LLAMA:
        write_gguf(out, out / "f32.gguf", "f32")
    return out


def _prompts(folder: Path) -> tuple[object, list[list[int]]]:
    guard = load_guard(folder, backend="torch", dtype="float32")
    records = [
        Record(id=str(i), text=None, messages=c, line=i) for i, c in enumerate(CONVERSATIONS)
    ]
    return guard, [e.ids for e in guard.encode([guard.render(r) for r in records])]


# ---------------------------------------------------------------------------- the writer


@pytest.mark.slow
@needs_gguf
def test_gguf_holds_the_checkpoint(folder: Path) -> None:
    """Metadata from config.json, one tensor per checkpoint tensor (plus Llama 3's rope
    factors), matrices F16 / vectors F32 with the checkpoint's values, and tokenizer.json's
    tokens and merges."""
    import gguf

    from guardcli.runtime.gguf_export import permute_rotary, read_safetensors

    config = json.loads((folder / "config.json").read_text())
    reader = gguf.GGUFReader(folder / "gguf-f16" / "model.gguf")
    arch = {"qwen3": "qwen3", "llama": "llama"}[config["model_type"]]

    def field(key):
        return reader.fields[key].contents()

    assert field("general.architecture") == arch
    assert field(f"{arch}.block_count") == config["num_hidden_layers"]
    assert field(f"{arch}.embedding_length") == config["hidden_size"]
    assert field(f"{arch}.feed_forward_length") == config["intermediate_size"]
    assert field(f"{arch}.attention.head_count") == config["num_attention_heads"]
    assert field(f"{arch}.attention.head_count_kv") == config["num_key_value_heads"]
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == {"qwen3": "qwen2", "llama": "llama-bpe"}[arch]
    eos = config["eos_token_id"]
    assert field("tokenizer.ggml.eos_token_id") in (eos if isinstance(eos, list) else [eos])
    spec = json.loads((folder / "tokenizer.json").read_text())
    tokens = reader.fields["tokenizer.ggml.tokens"]
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    by_id.update({a["id"]: a["content"] for a in spec["added_tokens"]})
    assert len(tokens.data) == config["vocab_size"]
    assert all(tokens.contents(i) == by_id[i] for i in range(0, len(by_id), 97))
    assert len(reader.fields["tokenizer.ggml.merges"].data) == len(spec["model"]["merges"])

    weights = dict(read_safetensors(folder))
    tensors = {t.name: t for t in reader.tensors}
    extra = 1 if arch == "llama" else 0  # rope_freqs
    assert len(tensors) == len(weights) + extra
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), 2)
    for name, array in weights.items():
        t = tensors[names.get_name(name, try_suffixes=(".weight",))]
        assert list(t.shape) == list(reversed(array.shape))
        assert t.tensor_type.name == ("F32" if array.ndim == 1 else "F16")
        if arch == "llama" and "q_proj" in name:
            array = permute_rotary(array, config["num_attention_heads"])
        if arch == "llama" and "k_proj" in name:
            array = permute_rotary(array, config["num_key_value_heads"])
        stored = np.asarray(t.data, dtype=np.float32).reshape(array.shape)
        want = array if array.ndim == 1 else array.astype(np.float16).astype(np.float32)
        assert np.array_equal(stored, want)


@pytest.mark.slow
@needs_gguf
def test_q8_0_blocks_dequantize_to_the_weights(folder: Path) -> None:
    """Q8_0: each block of 32 values is within half a step of its scale (max |x| / 127). The
    blocks do not depend on the architecture: checked on Llama Guard's file, whose small
    vocabulary reads in a second (Qwen's 151,643 tokens and merges take the reader ~10 s)."""
    if folder.name != "llama-guard":
        pytest.skip("the same quantizer: checked on the llama-guard file")
    import gguf
    from gguf import quants

    from guardcli.runtime.gguf_export import read_safetensors

    weights = dict(read_safetensors(folder))
    reader = gguf.GGUFReader(folder / "gguf-q8_0" / "model.gguf")
    embed = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert embed.tensor_type.name == "Q8_0"
    back = quants.dequantize(np.asarray(embed.data), embed.tensor_type)
    ref = weights["model.embed_tokens.weight"]
    blocks = ref.reshape(-1, 32)
    step = np.abs(blocks).max(axis=1, keepdims=True) / 127
    # Half a step of rounding, plus the scale's own rounding to float16 (relative 2^-11) times
    # at most 127 steps.
    assert np.all(np.abs(back.reshape(-1, 32) - blocks) <= step * (0.5 + 127 * 2**-11) + 1e-8)


def test_gguf_without_the_package_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    from guardcli.core.errors import GuardError
    from guardcli.runtime.gguf_export import write_gguf

    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(GuardError) as err:
        write_gguf(tmp_path, tmp_path / "x.gguf", "f16")
    assert "pip install 'guardcli[llamacpp]'" in (err.value.hint or "")


# ---------------------------------------------------------------------------- the door


@pytest.fixture(scope="module")
def plain_qwen(tmp_path_factory) -> Path:
    return _tiny("qwen3guard-gen", tmp_path_factory)


def test_llamacpp_not_installed_is_refused_at_the_door(
    plain_qwen: Path, monkeypatch, runner
) -> None:
    import guardcli.families.generative as generative

    monkeypatch.setattr(generative, "llamacpp_available", lambda: False)
    result = invoke(runner, ["classify", "--model", str(plain_qwen), "--backend", "llamacpp", "hi"])
    assert result.exit_code == 2
    assert "pip install 'guardcli[llamacpp]'" in result.stderr
    assert result.stdout == ""


def test_folder_without_gguf_names_the_quantize_command(
    plain_qwen: Path, monkeypatch, runner
) -> None:
    import guardcli.families.generative as generative

    monkeypatch.setattr(generative, "llamacpp_available", lambda: True)
    result = invoke(runner, ["classify", "--model", str(plain_qwen), "--backend", "llamacpp", "hi"])
    assert result.exit_code == 2
    assert f"guard quantize {plain_qwen} --to gguf-q8_0" in result.stderr
    result = invoke(runner, ["classify", "--model", str(plain_qwen), "--variant", "gguf-f16", "hi"])
    assert result.exit_code == 2 and "--to gguf-f16" in result.stderr


def test_onnx_variant_on_llamacpp_is_refused(plain_qwen: Path, runner) -> None:
    args = ["classify", "--model", str(plain_qwen), "--backend", "llamacpp", "--variant", "int8"]
    result = invoke(runner, [*args, "hi"])
    assert result.exit_code == 2
    assert "does not run on llamacpp" in result.stderr


def test_gguf_variant_on_torch_is_refused(plain_qwen: Path, runner) -> None:
    (plain_qwen / "gguf-f16").mkdir(exist_ok=True)
    (plain_qwen / "gguf-f16" / "model.gguf").write_bytes(b"")  # never read: refused first
    try:
        args = ["classify", "--model", str(plain_qwen), "--variant", "gguf-f16"]
        result = invoke(runner, [*args, "--backend", "torch", "hi"])
    finally:
        shutil.rmtree(plain_qwen / "gguf-f16")
    assert result.exit_code == 2
    assert "The gguf-f16 variant runs on llamacpp, not torch." in result.stderr


def test_gguf_of_a_classifier_is_refused(tiny_model: Path, tmp_path: Path, runner) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    result = invoke(runner, ["quantize", str(folder), "--to", "gguf-q8_0"])
    assert result.exit_code == 2
    assert "not a generative guard" in result.stderr


# ---------------------------------------------------------------------------- llama.cpp


@pytest.mark.slow
@needs_llama
def test_greedy_tokens_and_logits_match_transformers(folder: Path) -> None:
    """F32 GGUF: next-token logits within 2e-3 of transformers' float32 (both compute in
    float32; they differ in summation order and kernels only, ~1e-6 relative per op, and the
    tiny models' logits are O(10)); F16 GGUF: the same greedy tokens."""
    from guardcli.runtime.causal_llamacpp import LlamaCppCausalLM

    guard, prompts = _prompts(folder)
    ref = TorchCausalLM(folder, threads=1, dtype="float32")
    f32 = LlamaCppCausalLM(folder / "f32.gguf", folder, threads=1)
    want = ref.next_logits(prompts)
    got = f32.next_logits(prompts)
    assert np.max(np.abs(got - want)) <= 2e-3
    assert (got.argmax(-1) == want.argmax(-1)).all()
    heads = guard.lm.prefixes if hasattr(guard.lm, "prefixes") else ()
    f16 = LlamaCppCausalLM(folder / "gguf-f16" / "model.gguf", folder, threads=1, prefixes=heads)
    assert f16.generate(prompts, 12) == ref.generate(prompts, 12)


@pytest.mark.slow
@needs_llama
def test_head_kept_equals_whole_prompt(folder: Path) -> None:
    """With the template head's KV kept, logits equal the whole prompt's within 1e-4 (the
    tail's tokens are computed in a different batch, F32 weights)."""
    from guardcli.runtime.causal_llamacpp import LlamaCppCausalLM

    _guard, prompts = _prompts(folder)
    n = 0  # the head the two prompt-moderation inputs share; the responses have another
    while all(len(p) > n + 1 and p[n] == prompts[0][n] for p in prompts[:2]):
        n += 1
    lm = LlamaCppCausalLM(folder / "f32.gguf", folder, threads=1, prefixes=[prompts[0][:n]])
    whole = LlamaCppCausalLM(folder / "f32.gguf", folder, threads=1)
    assert n >= 16
    kept = lm.next_logits(prompts + prompts[::-1])
    assert lm.held == tuple(prompts[0][:n])  # kept: the last prompt has it
    assert np.max(np.abs(kept - whole.next_logits(prompts + prompts[::-1]))) <= 1e-4


@pytest.mark.slow
@needs_llama
def test_q8_0_gives_the_same_verdicts(folder: Path) -> None:
    records = [{"id": str(i), "messages": c} for i, c in enumerate(CONVERSATIONS)]
    torch = load_guard(folder, backend="torch", dtype="float32").classify(records)
    q8 = load_guard(folder, backend="llamacpp", variant="gguf-q8_0").classify(records)
    assert [v.variant for v in q8] == ["gguf-q8_0"] * len(records)
    for a, b in zip(torch, q8, strict=True):
        assert (a.flagged, a.label, a.categories, a.error) == (
            b.flagged,
            b.label,
            b.categories,
            b.error,
        )


@pytest.mark.slow
@needs_llama
def test_classify_end_to_end_like_torch(folder: Path, tmp_path: Path, runner) -> None:
    """`guard classify --backend llamacpp` (F16) gives torch's verdict records: the same ids,
    labels, categories, severities and refusals; scores within 0.01."""
    lines = [json.dumps({"id": f"r{i}", "messages": c}) for i, c in enumerate(CONVERSATIONS)]
    data = "\n".join(lines) + "\n"
    base = ["classify", "--model", str(folder), "--format", "jsonl", "-"]
    torch = invoke(runner, [*base, "--backend", "torch", "--dtype", "float32"], input=data)
    llama = invoke(runner, [*base, "--backend", "llamacpp", "--variant", "gguf-f16"], input=data)
    assert torch.exit_code == llama.exit_code
    want = [json.loads(x) for x in torch.stdout.splitlines()]
    got = [json.loads(x) for x in llama.stdout.splitlines()]
    assert [g["variant"] for g in got] == ["gguf-f16"] * len(lines)
    for w, g in zip(want, got, strict=True):
        assert abs(w.pop("score") - g.pop("score")) <= 0.01
        w.pop("variant"), g.pop("variant")
        assert w == g


@pytest.mark.slow
@needs_llama
def test_unparsable_answer_is_an_error_record(folder: Path) -> None:
    """Fail closed: an answer cut short (1 new token) is an error verdict, never safe."""
    records = [{"id": "a", "messages": CONVERSATIONS[0]}]
    guard = load_guard(folder, backend="llamacpp", variant="gguf-f16", max_new_tokens=1)
    (verdict,) = guard.classify(records)
    assert verdict.error is not None and verdict.flagged is not False


@pytest.mark.slow
@needs_llama
def test_served_like_classify(folder: Path) -> None:
    """`guard serve` on the llama.cpp backend answers /v1/classify with the library's verdicts
    (the served batcher runs llama.cpp from its own thread)."""
    import httpx

    from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app

    records = [{"id": str(i), "messages": c} for i, c in enumerate(CONVERSATIONS)]
    guard = load_guard(folder, backend="llamacpp", variant="gguf-f16")
    want = [v.to_dict() for v in guard.classify(records)]
    app = create_app(guard, ServeOptions(max_batch=4, max_wait_ms=5))
    with BackgroundServer(app) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(300):
                if client.get("/readyz").status_code == 200:
                    break
            got = client.post("/v1/classify", json={"records": records}).json()["verdicts"]
    assert got == want
