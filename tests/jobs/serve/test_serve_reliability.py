"""`guard serve` fails closed and speaks strict JSON: a broken (NaN) model is never an allow,
/readyz says so without file paths, malformed bodies are 400s in the service's error shape,
content the model cannot read is blocked (unless --allow-unjudged), an empty text is treated
alike everywhere, and a dialogue family is handed LiteLLM's structured_messages."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from guardcli import load_guard  # noqa: E402
from guardcli.core.verdicts import Record, Verdict  # noqa: E402
from guardcli.families.dialogue.guard import DialogueGuard  # noqa: E402
from guardcli.families.qwen3guard_gen.format import is_response, record_messages  # noqa: E402
from guardcli.families.qwen3guard_gen.guard import Qwen3GuardGen  # noqa: E402
from guardcli.jobs.serve import (  # noqa: E402
    BackgroundServer,
    ServeOptions,
    create_app,
    protocols,  # noqa: E402
)
from guardcli.jobs.serve.json_body import MAX_DEPTH, BadBody, dumps, parse_body  # noqa: E402

from ...conftest import invoke  # noqa: E402
from .litellm_proxy import start_litellm  # noqa: E402

GUARDRAIL = "/beta/litellm_basic_guardrail_api"
POSTS = (GUARDRAIL, "/v1/moderations", "/check", "/v1/classify")
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
# Any absolute path: POSIX, home-relative or Windows.
PATH = re.compile(r"(?<![\w.:/])(?:~|[A-Za-z]:)?[/\\](?:tmp|root|home|work|usr|Users|var)\b")


def strict_json(response: httpx.Response) -> Any:
    """The body as strict JSON (NaN/Infinity refused), decoded as strict UTF-8."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer: {response.text[:200]}")

    assert response.headers["content-type"].startswith("application/json"), response.text
    return json.loads(response.content.decode("utf-8"), parse_constant=refuse)


def wait_settled(url: str, timeout: float = 60.0) -> httpx.Response:
    """/readyz once the warm-up has finished (ready or failed, not loading)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=5)
            if answer.json().get("status") != "loading":
                return answer
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never finished warming up")


def serve(guard: Any, **options: Any) -> BackgroundServer:
    return BackgroundServer(create_app(guard, ServeOptions(**options)))


def ask(client: httpx.Client, path: str, text: str, **extra: Any) -> httpx.Response:
    """One text to one endpoint, in that endpoint's own protocol."""
    bodies: dict[str, Any] = {
        GUARDRAIL: {"input_type": "request", "texts": [text], "structured_messages": None},
        "/v1/moderations": {"input": text},
        "/check": {"text": text},
        "/v1/classify": {"records": [{"id": "a", "text": text}]},
    }
    body = bodies[path]
    if extra and path == GUARDRAIL:
        body["additional_provider_specific_params"] = extra
    elif extra:
        body.update(extra)
    # Infinity as the number a client would write: too large for a float.
    raw = json.dumps(body).replace("Infinity", "1e309")
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def allowed(path: str, answer: dict[str, Any]) -> bool:
    """Whether an endpoint's answer lets the text through."""
    if path == GUARDRAIL:
        return answer["action"] != "BLOCKED"
    if path == "/v1/moderations":
        return answer["results"][0]["flagged"] is not True
    if path == "/check":
        return answer["decision"] == "allow"
    return answer["verdicts"][0]["flagged"] is not True


def note(path: str, answer: dict[str, Any]) -> str | None:
    """The error type an endpoint's answer carries for its one text, if any."""
    if path == GUARDRAIL:
        errors = answer.get("errors") or []
        return errors[0]["type"] if errors else None
    row = answer["results"][0] if path == "/v1/moderations" else answer
    if path == "/v1/classify":
        row = answer["verdicts"][0]
    return row["error"]["type"] if "error" in row else None


# ---------------------------------------------------------------- a broken (NaN) model


