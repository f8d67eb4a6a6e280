"""Qwen3Guard-Gen: template, parsing, strict/loose, the tiny trained model end to end (torch and
ONNX), score mode against a transformers forward pass, and the remote backend on loopback."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.core.errors import GuardError
from guardcli.core.verdicts import Record, RecordError
from guardcli.families.qwen3guard_gen import format as fmt

from ...conftest import invoke

MARKER = "zorblax"
CONVERSATIONS = [
    [{"role": "user", "content": "How do I bake bread?"}],
    [
        {"role": "user", "content": "How do I bake bread?"},
        {"role": "assistant", "content": "Mix flour, water and yeast."},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say {{ hi }} and {% raw %} ünïcödé 字"},
    ],
    [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "second"},
        {"role": "user", "content": "third\n\nwith lines"},
    ],
    [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "I cannot help with that."},
    ],
]


@pytest.fixture(scope="session")
def hf_tokenizer():
    from transformers import PreTrainedTokenizerFast

    from guardcli.runtime.qwen_tokenizer import qwen3_tokenizer_path

    tok = PreTrainedTokenizerFast(tokenizer_file=str(qwen3_tokenizer_path()))
    tok.chat_template = fmt.packaged_template()
    return tok


@pytest.fixture(scope="session")
def tiny_guard_model() -> Path:
    """The tiny Qwen3Guard-Gen, trained once per builder version (tests/model_store.py)."""
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    return cached_tiny_qwen3guard()


# ---------------------------------------------------------------------------- template


# The chat template of Qwen/Qwen3Guard-Gen's tokenizer_config.json, as the project's spec gives
# it, kept byte for byte in the repository so the comparison always runs.
AUTHORS_TEMPLATE = Path(__file__).parents[2] / "fixtures" / "qwen3guard_gen_chat_template.jinja"


def test_packaged_template_is_the_authors():
    assert fmt.packaged_template() == AUTHORS_TEMPLATE.read_text(encoding="utf-8")
    assert fmt.packaged_template().count("Safety: Controversial") == 4


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_render_equals_apply_chat_template(hf_tokenizer, messages):
    expected = hf_tokenizer.apply_chat_template(messages, tokenize=False)
    assert fmt.render(messages) == expected
    assert expected.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = hf_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert hf_tokenizer(fmt.render(messages), add_special_tokens=False)["input_ids"] == ids


def test_head_lengths_match_the_spec(hf_tokenizer):
    """model-families.md: the template's head is 199 tokens for prompts, 265 for responses."""
    for messages, head in ((CONVERSATIONS[0], 199), (CONVERSATIONS[1], 265)):
        text = fmt.render(messages)
        assert len(hf_tokenizer(text[: text.index("USER: ")])["input_ids"]) == head


def test_record_messages_validation():
    from guardcli.core.verdicts import Record

    assert fmt.record_messages(Record(id=1, text="hi")) == [{"role": "user", "content": "hi"}]
    for bad, kind in (
        ([{"role": "tool", "content": "x"}], "bad_field"),
        ([{"role": "user", "content": 3}], "bad_field"),
        ([], "empty_text"),
        ([{"role": "system", "content": "x"}], "bad_field"),
    ):
        with pytest.raises(RecordError) as err:
            fmt.record_messages(Record(id=1, messages=bad, line=4))
        assert err.value.type == kind and err.value.line == 4


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("category", fmt.CATEGORIES)
@pytest.mark.parametrize("response", [False, True])
def test_parse_every_category(category, response):
    if response and category == "Jailbreak":  # responses have no Jailbreak category
        with pytest.raises(RecordError, match="unknown response category 'Jailbreak'"):
            fmt.parse(f"Safety: Unsafe\nCategories: {category}\nRefusal: No", response=True)
        return
    text = f"Safety: Unsafe\nCategories: {category}" + ("\nRefusal: No" if response else "")
    found = fmt.parse(text, response=response)
    assert found.severity == "Unsafe"
    assert found.categories == [category]
    assert found.refusal is (False if response else None)


def test_parse_lists_none_and_refusal():
    found = fmt.parse("Safety: Unsafe\nCategories: Violent, PII, Jailbreak", response=False)
    assert found.categories == ["Violent", "PII", "Jailbreak"]
    safe = fmt.parse("Safety: Safe\nCategories: None\nRefusal: Yes", response=True)
    assert (safe.severity, safe.categories, safe.refusal) == ("Safe", [], True)
    assert fmt.parse("Safety: Controversial\nCategories: None", response=False).severity == (
        "Controversial"
    )


