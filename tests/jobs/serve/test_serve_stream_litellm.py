"""The real LiteLLM proxy (from .venv-litellm) with `stream: true`, guarded by `guard serve` on
the tiny Qwen3Guard-Stream: a stand-in model streams its answer in chunks; LiteLLM re-checks the
growing reply (generic_guardrail_api, post_call) under one litellm_call_id, and guard judges
only what each check adds. An answer that turns harmful halfway (the tiny model is trained to
flag "zorblax") is cut, and the client sees LiteLLM's guardrail error; a harmless one streams
through whole."""

from __future__ import annotations

# ruff: noqa: F811 (the family's session fixtures, imported below, are parameters here)
import json
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from guardcli import load_guard  # noqa: E402
from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app  # noqa: E402

from ...families.qwen3guard_stream.conftest import stream_model  # noqa: E402, F401
from .litellm_proxy import start_litellm  # noqa: E402
from .test_serve import stand_in_model_list, wait_ready  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "stream-key"
PROMPT = "tell me about a garden"
WORDS = "the river meadow lantern kettle maple and a pebble by the window near the old mill".split()
HARMLESS = " ".join(WORDS)
HARMFUL = " ".join(WORDS[:7] + ["zorblax"] + WORDS[7:])  # harmful from word 8 on


def chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def streaming_model(sent: dict[str, int]):
    """An OpenAI-style chat model that streams its answer a word per SSE chunk: the harmful
    answer when the prompt says "harmful", else the harmless one."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        assert body.get("stream") is True
        text = HARMFUL if "harmful" in body["messages"][-1]["content"] else HARMLESS

        def frame(delta: dict, finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {
                "id": "chatcmpl-stream",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "stand-in",
                "choices": [choice],
            }
            return f"data: {json.dumps(chunk)}\n\n"

        async def events():
            yield frame({"role": "assistant", "content": ""})
            for piece in chunks(text):
                sent[text] = sent.get(text, 0) + 1
                yield frame({"content": piece})
            yield frame({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_litellm_streaming_cuts_a_harmful_answer(litellm_bin, stream_model: Path, tmp_path) -> None:
    # Imported here, as the other serve tests do: the openai client takes seconds to import,
    # and every pytest worker collects this module, slow or not.
    openai = pytest.importorskip("openai")
    guard = load_guard(stream_model, variant="fp32")
    # The texts are chosen by what the tiny model says, checked here on whole conversations.
    verdicts = guard.classify(
        [
            {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": t}]}
            for t in (HARMLESS, HARMFUL, HARMFUL[: HARMFUL.index(" zorblax")])
        ]
    )
    assert [v.flagged for v in verdicts] == [False, True, False]
    asked = [
        {"messages": [{"role": "user", "content": f"a {k} question: {PROMPT}"}]}
        for k in ("harmless", "harmful")
    ]
    assert [v.flagged for v in guard.classify(asked)] == [False, False]
    sent: dict[str, int] = {}
    app = create_app(guard, ServeOptions(api_key=KEY))
    with BackgroundServer(app) as guard_url, BackgroundServer(streaming_model(sent)) as chat_url:
        wait_ready(guard_url)
        config = {
            "model_list": stand_in_model_list(chat_url),
            "guardrails": [
                {
                    "guardrail_name": "guard-stream",
                    "litellm_params": {
                        "guardrail": "generic_guardrail_api",
                        "mode": ["pre_call", "post_call"],
                        "api_base": guard_url,
                        "api_key": KEY,
                        "default_on": True,
                        "streaming_sampling_rate": 2,
                    },
                }
            ],
            "general_settings": {"master_key": "sk-master"},
        }
        with start_litellm(config, tmp_path) as proxy:
            proxy.wait_live()
            client = openai.OpenAI(base_url=proxy.url, api_key="sk-master", max_retries=0)
            received = stream_text(client, "a harmless question: " + PROMPT)
            assert received == HARMLESS
            with pytest.raises(openai.APIError) as blocked:
                stream_text(client, "a harmful question: " + PROMPT)
            message = str(blocked.value)
            assert "Blocked by guard" in message, proxy.log.read_text()[-3000:]
            assert "Unsafe" in message or "Violent" in message
            # The client never saw the answer past its harmful turn.
            assert blocked.value.received.startswith(HARMFUL[:10])  # type: ignore[attr-defined]
            assert HARMFUL[HARMFUL.index("zorblax") + 8 :] not in blocked.value.received  # type: ignore[attr-defined]
    metrics = app.state.service.metrics
    # One stream per reply, judged piece by piece: far fewer tokens than LiteLLM's re-sends.
    assert metrics.value("stream_token_seconds_count") < 3 * len(chunks(HARMFUL + HARMLESS))


def stream_text(client, prompt: str) -> str:
    import openai

    received = ""
    try:
        stream = client.chat.completions.create(
            model="stand-in", messages=[{"role": "user", "content": prompt}], stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received += chunk.choices[0].delta.content
    except openai.APIError as exc:
        exc.received = received  # type: ignore[attr-defined]
        raise
    return received