@pytest.fixture(scope="module")
def nan_served(nan_model: Path):
    """The NaN-head model with no API key: every endpoint is unauthenticated."""
    with serve(load_guard(nan_model, variant="fp32")) as url:
        yield url, wait_settled(url)


def test_nan_model_is_never_allowed_on_any_endpoint(nan_served) -> None:
    url, _ = nan_served
    texts = ["a lighthouse at dusk", "the library opens at nine", "x"]
    allows = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for path in POSTS:
            for text in texts:
                answer = ask(client, path, text)
                assert answer.status_code == 200, (path, answer.text)
                body = strict_json(answer)
                allows += allowed(path, body)
                assert note(path, body) == "non_finite_score", (path, body)
            # A request threshold cannot turn an unjudged text into an allow.
            if path != "/v1/moderations":
                allows += allowed(path, strict_json(ask(client, path, "x", threshold=1.0)))
    assert allows == 0


def test_readyz_not_ready_on_nan_model_and_says_why(nan_served, nan_model: Path) -> None:
    url, ready = nan_served
    assert ready.status_code == 503
    body = strict_json(ready)
    assert body["status"] == "failed"
    assert "not a finite number" in body["error"] and "self-check" in body["error"]
    assert str(nan_model) not in ready.text and not PATH.search(ready.text)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}  # alive, not ready


def test_no_unauthenticated_body_shows_a_path(nan_served, nan_model: Path) -> None:
    url, _ = nan_served
    with httpx.Client(base_url=url, timeout=60) as client:
        answers = [
            client.get("/readyz"),
            client.get("/healthz"),
            client.get("/metrics"),
            client.get("/no/such/route"),
            client.get("/v1/moderations"),
            client.post("/v1/moderations", content=b"{nope"),
            *(ask(client, path, "a lighthouse") for path in POSTS),
        ]
    for answer in answers:
        assert str(nan_model.parent) not in answer.text, answer.text
        assert not PATH.search(answer.text), answer.text


class BrokenGuard:
    """A guard whose runtime fails with an error naming a file, as onnxruntime's do."""

    name, variant, threshold, batch_size, fail_closed = "stub", None, 0.5, 16, True
    labels = ("safe", "unsafe")
    message = "Load model from /secret/models/csam-guard/model.onnx failed: bad file"

    def classify(self, items: Any) -> list[Verdict]:
        raise RuntimeError(self.message)

    def classify_records(self, records: list[Record]) -> list[Verdict]:
        raise RuntimeError(self.message)


def test_runtime_errors_and_load_failures_do_not_leak_paths() -> None:
    with serve(BrokenGuard()) as url:
        ready = wait_settled(url)
        answers = [ask(httpx.Client(base_url=url, timeout=30), path, "a") for path in POSTS]
    assert ready.status_code == 503 and strict_json(ready)["status"] == "failed"
    for answer in [ready, *answers]:
        assert "/secret" not in answer.text and "csam-guard/model.onnx" not in answer.text
    for path, answer in zip(POSTS, answers, strict=True):
        assert not allowed(path, strict_json(answer))  # fail closed


class NaNVerdictGuard:
    """A family that lets a NaN score through its verdict (a bug the base class guards against):
    the server must still answer strict JSON, and block."""

    name, variant, threshold, batch_size, fail_closed = "stub", None, 0.5, 16, True
    labels = ("safe", "unsafe")

    def classify(self, items: Any) -> list[Verdict]:
        return [Verdict(id="1", flagged=False, score=0.1)]

    def classify_records(self, records: list[Record]) -> list[Verdict]:
        return [Verdict(id=r.id, flagged=False, score=math.nan, threshold=0.5) for r in records]


