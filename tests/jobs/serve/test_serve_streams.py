"""`guard serve`'s /v1/streams on the tiny Qwen3Guard-Stream (trained to flag "zorblax"):
verdicts checked against the PyTorch reference's one-shot forward over the whole
conversation; eviction, batching and LiteLLM's growing replies checked against un-evicted,
lone and fresh judgements."""

# ruff: noqa: F811 (the family's session fixtures, imported below, are parameters here)

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from guardcli import load_guard  # noqa: E402
from guardcli.jobs.serve import ServeOptions, create_app  # noqa: E402
from guardcli.jobs.serve.policy import BadRequest  # noqa: E402
from guardcli.jobs.serve.stream_routes import conversation, token_ids  # noqa: E402

from ...families.qwen3guard_stream.conftest import (  # noqa: E402, F401
    stream_model,
    stream_reference,
    stream_tokenizer,
)
from ...families.qwen3guard_stream.helpers import (  # noqa: E402
    reference_verdicts,
    stream_together,
)

RISK = ["Safe", "Unsafe", "Controversial"]
PROMPT = "tell me about a garden"
ANSWER = "the river meadow lantern zorblax kettle maple, and a pebble by the window."
SAFE_ANSWER = "the river meadow lantern kettle maple, and a pebble by the window."


@pytest.fixture(scope="module")
def guard(stream_model: Path):
    return load_guard(stream_model, variant="fp32")


def client(guard, **options) -> TestClient:
    return TestClient(create_app(guard, ServeOptions(**options)))


def pieces(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), 6))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def expected(reference, tokenizer, prompt: str, answer: str) -> tuple[str, list[str]]:
    qrisk, tokens, _ = reference_verdicts(reference, tokenizer, prompt, answer)
    return RISK[qrisk], [RISK[r] for r, _, _ in tokens]


def run_stream(c: TestClient, prompt: str, parts: list[str]) -> tuple[dict, list[dict], dict]:
    opened = c.post("/v1/streams", json={"prompt": prompt})
    assert opened.status_code == 200, opened.text
    sid = opened.json()["id"]
    verdicts: list[dict] = []
    for part in parts:
        answer = c.post(f"/v1/streams/{sid}", json={"text": part}).json()
        verdicts += answer["verdicts"]
    last = c.post(f"/v1/streams/{sid}", json={"final": True}).json()
    verdicts += last["verdicts"]
    return opened.json(), verdicts, last


@pytest.mark.slow
def test_stream_verdicts_equal_the_reference(guard, stream_reference, stream_tokenizer) -> None:
    prompt_level, levels = expected(stream_reference, stream_tokenizer, PROMPT, ANSWER)
    with client(guard) as c:
        opened, verdicts, last = run_stream(c, PROMPT, pieces(ANSWER, 1))
        assert c.delete(f"/v1/streams/{opened['id']}").json() == {
            "id": opened["id"],
            "deleted": True,
        }
        assert c.post(f"/v1/streams/{opened['id']}", json={"text": "x"}).status_code == 404
    assert opened["prompt"]["risk_level"] == prompt_level
    assert [v["risk_level"] for v in verdicts] == levels
    assert [v["index"] for v in verdicts] == list(range(len(levels)))
    assert "".join(v["text"] for v in verdicts) == ANSWER  # offsets tile the answer
    assert all(ANSWER[v["start"] : v["end"]] == v["text"] for v in verdicts)
    assert last["flagged"] and last["risk_level"] == "Unsafe" and last["final"]
    assert ANSWER[last["first_unsafe_offset"] :].startswith(" zorblax")


@pytest.mark.slow
def test_token_ids_give_the_verdicts_of_text(guard, stream_tokenizer) -> None:
    ids = stream_tokenizer.encode(ANSWER, add_special_tokens=False).ids
    with client(guard) as c:
        _, by_text, _ = run_stream(c, PROMPT, [ANSWER])
        sid = c.post("/v1/streams", json={"prompt": PROMPT}).json()["id"]
        by_ids = []
        for chunk in (ids[:3], ids[3:4], ids[4:]):
            by_ids += c.post(f"/v1/streams/{sid}", json={"token_ids": chunk}).json()["verdicts"]
    assert [v["risk_level"] for v in by_ids] == [v["risk_level"] for v in by_text]
    assert [v["text"] for v in by_ids] == [v["text"] for v in by_text]