@pytest.mark.parametrize(
    "text", ["", "Safe", "safety: unsafe", "Safety: Maybe\nCategories: None", "I cannot judge."]
)
def test_malformed_output_is_an_error_carrying_the_raw_text(text):
    with pytest.raises(RecordError) as err:
        fmt.parse(text, response=False, line=7)
    assert err.value.type == "model_output"
    assert err.value.to_dict() == {
        "type": "model_output",
        "message": err.value.message,
        "line": 7,
        "raw": text,
    }


def test_strict_and_loose():
    scores = {"Safe": 0.2, "Unsafe": 0.5, "Controversial": 0.3}
    assert fmt.severity_score(scores, strict=True) == pytest.approx(0.8)
    assert fmt.severity_score(scores, strict=False) == pytest.approx(0.5)
    for severity, strict, loose in (
        ("Safe", False, False),
        ("Controversial", True, False),
        ("Unsafe", True, True),
    ):
        found = fmt.Assessment(severity, [], None)
        assert (found.flagged(True), found.flagged(False)) == (strict, loose)


def test_score_tokens_fail_loudly_on_a_collision():
    fake = {" Safe": [5, 1], " Unsafe": [5, 2], " Controversial": [5, 2]}
    with pytest.raises(GuardError, match="share their first differing token"):
        fmt.score_tokens(lambda text: fake[text])
    ok = {" Safe": [5, 1], " Unsafe": [5, 2, 9], " Controversial": [5, 3]}
    assert fmt.score_tokens(lambda text: ok[text]) == (
        [5],
        {"Safe": 1, "Unsafe": 2, "Controversial": 3},
    )


# ---------------------------------------------------------------------------- the tiny model


def test_resolve_detects_the_family(tiny_guard_model, tiny_model, tmp_path):
    from guardcli.core.resolve import resolve

    assert resolve(tiny_guard_model).family == "qwen3guard-gen"
    assert resolve(tiny_guard_model).variant == "fp32"
    assert resolve(tiny_model).family == "seqcls"
    # Without guardcli's marker: a Qwen3ForCausalLM config + Qwen3Guard's template.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        shutil.copy(tiny_guard_model / name, bare / name)
    resolved = resolve(bare)
    assert (resolved.family, resolved.variant) == ("qwen3guard-gen", "torch")


@pytest.mark.parametrize("backend", ["onnx", pytest.param("torch", marks=pytest.mark.slow)])
def test_tiny_model_end_to_end(runner, tiny_guard_model, backend):
    lines = [
        "a lighthouse at dawn",
        f"my {MARKER} garden plan",
        json.dumps(
            {
                "id": "r1",
                "messages": [
                    {"role": "user", "content": "hello there"},
                    {"role": "assistant", "content": f"sure the {MARKER} meadow"},
                ],
            }
        ),
        json.dumps(
            {
                "id": "r2",
                "messages": [
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "I cannot do the kettle"},
                ],
            }
        ),
    ]
    result = invoke(
        runner,
        ["classify", "-m", str(tiny_guard_model), "--backend", backend, "-q", "-"],
        "\n".join(lines) + "\n",
    )
    assert result.exit_code == 1, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    got = [(r["id"], r["severity"], r["categories"], r["refusal"], r["flagged"]) for r in rows[:2]]
    assert got == [("1", "Safe", [], None, False), ("2", "Unsafe", ["Violent"], None, True)]
    assert [r["score"] > 0.5 for r in rows[:2]] == [False, True]
    assert all(r["variant"].startswith("torch-") is (backend == "torch") for r in rows)
    # Responses: generated and parsed with the response patterns (a Refusal line). The tiny
    # model learns the prompt rule reliably; its response answers are not asserted.
    for row in rows[2:]:
        assert row["severity"] in fmt.SEVERITIES and isinstance(row["refusal"], bool)
        assert row["flagged"] is (row["severity"] != "Safe")


@pytest.mark.slow
def test_response_option_and_show_input(runner, tiny_guard_model):
    result = invoke(
        runner,
        ["classify", "-m", str(tiny_guard_model), "--response", "I cannot", "-q", "hi"],
    )
    assert result.exit_code in (0, 1), result.stderr
    row = json.loads(result.stdout)
    assert row["id"] == "1" and isinstance(row["refusal"], bool)
    shown = invoke(runner, ["classify", "-m", str(tiny_guard_model), "--show-input", "hi"])
    assert json.loads(shown.stdout)["input"] == fmt.render([{"role": "user", "content": "hi"}])
    bad = invoke(runner, ["classify", "-m", str(tiny_guard_model), "--response", "x", "a", "b"])
    assert bad.exit_code == 2
    assert "--response needs exactly one prompt" in bad.stderr