def test_nan_in_a_verdict_is_blocked_with_strict_json() -> None:
    with serve(NaNVerdictGuard()) as url:
        wait_settled(url)
        with httpx.Client(base_url=url, timeout=30) as client:
            for path in POSTS:
                answer = ask(client, path, "a lighthouse")
                assert answer.status_code == 200, answer.text
                body = strict_json(answer)
                assert not allowed(path, body) and note(path, body) == "non_finite_score"


def test_response_bodies_refuse_nan() -> None:
    with pytest.raises(ValueError):
        dumps({"score": math.nan})
    with pytest.raises(ValueError):
        dumps({"score": math.inf})
    with pytest.raises(UnicodeEncodeError):
        dumps({"text": "\ud800"})
    assert dumps({"text": "é"}) == '{"text":"é"}'.encode()


# ---------------------------------------------------------------- a working model


@pytest.fixture(scope="module")
def served(tiny_model: Path):
    guard = load_guard(tiny_model, variant="fp32")
    with serve(guard, max_batch=8) as url:
        assert wait_settled(url).status_code == 200
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


@pytest.fixture(scope="module")
def served_allowing(tiny_model: Path):
    guard = load_guard(tiny_model, variant="fp32")
    with serve(guard, allow_unjudged=True) as url:
        assert wait_settled(url).status_code == 200
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


def assert_bad_request(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    body = strict_json(answer)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type"}
    assert body["error"]["type"] == "bad_request"
    return body["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{nope", "not JSON"),
        (b"[" * 100_000, "nested more than"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested more than"),
        (b'{"input": "\\ud800", "text": "\\ud800", "texts": ["\\udfff"]}', "lone surrogate"),
        (b'{"input": "a\xff"}', "not UTF-8"),
        (b'{"input": NaN, "text": NaN}', "NaN"),
        (b'{"input": Infinity}', "Infinity"),
        (b"", "not JSON"),
    ],
)
def test_malformed_bodies_are_400_json(served, raw: bytes, why: str) -> None:
    for path in POSTS:
        assert why in assert_bad_request(served.post(path, content=raw))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (GUARDRAIL, []),
        (GUARDRAIL, {"texts": "a lighthouse"}),
        (GUARDRAIL, {"texts": [1]}),
        (GUARDRAIL, {"texts": ["a"], "structured_messages": "hello"}),
        (GUARDRAIL, {"texts": ["a"], "structured_messages": [{"role": "user", "content": 3}]}),
        (GUARDRAIL, {"texts": ["a"], "input_type": "sideways"}),
        (GUARDRAIL, {"texts": ["a"], "images": "data:x"}),
        (GUARDRAIL, {"texts": ["a"], "additional_provider_specific_params": [0.5]}),
        ("/v1/moderations", {"input": 3}),
        ("/v1/moderations", {"input": [1, "a"]}),
        ("/v1/moderations", {"input": [{"type": "text", "text": 5}]}),
        ("/v1/moderations", {"text": "a"}),
        ("/check", {"text": ["a"]}),
        ("/check", {"text": "a", "mode": "shout"}),
        ("/v1/classify", {"records": "a"}),
        ("/v1/classify", 5),
    ],
)
def test_wrong_types_are_400_json(served, path: str, body: Any) -> None:
    assert_bad_request(served.post(path, json=body))


def test_unknown_routes_and_wrong_methods_answer_json(served, tiny_model: Path) -> None:
    cases = [
        (served.get("/nope"), 404, "not_found"),
        (served.post("/v2/moderations", json={}), 404, "not_found"),
        (served.get("/v1/moderations"), 405, "method_not_allowed"),
        (served.post("/healthz"), 405, "method_not_allowed"),
        (served.delete("/check"), 405, "method_not_allowed"),
    ]
    for answer, status, kind in cases:
        assert answer.status_code == status
        body = strict_json(answer)
        assert set(body) == {"error"} and body["error"]["type"] == kind
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "POST" in cases[2][0].headers["allow"]


# ---------------------------------------------------------------- unjudged and empty content


