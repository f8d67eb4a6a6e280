"""Shared fixtures: one tiny random-weight CSAM-Guard model per test session, real runtimes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from . import model_store

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-litellm",
        action="store_true",
        help="Fail, rather than skip, the LiteLLM proxy tests when .venv-litellm is missing "
        "(`make test`, which builds it, passes this).",
    )


@pytest.fixture(scope="session")
def litellm_bin(request: pytest.FixtureRequest) -> Path:
    """LiteLLM's proxy lives in its own venv (litellm[proxy] pins huggingface_hub<2, which the
    project's venv cannot share); `make test` builds it."""
    if LITELLM.exists():
        return LITELLM
    message = f"needs the LiteLLM proxy at {LITELLM.relative_to(ROOT)}: run `make test`"
    if request.config.getoption("--require-litellm"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's caches or configuration, nor touch the network:
    Hugging Face's cache, guard's own cache (converted tokenizers, trained tiny models, optimized
    graphs, OpenVINO blobs), models.toml and the stored `probe-cpu --verify` result all live in
    this session's temporary folder, and no GUARD_* setting of the user's leaks in."""
    home = tmp_path_factory.mktemp("home")
    for name in [n for n in os.environ if n.startswith("GUARD_")]:
        del os.environ[name]
    os.environ.pop("HF_TOKEN", None)
    os.environ["HF_HOME"] = str(home / "hf")
    os.environ["HF_HUB_CACHE"] = str(home / "hf" / "hub")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["XDG_CACHE_HOME"] = str(home / "cache")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["GUARD_CACHE"] = str(home / "cache" / "guardcli")
    os.environ["COLUMNS"] = "120"
    # `guard bench` measures the GEMM limit on the model's shapes (seconds); the tests that
    # check it ask with --limits.
    os.environ["GUARD_BENCH_LIMITS"] = "0"
    # `--variant auto` follows a stored `probe-cpu --verify` measurement: never the user's.
    os.environ["GUARD_PROBE_RESULT"] = str(home / "probe-cpu.json")
    # The converted Qwen3 tokenizers (seconds to build) start in the cache, from the store.
    import guardcli.families.qwen3guard_gen.synthetic as qwen3guard
    import guardcli.runtime.qwen_tokenizer as qwen_tokenizer

    def tokenizers(folder: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GUARD_CACHE", str(folder))
            qwen_tokenizer.qwen3_tokenizer_path()
            qwen_tokenizer.qwen3_tokenizer_path(append_eos=True)

    recipe = "qwen3_tokenizer_path(), qwen3_tokenizer_path(append_eos=True)"
    cache = Path(os.environ["GUARD_CACHE"])
    model_store.cached_build("qwen3-tokenizers", qwen_tokenizer.__name__, recipe, tokenizers, cache)
    # `cached_tiny_qwen3guard()` trains into this cache: from the store too.

    train = qwen3guard.synth_qwen3guard_gen

    def stored(out: Path, *, size: str = "tiny", seed: int = 0, **options) -> Path:
        if options.keys() - {"log"}:
            return train(out, size=size, seed=seed, **options)
        return model_store.cached_build(
            f"qwen3guard-gen-{size}",
            qwen3guard.__name__,
            f"synth_qwen3guard_gen(size={size!r}, seed={seed})",
            lambda folder: train(folder, size=size, seed=seed),
            Path(out),
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(qwen3guard, "synth_qwen3guard_gen", stored)
        yield


def _stored(tmp: pytest.TempPathFactory, name: str, builder: str, recipe: str, build) -> Path:
    return model_store.cached_build(name, builder, recipe, build, tmp.mktemp("models") / name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CSAM-Guard of the real architecture: fp32, fp16 and int8 ONNX, real tokenizer."""
    from guardcli.families.seqcls.synthetic import synth_csam_guard

    def build(out: Path) -> Path:
        return synth_csam_guard(out, size="tiny")

    recipe = "synth_csam_guard(size='tiny')"
    return _stored(
        tmp_path_factory, "csam-guard-tiny", "guardcli.families.seqcls.synthetic", recipe, build
    )


@pytest.fixture(scope="session")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CSAM-Guard whose head outputs NaN: a broken model, which must never be judged safe."""
    import inspect

    import torch

    import guardcli.families.seqcls.synthetic as synthetic

    make = synthetic.build_csam_guard_module

    def broken(size: str = "tiny", seed: int = 0):
        module = make(size, seed)
        with torch.no_grad():
            module.head[2].bias.fill_(float("nan"))
        return module

    def build(out: Path) -> Path:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(synthetic, "build_csam_guard_module", broken)
            return synthetic.synth_csam_guard(out, size="tiny", variants=("fp32",))

    recipe = inspect.getsource(broken) + inspect.getsource(build)
    return _stored(
        tmp_path_factory, "csam-guard-nan", "guardcli.families.seqcls.synthetic", recipe, build
    )


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], input: str | bytes | None = None):
    """Run `guard ARGS` in-process; stdout and stderr come back separately."""
    from guardcli.cli import app

    return runner.invoke(app, args, input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def opencc_cm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCC content-moderation checkpoint (LoRA + head + thresholds) on a tiny Qwen3.5."""
    from guardcli.families.opencc.synthetic import synth_opencc

    def build(out: Path) -> Path:
        return synth_opencc(out, "opencc-cm")

    builder, recipe = "guardcli.families.opencc.synthetic", "synth_opencc('opencc-cm')"
    return _stored(tmp_path_factory, "opencc-cm", builder, recipe, build)


@pytest.fixture(scope="session")
def opencc_jb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCC jailbreak detector (threshold.json sidecar)."""
    from guardcli.families.opencc.synthetic import synth_opencc

    def build(out: Path) -> Path:
        return synth_opencc(out, "opencc-jb", seed=1)

    builder, recipe = "guardcli.families.opencc.synthetic", "synth_opencc('opencc-jb', seed=1)"
    return _stored(tmp_path_factory, "opencc-jb", builder, recipe, build)


@pytest.fixture(scope="session")
def intent_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dialogue-intent classifier: safetensors, task description, ONNX fp32/fp16/int8."""
    from guardcli.families.dialogue.synthetic import synth_intent_ctx

    builder, recipe = "guardcli.families.dialogue.synthetic", "synth_intent_ctx()"
    return _stored(tmp_path_factory, "intent-ctx", builder, recipe, synth_intent_ctx)


@pytest.fixture
def quick_gemm_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """GEMM limits timed for a few hundredths of a second per shape and path: the tests that
    use it check what a measurement is made of and where it goes, not how fast this CPU is."""
    from guardcli.runtime import gemm_check, gemm_limits

    monkeypatch.setattr(gemm_check, "SECONDS_PER_VARIANT", 0.05)
    monkeypatch.setattr(gemm_limits, "SECONDS_PER_SHAPE", 0.05)