@pytest.mark.slow
def test_server_sent_events(guard) -> None:
    with client(guard) as c:
        opened = c.post("/v1/streams", json={"prompt": PROMPT, "sse": True})
        assert opened.headers["content-type"].startswith("text/event-stream")
        event, data = opened.text.strip().split("\n")
        assert event == "event: prompt"
        sid = json.loads(data.removeprefix("data: "))["id"]
        answer = c.post(
            f"/v1/streams/{sid}",
            json={"text": ANSWER, "final": True},
            headers={"Accept": "text/event-stream"},
        )
    events = [block.split("\n") for block in answer.text.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names == ["verdicts", "verdicts", "summary"]  # pushed pieces, the final tail
    payloads = [json.loads(e[1].removeprefix("data: ")) for e in events]
    texts = [v["text"] for p in payloads[:2] for v in p["verdicts"]]
    assert "".join(texts) == ANSWER and payloads[2]["flagged"] is True


BAD = [
    ("open", [1], "the body of POST /v1/streams must be a JSON object"),
    ("open", {}, "give the user's 'prompt' (and optionally the 'messages' before it)"),
    ("open", {"prompt": 3}, "'prompt' must be a string, not int"),
    ("open", {"prompt": "a", "temperature": 1}, "unknown field(s) 'temperature'"),
    ("open", {"messages": [{"role": "bot", "content": "x"}]}, "messages[1].role must be one of"),
    ("open", {"messages": [{"role": "assistant", "content": "x"}]}, "must end with the user's"),
    ("append", {}, "send 'text' or 'token_ids' (the answer's next piece), or 'final': true"),
    ("append", {"text": "a", "token_ids": [1]}, "send either 'text' or 'token_ids', not both"),
    ("append", {"token_ids": [-1]}, "token_ids[1] must be an integer from 0 to"),
    ("append", {"token_ids": [True]}, "token_ids[1] must be an integer"),
    ("append", {"text": "a", "final": "yes"}, "'final' must be true or false, not 'yes'"),
    ("append", {"text": "x" * 41}, "'text' is 41 characters, over the server's 40"),
]


@pytest.mark.slow
def test_bad_requests_say_how_to_fix_them(guard) -> None:
    with client(guard, max_text_chars=40) as c:
        sid = c.post("/v1/streams", json={"prompt": "a"}).json()["id"]
        for where, body, message in BAD:
            url = "/v1/streams" if where == "open" else f"/v1/streams/{sid}"
            answer = c.post(url, json=body)
            assert answer.status_code == 400, body
            assert answer.json()["error"]["type"] == "bad_request"
            assert message in answer.json()["error"]["message"], body


def test_a_stream_is_fed_one_way_and_ends_once(guard) -> None:
    with client(guard) as c:
        sid = c.post("/v1/streams", json={"prompt": "a"}).json()["id"]
        assert c.post(f"/v1/streams/{sid}", json={"text": "one"}).status_code == 200
        mixed = c.post(f"/v1/streams/{sid}", json={"token_ids": [11]}).json()["error"]
        assert mixed["message"] == f"stream {sid} is fed text; it cannot take token_ids too"
        assert c.post(f"/v1/streams/{sid}", json={"final": True}).status_code == 200
        again = c.post(f"/v1/streams/{sid}", json={"text": "two"}).json()["error"]["message"]
        assert again == f"stream {sid} is final; open a new one with POST /v1/streams"
        assert c.delete("/v1/streams/strm-nope").status_code == 404


@pytest.mark.slow
def test_other_families_answer_501_naming_the_stream_family(tiny_model: Path) -> None:
    with client(load_guard(tiny_model, variant="fp32")) as c:
        answer = c.post("/v1/streams", json={"prompt": "a"})
        metrics = c.get("/metrics").text
    assert answer.status_code == 501
    message = answer.json()["error"]["message"]
    assert message.startswith("Model 'csam-guard' (family seqcls) does not judge streams")
    assert "qwen3guard-stream" in message
    assert "guard_streams_open" not in metrics


@pytest.mark.slow
def test_evicted_streams_are_rebuilt_not_lost(guard, stream_reference, stream_tokenizer) -> None:
    """A cap smaller than one stream's cache evicts every idle stream after each append; the
    verdicts still equal the reference's, and /metrics counts the evictions."""
    answers = [ANSWER, SAFE_ANSWER, "a quibblex violin zorblax, pebble and window."]
    with client(guard, stream_cache_mb=0.001) as c:
        sids = [c.post("/v1/streams", json={"prompt": PROMPT}).json()["id"] for _ in answers]
        got: list[list[str]] = [[] for _ in answers]
        split = [pieces(a, i) for i, a in enumerate(answers)]
        for round_ in range(len(split[0])):  # interleaved: each append finds its cache gone
            for i, sid in enumerate(sids):
                answer = c.post(f"/v1/streams/{sid}", json={"text": split[i][round_]}).json()
                got[i] += [v["risk_level"] for v in answer["verdicts"]]
        for i, sid in enumerate(sids):
            answer = c.post(f"/v1/streams/{sid}", json={"final": True}).json()
            got[i] += [v["risk_level"] for v in answer["verdicts"]]
        metrics = c.get("/metrics").text
    for answer, levels in zip(answers, got, strict=True):
        assert levels == expected(stream_reference, stream_tokenizer, PROMPT, answer)[1]
    evictions = [
        line for line in metrics.splitlines() if line.startswith("guard_stream_evictions_total")
    ]
    assert evictions and float(evictions[0].split()[-1]) >= len(split[0]) * len(answers)
    assert 'reason="memory"' in evictions[0]
    assert "guard_streams_open 3.0" in metrics
    assert "guard_stream_token_seconds_count" in metrics


@pytest.mark.slow
def test_idle_streams_lose_their_cache_after_the_ttl_and_close_later(guard) -> None:
    import time

    with client(guard, stream_ttl_s=0.01) as c:
        sid = c.post("/v1/streams", json={"prompt": PROMPT}).json()["id"]
        c.post(f"/v1/streams/{sid}", json={"text": "the river"})
        time.sleep(0.05)
        answer = c.post(f"/v1/streams/{sid}", json={"text": " meadow zorblax kettle"}).json()
        metrics = c.get("/metrics").text
    assert 'guard_stream_evictions_total{reason="ttl"}' in metrics
    assert answer["flagged"]
    with client(guard, stream_expire_s=0.01) as c:
        sid = c.post("/v1/streams", json={"prompt": PROMPT}).json()["id"]
        time.sleep(0.05)
        c.post("/v1/streams", json={"prompt": PROMPT})  # any stream request applies the limits
        assert c.post(f"/v1/streams/{sid}", json={"text": "the"}).status_code == 404


@pytest.mark.slow
def test_concurrent_streams_share_a_forward_and_keep_their_verdicts(guard) -> None:
    """Eight streams appended together are coalesced; a text's verdicts are the same whatever
    shares its batch (and the same as when it streams alone). How the model runs a coalesced
    batch: tests/families/qwen3guard_stream/test_served_batch.py."""
    answers = [ANSWER, SAFE_ANSWER] * 4

    together, metrics = stream_together(guard, PROMPT, answers, piece=12)
    alone = [stream_together(guard, PROMPT, [text], piece=12)[0][0] for text in answers[:2]]
    batches = metrics.value("stream_batch_size_count")
    streams = metrics.value("stream_batch_size_sum")
    assert streams / batches > 2, "the eight streams should have been coalesced"
    for i, verdicts in enumerate(together):
        reference = alone[i % 2]
        assert [v["risk_level"] for v in verdicts] == [v["risk_level"] for v in reference]
        assert [v["category"] for v in verdicts] == [v["category"] for v in reference]
        for a, b in zip(verdicts, reference, strict=True):
            assert a["p_unsafe"] == pytest.approx(b["p_unsafe"], abs=1e-5)


def guardrail(c: TestClient, input_type: str, texts: list[str], **extra) -> dict:
    body = {"input_type": input_type, "texts": texts, "litellm_call_id": "call-1", **extra}
    answer = c.post("/beta/litellm_basic_guardrail_api", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow
@pytest.mark.parametrize("answer", [ANSWER, SAFE_ANSWER])
def test_litellm_growing_replies_judge_only_the_new_text(guard, answer: str) -> None:
    """LiteLLM re-sends the whole reply so far; the server feeds the model only what is new
    (plus the few tokens of the still-open last word), and decides as a fresh judgement of the
    whole text does (guard classify on the same conversation)."""
    fresh = guard.classify(
        [
            {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": t}]}
            for t in [answer[:n] for n in range(8, len(answer) + 1, 8)] + [answer]
        ]
    )
    with client(guard) as c:
        user = [{"role": "user", "content": PROMPT}]
        assert guardrail(c, "request", [PROMPT], structured_messages=user)["action"] == "NONE"
        streams = c.app.state.service.stream_service()
        fed: list[int] = []
        original = streams.engine.forward_batch

        def spy(items):
            fed.append(sum(len(ids) for _, ids in items))
            return original(items)

        streams.coalescer.forward_batch = spy
        actions, work = [], []
        for n in [*range(8, len(answer) + 1, 8), len(answer)]:
            before = len(fed)
            actions.append(guardrail(c, "response", [answer[:n]])["action"])
            work.append(sum(fed[before:]))
    assert actions == ["BLOCKED" if v.flagged else "NONE" for v in fresh]
    # The first reply check prefills the prompt; after that each costs its ~2 new words and
    # the re-judged last word, never the text already judged.
    assert max(work[1:]) <= 12
    assert sum(work[1:]) < 3 * len(guard.tokenizer.encode([answer])[0].ids)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
MESSAGE = st.dictionaries(
    st.sampled_from(["role", "content", "name", "extra"]),
    JSON | st.sampled_from(["user", "assistant", "system"]),
)
BODY = st.fixed_dictionaries(
    {}, optional={"prompt": JSON | st.text(), "messages": st.lists(MESSAGE, max_size=3) | JSON}
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(BODY, JSON)
def test_any_json_is_a_conversation_or_a_bad_request(body, ids) -> None:
    """Whatever a client sends, the checks answer with a conversation ending in a user turn
    (or token ids in range), or a BadRequest that says what is wrong: never another error."""
    try:
        turns = conversation(body, 100)
    except BadRequest as err:
        assert str(err)
    else:
        assert turns[-1]["role"] == "user"
        assert all(isinstance(t["content"], str) and len(t["content"]) <= 100 for t in turns)
    try:
        checked = token_ids(ids, 50, 100)
    except BadRequest as err:
        assert str(err)
    else:
        assert all(type(t) is int and 0 <= t < 50 for t in checked)


@pytest.mark.slow
def test_a_stream_cannot_grow_past_the_model_context(stream_model: Path) -> None:
    """Past the model's context (here --max-length 64) verdicts would mean nothing: the
    request that would cross it is refused, and the stream keeps what it had."""
    message = "the stream would be longer than the model's 64 tokens (--max-length)"
    with client(load_guard(stream_model, variant="fp32", max_length=64)) as c:
        long_prompt = c.post("/v1/streams", json={"prompt": "word " * 60}).json()
        assert message in long_prompt["error"]["message"]
        sid = c.post("/v1/streams", json={"prompt": PROMPT}).json()["id"]
        assert c.post(f"/v1/streams/{sid}", json={"text": "the river"}).status_code == 200
        over = c.post(f"/v1/streams/{sid}", json={"text": " meadow" * 40})
        assert over.status_code == 400 and message in over.json()["error"]["message"]
        fed_ids = c.post("/v1/streams", json={"prompt": PROMPT}).json()["id"]
        ids = c.post(f"/v1/streams/{fed_ids}", json={"token_ids": [11] * 60})
        assert ids.status_code == 400 and message in ids.json()["error"]["message"]
        last = c.post(f"/v1/streams/{sid}", json={"text": " kettle", "final": True}).json()
    assert "".join(v["text"] for v in last["verdicts"]) == " river kettle"


@pytest.mark.slow
def test_the_torch_reference_serves_streams_too(stream_model, stream_reference, stream_tokenizer):
    """--variant torch: one stream at a time on the PyTorch module, caches evicted and rebuilt
    as on ONNX, verdicts equal to the one-shot forward's."""
    from guardcli.families.qwen3guard_stream.guard import load_stream_guard

    with client(load_stream_guard(str(stream_model), "torch"), stream_cache_mb=0.001) as c:
        _, verdicts, _ = run_stream(c, PROMPT, pieces(ANSWER, 3))
    levels = expected(stream_reference, stream_tokenizer, PROMPT, ANSWER)[1]
    assert [v["risk_level"] for v in verdicts] == levels


@pytest.mark.slow
def test_a_conversation_before_the_prompt_is_judged_as_classify_judges_it(guard) -> None:
    turns = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "zorblax at the harbor"},
        {"role": "assistant", "content": "a kettle"},
    ]
    fresh = guard.classify([{"messages": [*turns, {"role": "user", "content": PROMPT}]}])[0]
    with client(guard) as c:
        opened = c.post("/v1/streams", json={"messages": turns, "prompt": PROMPT}).json()
        whole = c.post(
            "/v1/streams", json={"messages": [*turns, {"role": "user", "content": PROMPT}]}
        )
    assert opened["prompt"]["risk_level"] == fresh.severity
    assert opened["prompt"]["p_unsafe"] == pytest.approx(fresh.score, abs=1e-5)
    assert whole.json()["prompt"] == opened["prompt"]