def image_requests() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/v1/moderations", {"input": [IMAGE]}),
        ("/v1/moderations", {"input": [AUDIO]}),
        (GUARDRAIL, {"input_type": "request", "texts": [], "images": ["data:image/png;base64,"]}),
    ]


def test_content_the_model_cannot_read_is_blocked(served) -> None:
    for path, body in image_requests():
        answer = strict_json(served.post(path, json=body))
        assert not allowed(path, answer), answer
        assert note(path, answer) == "unjudged_content"
    # A text part is judged; the image beside it is blocked.
    mixed = strict_json(
        served.post("/v1/moderations", json={"input": [{"type": "text", "text": "hi"}, IMAGE]})
    )["results"]
    assert "error" not in mixed[0] and mixed[1]["flagged"] is True
    blocked = strict_json(
        served.post(GUARDRAIL, json={"texts": ["a lighthouse"], "images": ["data:,"]})
    )
    assert blocked["action"] == "BLOCKED" and "unjudged_content" in blocked["blocked_reason"]
    # Parts of LiteLLM's structured_messages that `texts` leaves out: audio blocks, and an image
    # listed both as a part and in `images` counts once.
    for extra, images in (([AUDIO], None), ([IMAGE], ["data:image/png;base64,"])):
        content = [{"type": "text", "text": "a lighthouse"}, *extra]
        body = {
            "input_type": "request",
            "texts": ["a lighthouse"],
            "images": images,
            "structured_messages": [{"role": "user", "content": content}],
        }
        answer = strict_json(served.post(GUARDRAIL, json=body))
        assert answer["action"] == "BLOCKED"
        assert [e["type"] for e in answer["errors"]] == ["unjudged_content"]


@pytest.mark.slow
def test_allow_unjudged_lets_it_pass_with_a_note(served_allowing) -> None:
    for path, body in image_requests():
        answer = strict_json(served_allowing.post(path, json=body))
        assert allowed(path, answer), answer
        assert note(path, answer) == "unjudged_content"


def test_allow_unjudged_option(runner, tiny_model: Path, monkeypatch) -> None:
    import guardcli.jobs.serve as serve_module

    started: list[Any] = []
    monkeypatch.setattr(serve_module, "run", lambda app, sock, **kw: started.append(app))
    args = ["serve", "-m", str(tiny_model), "--variant", "fp32", "--port", "0"]
    for extra, expected in (([], False), (["--allow-unjudged"], True)):
        result = invoke(runner, [*args, *extra])
        assert result.exit_code == 0, result.stderr
        assert started.pop().state.service.policy.allow_unjudged is expected
        assert ("ALLOWING UNJUDGED CONTENT" in result.stderr) is expected
    help_text = invoke(runner, ["serve", "--help"]).stdout
    assert "--allow-unjudged" in help_text


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_allowed_with_a_note_on_every_endpoint(served, text: str) -> None:
    for path in POSTS:
        answer = strict_json(ask(served, path, text))
        assert allowed(path, answer), (path, answer)
        assert note(path, answer) == "empty_text", (path, answer)


# ---------------------------------------------------------------- request thresholds


@pytest.mark.parametrize("bad", [-0.1, 1.5, 1e308 * 10, "0.5", True, None])
def test_request_thresholds_are_validated(served, bad: Any) -> None:
    for path in (GUARDRAIL, "/check", "/v1/classify"):
        answer = ask(served, path, "a lighthouse", threshold=bad)
        if bad is None:  # no threshold: the model's own
            assert answer.status_code == 200
        else:  # infinity does not even parse as a JSON number
            message = assert_bad_request(answer)
            assert "threshold" in message or "too large" in message