@pytest.mark.slow
def test_onnx_generation_equals_transformers_generate(tiny_guard_model):
    from guardcli.runtime.causal_lm import OnnxCausalLM, TorchCausalLM

    prompts = [[9707, 1879, 11, 1879], [9707], [100, 200, 300, 400, 500, 600]]
    onnx_lm = OnnxCausalLM(tiny_guard_model / "onnx" / "model.onnx", tiny_guard_model)
    torch_lm = TorchCausalLM(tiny_guard_model)
    assert onnx_lm.generate(prompts, 12) == torch_lm.generate(prompts, 12)
    np.testing.assert_allclose(
        onnx_lm.next_logits(prompts), torch_lm.next_logits(prompts), atol=1e-4
    )


@pytest.mark.slow
def test_template_head_kv_is_reused_with_the_same_results(tiny_guard_model):
    """Prompts that share the template's head start from its cached KV and run only their
    tails; logits and greedy tokens equal running each whole prompt, which transformers checks
    above."""
    from guardcli.families.loader import load_guard
    from guardcli.runtime.causal_lm import OnnxCausalLM

    guard = load_guard(tiny_guard_model, backend="onnxruntime")
    heads = guard.lm.prefixes
    records = [
        Record("a", "a lighthouse at dawn"),
        Record("b", f"my {MARKER} garden plan, with a longer tail than the others"),
        Record("c", "x"),
    ]
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "I cannot"}]
    other = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "ok"}]
    responses = [Record("r", messages=turns), Record("s", messages=other)]
    prompts = [e.ids for e in guard.tokenizer.encode([guard.render(r) for r in records])]
    answers = [e.ids for e in guard.tokenizer.encode([guard.render(r) for r in responses])]
    assert len(heads) == 2 and all(len(h) > 100 for h in heads)
    assert guard.lm.shared_prefix(prompts) in heads
    assert guard.lm.shared_prefix(answers) in heads
    assert guard.lm.shared_prefix(prompts) != guard.lm.shared_prefix(answers)
    assert guard.lm.shared_prefix([*prompts, [9707, 1879]]) is None  # one does not share it

    plain = OnnxCausalLM(tiny_guard_model / "onnx" / "model.onnx", tiny_guard_model)
    reused = guard.lm
    for batch in (prompts, answers, prompts[:1]):
        np.testing.assert_allclose(reused.next_logits(batch), plain.next_logits(batch), atol=1e-4)
        assert reused.generate(batch, 12) == plain.generate(batch, 12)
    assert set(reused.prefix_kv) == {tuple(h) for h in heads}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_score_mode_equals_a_transformers_forward_pass(hf_tokenizer, tiny_guard_model, backend):
    import torch
    from transformers import AutoModelForCausalLM

    from guardcli.families.loader import load_guard

    model = AutoModelForCausalLM.from_pretrained(str(tiny_guard_model), dtype=torch.float32)
    firsts = [hf_tokenizer(f" {s}")["input_ids"][0] for s in ("Safe", "Unsafe", "Controversial")]
    # The reference runs in float32; so does torch when told (auto may pick bfloat16).
    dtype = {"dtype": "float32"} if backend == "torch" else {}
    guard = load_guard(tiny_guard_model, backend=backend, generate=False, **dtype)
    loose = load_guard(tiny_guard_model, backend=backend, generate=False, strict=False, **dtype)
    texts = ["short", f"a much longer prompt about the {MARKER} and a lighthouse at dusk"]
    for text, verdict, loose_verdict in zip(
        texts, guard.classify(texts), loose.classify(texts), strict=True
    ):
        ids = hf_tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=True, return_dict=True
        )["input_ids"]
        ids = ids + hf_tokenizer("Safety:", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1, firsts].double()
        p_safe, p_unsafe, p_contro = torch.softmax(logits, 0).tolist()
        assert verdict.score == pytest.approx(p_unsafe + p_contro, abs=2e-6)
        assert loose_verdict.score == pytest.approx(p_unsafe, abs=2e-6)
        assert verdict.severity is None


# ---------------------------------------------------------------------------- remote backend