def test_request_thresholds_at_the_bounds(served) -> None:
    # 0 flags everything, 1 (almost) nothing: the score decides, per request.
    for path in (GUARDRAIL, "/check", "/v1/classify"):
        assert not allowed(path, strict_json(ask(served, path, "a lighthouse", threshold=0.0)))
        assert allowed(path, strict_json(ask(served, path, "a lighthouse", threshold=1.0)))


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()))
@settings(max_examples=200, deadline=None)
def test_threshold_property(value: float) -> None:
    body = {"text": "a", "threshold": value}
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= 1 or value in (0, 1):
        assert protocols.check_request(body, protocols.Limits())[2] == float(value)
    else:
        with pytest.raises(protocols.BadRequest, match="threshold"):
            protocols.check_request(body, protocols.Limits())


# ---------------------------------------------------------------- properties of the readers

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.slow
@given(json_values)
@settings(max_examples=200, deadline=None)
def test_parse_body_round_trips_strict_json(value: Any) -> None:
    try:
        raw = dumps(value)
    except UnicodeEncodeError:  # a surrogate: must be refused on the way in too
        with pytest.raises(BadBody):
            parse_body(json.dumps(value).encode())
        return
    assert parse_body(raw) == value


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_parse_body_raises_only_bad_body(raw: bytes) -> None:
    try:
        parse_body(raw)
    except BadBody:
        pass


def shaped(fields: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Bodies near a protocol's shape: its fields, each a well-typed or arbitrary value."""
    return st.fixed_dictionaries(
        {}, optional={k: st.one_of(v, json_values) for k, v in fields.items()}
    )


message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"])},
    optional={"content": st.one_of(st.text(), st.lists(st.one_of(json_values, st.just(IMAGE))))},
)
BODIES = {
    "guardrail": shaped(
        {
            "input_type": st.sampled_from(["request", "response"]),
            "texts": st.lists(st.text()),
            "images": st.lists(st.text()),
            "structured_messages": st.lists(message),
            "additional_provider_specific_params": st.fixed_dictionaries(
                {}, optional={"threshold": st.floats()}
            ),
        }
    ),
    "moderation": shaped(
        {"input": st.one_of(st.text(), st.lists(st.one_of(st.text(), json_values)))}
    ),
    "check": shaped({"text": st.text(), "mode": st.text(), "threshold": st.floats()}),
    "classify": st.one_of(json_values, shaped({"records": json_values, "threshold": st.floats()})),
}


@pytest.mark.slow
@pytest.mark.parametrize("accepts_messages", [False, True])
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_request_readers_answer_records_or_bad_request(accepts_messages: bool, data) -> None:
    """Whatever JSON arrives, a reader returns records or raises BadRequest (a 400), never
    anything else (a 500); and it never returns an unjudged record without its error."""
    policy = protocols.Policy("m", None, 0.5, accepts_messages=accepts_messages)
    limits = protocols.Limits()
    readers = {
        "guardrail": lambda b: protocols.guardrail_request(b, policy, limits)[0],
        "moderation": lambda b: protocols.moderation_request(b, limits),
        "check": lambda b: [protocols.check_request(b, limits)[0]],
        "classify": lambda b: protocols.classify_request(b, limits)[0],
    }
    for name, reader in readers.items():
        body = data.draw(BODIES[name], label=name)
        try:
            records = reader(body)
        except protocols.BadRequest:
            continue
        for record in records:
            assert record.error is not None or record.text is not None or record.messages


parts = st.one_of(
    st.text(max_size=20),
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=20)),
    st.just(IMAGE),
    st.just(AUDIO),
)


@given(st.lists(parts, min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_moderation_parts_one_record_each_nothing_unread_allowed(items: list[Any]) -> None:
    records = protocols.moderation_request({"input": items}, protocols.Limits())
    assert len(records) == len(items)
    policy = protocols.Policy(model="m", variant=None, threshold=0.5)
    for item, record in zip(items, records, strict=True):
        if isinstance(item, dict) and item["type"] != "text":
            assert record.error is not None and record.error.type == "unjudged_content"
            verdict = Verdict.failed(record, record.error)
            assert protocols.decision(verdict, policy) is True


# ---------------------------------------------------------------- dialogue families

DIALOGUE = [
    {"role": "system", "content": "You are a helpful librarian."},
    {"role": "user", "content": "When does the library open?"},
    {"role": "assistant", "content": "At nine."},
    {"role": "user", "content": "And on Sundays?"},
]


def test_response_families_accept_messages() -> None:
    assert DialogueGuard.accepts_messages and Qwen3GuardGen.accepts_messages


def test_qwen3guard_response_mode_gets_the_prompt() -> None:
    """A response judged with its conversation: the record is the dialogue plus the reply,
    which qwen3guard-gen's own rule reads as response moderation."""
    policy = protocols.Policy(
        model="qwen3guard", variant=None, threshold=0.5, accepts_messages=True
    )
    body = {"input_type": "response", "texts": ["Closed."], "structured_messages": DIALOGUE}
    (record,), _ = protocols.guardrail_request(body, policy, protocols.Limits())
    messages = record_messages(record)
    assert messages == [*DIALOGUE, {"role": "assistant", "content": "Closed."}]
    assert is_response(messages)


@pytest.mark.slow
def test_qwen3guard_served_judges_the_reply_after_its_prompt() -> None:
    """The real family behind the server: the text its model receives for a response is its own
    rendering of prompt + reply (response moderation), not the reply as a user prompt."""
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    guard = load_guard(cached_tiny_qwen3guard(), backend="onnxruntime", generate=False)
    capture = Capture(guard)
    prompt = [{"role": "user", "content": "When does the library open on Sundays?"}]
    reply = {"role": "assistant", "content": "It is closed on Sundays."}
    with serve(guard) as url:
        assert wait_settled(url).status_code == 200
        capture.texts.clear()
        body = {
            "input_type": "response",
            "texts": [reply["content"]],
            "structured_messages": prompt,
        }
        answer = strict_json(httpx.post(f"{url}{GUARDRAIL}", json=body, timeout=60))
    assert answer["action"] in ("BLOCKED", "NONE") and "errors" not in answer
    assert capture.texts == [guard.render(Record(id="r", messages=[*prompt, reply]))]
    assert capture.texts != [guard.render(Record(id="r", text=reply["content"]))]


class Capture:
    """Wraps a guard's `encode` to record the exact texts its model receives."""

    def __init__(self, guard: Any):
        self.texts: list[str] = []
        encode = guard.encode

        def spy(texts: list[str]) -> Any:
            self.texts.extend(texts)
            return encode(texts)

        guard.encode = spy


@pytest.fixture(scope="module")
def dialogue_served(intent_model: Path):
    guard = load_guard(intent_model, variant="fp32")
    capture = Capture(guard)
    with serve(guard, cache_mb=None) as url:  # every request reaches the model (spied)
        assert wait_settled(url).status_code == 200
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client, guard, capture


@pytest.mark.slow
def test_structured_messages_reach_the_dialogue_family(dialogue_served) -> None:
    client, guard, capture = dialogue_served
    reply = {"role": "assistant", "content": "Closed on Sundays."}
    for input_type, texts, judged in (
        ("request", ["And on Sundays?"], DIALOGUE),
        ("response", [reply["content"]], [*DIALOGUE, reply]),
    ):
        capture.texts.clear()
        body = {"input_type": input_type, "texts": texts, "structured_messages": DIALOGUE}
        answer = strict_json(client.post(GUARDRAIL, json=body))
        assert answer["action"] in ("BLOCKED", "NONE") and "errors" not in answer
        # The family's own rendering of the dialogue (a reply under review is not context).
        assert capture.texts == [guard.render(Record(id="r", messages=judged))]
        assert capture.texts != [guard.render(Record(id="r", text=texts[0]))]


@pytest.mark.slow
def test_a_reply_without_its_dialogue_is_not_judged_as_a_prompt(dialogue_served) -> None:
    client, guard, capture = dialogue_served
    capture.texts.clear()
    body = {"input_type": "response", "texts": ["Closed."], "structured_messages": None}
    answer = strict_json(client.post(GUARDRAIL, json=body))
    assert answer["action"] == "BLOCKED" and answer["errors"][0]["type"] == "unjudged_content"
    assert capture.texts == []


# ---------------------------------------------------------------- the real LiteLLM proxy


@pytest.mark.slow
def test_litellm_proxy_hands_dialogues_to_the_family(
    litellm_bin: Path, intent_model: Path, tmp_path: Path
) -> None:
    """LiteLLM in pre_call mode sends the conversation, which the dialogue family judges as it
    renders it; in post_call mode LiteLLM (1.106) sends the reply without its conversation, which
    the server blocks as unjudged (never judging the bare reply as a prompt), unless
    --allow-unjudged."""
    openai = pytest.importorskip("openai")
    from ...jobs.serve.test_serve import stand_in_chat_model, stand_in_model_list

    strict, lenient = (load_guard(intent_model, variant="fp32") for _ in range(2))
    capture = Capture(strict)
    seen: list[str] = []
    with (
        serve(strict) as strict_url,
        serve(lenient, allow_unjudged=True) as lenient_url,
        BackgroundServer(stand_in_chat_model(seen)) as chat_url,
    ):

        def guardrail(name: str, mode: str, url: str) -> dict[str, Any]:
            params = {"guardrail": "generic_guardrail_api", "mode": mode, "api_base": url}
            return {"guardrail_name": name, "litellm_params": {**params, "default_on": False}}

        config = {
            "model_list": stand_in_model_list(chat_url),
            "guardrails": [
                guardrail("pre", "pre_call", strict_url),
                guardrail("post", "post_call", strict_url),
                guardrail("post-lenient", "post_call", lenient_url),
            ],
            "general_settings": {"master_key": "sk-master"},
        }
        with start_litellm(config, tmp_path) as proxy:
            wait_settled(strict_url)
            proxy.wait_live()
            client = openai.OpenAI(base_url=proxy.url, api_key="sk-master", max_retries=0)

            def chat(guardrail_name: str) -> Any:
                return client.chat.completions.create(
                    model="stand-in",
                    messages=DIALOGUE,  # type: ignore[arg-type]
                    extra_body={"guardrails": [guardrail_name]},
                )

            # pre_call: the dialogue arrives and is judged as the family renders it.
            capture.texts.clear()
            try:
                chat("pre")
            except openai.BadRequestError as blocked:
                assert "Blocked by guard" in str(blocked)
            assert capture.texts == [strict.render(Record(id="r", messages=DIALOGUE))]
            # post_call: no dialogue arrives; the reply is blocked, not judged as a prompt.
            capture.texts.clear()
            with pytest.raises(openai.APIStatusError) as blocked_reply:
                chat("post")
            assert "unjudged_content" in str(blocked_reply.value)
            assert capture.texts == []
            # --allow-unjudged lets it through.
            assert chat("post-lenient").choices[0].message.content is not None


def test_a_request_that_is_not_http_is_400_and_serving_goes_on(served) -> None:
    """Bytes no HTTP parser reads (uvicorn's C parser where installed, else h11) get a 400
    and a closed connection; the next request is served as usual."""
    import socket
    from urllib.parse import urlsplit

    from guardcli.jobs.serve.server import _config

    config = _config(None, "127.0.0.1", 0, "warning")
    assert config.http == ("httptools" if _has("httptools") else "h11")
    assert config.loop == ("uvloop" if _has("uvloop") else "asyncio")
    assert _config(None, "127.0.0.1", 0, "warning", own_process=False).loop == "asyncio"
    where = urlsplit(str(served.base_url))
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01 not an http request\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert served.get("/healthz").status_code == 200


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