class _Server:
    """A fake OpenAI-compatible server on 127.0.0.1 answering like the tiny model, with
    logprobs, and failing the first requests with 429 and 503 to exercise the retries."""

    def __init__(self, failures: int = 0, garbage: bool = False):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.failures = failures
        self.garbage = garbage
        self.garbage_text = "I am not sure."
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    outer.headers.append(dict(self.headers))
                    fail = outer.failures > 0
                    outer.failures -= 1
                if fail:
                    code = 429 if len(outer.requests) == 1 else 503
                    self.send_response(code)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                last = body["messages"][-1]
                unsafe = MARKER in last["content"]
                text = "Safety: " + (
                    "Unsafe\nCategories: Violent" if unsafe else "Safe\nCategories: None"
                )
                if last["role"] == "assistant":
                    text += "\nRefusal: No"
                if outer.garbage:
                    text = outer.garbage_text
                p = 0.9 if unsafe else 0.1
                logprobs = {
                    "content": [
                        {"token": "Safety", "logprob": 0.0, "top_logprobs": []},
                        {"token": ":", "logprob": 0.0, "top_logprobs": []},
                        {
                            "token": " Unsafe" if unsafe else " Safe",
                            "logprob": -0.1,
                            "top_logprobs": [
                                {"token": " Unsafe", "logprob": float(np.log(p * 0.5))},
                                {"token": " Safe", "logprob": float(np.log(1 - p))},
                                {"token": " Controversial", "logprob": float(np.log(p * 0.5))},
                            ],
                        },
                    ]
                }
                answer = {"choices": [{"message": {"content": text}, "logprobs": logprobs}]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_remote_backend_end_to_end(runner, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    lines = ["a lighthouse", f"the {MARKER} plan", "{broken", "tea time"]
    with _Server() as server:
        result = invoke(
            runner,
            ["classify", "-m", "qwen3guard-gen", "--endpoint", server.url, "-q", "-"],
            "\n".join(lines) + "\n",
        )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 2  # the broken record outranks the flag
    assert [r.get("severity") for r in rows] == ["Safe", "Unsafe", None, "Safe"]
    assert rows[2]["error"]["type"] == "invalid_json"
    assert rows[1]["score"] == pytest.approx(0.9)
    assert rows[0]["score"] == pytest.approx(0.1)
    assert len(server.requests) == 3
    for body, headers in zip(server.requests, server.headers, strict=True):
        assert body["model"] == "Qwen/Qwen3Guard-Gen-0.6B"
        assert (body["temperature"], body["max_tokens"], body["logprobs"]) == (0, 128, True)
        assert headers["Authorization"] == "Bearer sk-test"


def test_remote_response_loose_and_served_model(runner):
    with _Server() as server:
        result = invoke(
            runner,
            [
                "classify",
                "-m",
                "qwen3guard-gen",
                "--endpoint",
                server.url,
                "--served-model",
                "guard",
                "--api-key",
                "k",
                "--loose",
                "--no-score",
                "--response",
                f"{MARKER}!",
                "-q",
                "hi",
            ],
        )
    row = json.loads(result.stdout)
    assert result.exit_code == 1
    assert (row["severity"], row["refusal"], row["score"]) == ("Unsafe", False, None)
    body = server.requests[0]
    assert body["model"] == "guard" and "logprobs" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert server.headers[0]["Authorization"] == "Bearer k"


@pytest.mark.slow
def test_remote_retries_on_429_and_5xx_then_gives_up():
    from guardcli.runtime.openai_chat import ChatEndpoint

    conv = [[{"role": "user", "content": "hi"}]]
    with _Server(failures=2) as server:
        done = ChatEndpoint(server.url, "m", backoff=0.01, retries=2).complete_all(conv)
        assert done[0].text.startswith("Safety: Safe")
        assert len(server.requests) == 3
    with _Server(failures=10) as server:
        with pytest.raises(GuardError, match="failed after 2 attempts: HTTP 503"):
            ChatEndpoint(server.url, "m", backoff=0.01, retries=1).complete_all(conv)


def test_remote_unparsable_output_is_an_error_record(runner):
    with _Server(garbage=True) as server:
        result = invoke(
            runner, ["classify", "-m", "qwen3guard-gen", "--endpoint", server.url, "-q", "hi"]
        )
    row = json.loads(result.stdout)
    assert result.exit_code == 2
    assert row["flagged"] is None
    assert row["error"]["type"] == "model_output" and row["error"]["raw"] == "I am not sure."


def test_options_that_do_not_apply(runner, tiny_model):
    result = invoke(runner, ["classify", "-m", str(tiny_model), "--loose", "hi"])
    assert result.exit_code == 2
    assert "strict (--strict) does not apply to the seqcls family" in result.stderr


def test_backend_speaks_the_one_runtime_vocabulary(tiny_guard_model) -> None:
    """`backend` names a runtime (onnxruntime|torch|remote) for this family as for every other;
    'onnx', its name before 0.2, is still read as onnxruntime."""
    for given in ("onnxruntime", "onnx", None):
        guard = load_guard(str(tiny_guard_model), backend=given, variant="fp32")
        assert guard.backend == "onnxruntime"
    with pytest.raises(GuardError, match="runs on onnxruntime, torch or llamacpp, not 'openvino'"):
        load_guard(str(tiny_guard_model), backend="openvino")
