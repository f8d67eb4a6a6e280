"""`guard serve` on loopback with real clients: the openai client, httpx, the `guard serve`
command itself, and (when its venv exists) the LiteLLM proxy. Every decision is checked against
`guard classify` on the same prompts and threshold."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from guardcli import load_guard  # noqa: E402
from guardcli.core.verdicts import Verdict  # noqa: E402
from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app  # noqa: E402

from ...cli.test_docs import without  # noqa: E402
from ...conftest import LITELLM, ROOT, SAMPLES, invoke  # noqa: E402
from .litellm_proxy import free_port, start_litellm  # noqa: E402

KEY = "test-key"
PROMPTS = [json.loads(line)["text"] for line in (SAMPLES / "prompts.jsonl").open()][:48]
AUTH = {"Authorization": f"Bearer {KEY}"}


pytestmark = pytest.mark.slow


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never became ready")


def classify_cli(runner, model: Path, texts: list[str], threshold: float) -> list[dict]:
    """The reference: `guard classify` on the same texts and threshold."""
    records = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    result = invoke(
        runner,
        ["classify", "-m", str(model), "--variant", "fp32", "-t", str(threshold), "-q", "-"]
        + ["-f", "jsonl"],
        input=records,
    )
    assert result.exit_code in (0, 1), result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(texts)))
    return rows


@pytest.fixture(scope="module")
def guard_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def served(tiny_model: Path, guard_port: int):
    guard = load_guard(tiny_model, variant="fp32")
    app = create_app(guard, ServeOptions(max_batch=8, max_wait_ms=5, api_key=KEY))
    with BackgroundServer(app, port=guard_port) as url:
        wait_ready(url)
        yield url, app.state.service


@pytest.fixture(scope="module")
def client(served):
    """One keep-alive client: a new httpx client per call costs ~0.1 s of TLS set-up."""
    with httpx.Client(base_url=served[0], headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def reference(tiny_model: Path):
    from typer.testing import CliRunner

    runner = CliRunner()
    return {t: classify_cli(runner, tiny_model, PROMPTS, t) for t in (0.5, 0.2)}


def test_prompts_give_both_decisions(reference) -> None:
    for rows in reference.values():
        flags = {r["flagged"] for r in rows}
        assert flags == {True, False}, "the samples must exercise allow and block"


def test_openai_client_moderations(served, reference) -> None:
    openai = pytest.importorskip("openai")
    url, _ = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    response = client.moderations.create(input=PROMPTS, model="csam-guard")
    assert response.model == "csam-guard" and len(response.results) == len(PROMPTS)
    for result, ref in zip(response.results, reference[0.5], strict=True):
        assert result.flagged == ref["flagged"]
        scores = result.to_dict()["category_scores"]
        assert set(scores) == {"unsafe"}  # binary family: its positive class
        assert scores["unsafe"] == pytest.approx(ref["score"], abs=1e-4)
    single = client.moderations.create(input=PROMPTS[0])
    assert single.results[0].flagged == reference[0.5][0]["flagged"]


def guardrail(client: httpx.Client, texts: list[str], **params) -> httpx.Response:
    body = {
        "input_type": "request",
        "texts": texts,
        "images": None,
        "structured_messages": [{"role": "user", "content": t} for t in texts],
        "request_data": {},
        "litellm_call_id": "c1",
        "additional_provider_specific_params": params,
    }
    return client.post("/beta/litellm_basic_guardrail_api", json=body)


def test_guardrail_api_blocks_exactly_what_classify_flags(client, reference) -> None:
    for threshold, extra in ((0.5, {}), (0.2, {"threshold": 0.2})):
        for text, ref in zip(PROMPTS[:16], reference[threshold], strict=False):
            answer = guardrail(client, [text], **extra).json()
            assert answer["action"] == ("BLOCKED" if ref["flagged"] else "NONE"), text
            if ref["flagged"]:
                reason = answer["blocked_reason"]
                assert "csam-guard (fp32)" in reason and f"{ref['score']:.4f}" in reason
                assert "unsafe" in reason and f">= {threshold}" in reason
            else:
                assert "blocked_reason" not in answer
    # One request with several texts blocks when any text is flagged.
    safe = [t for t, r in zip(PROMPTS, reference[0.5], strict=True) if not r["flagged"]]
    unsafe = [t for t, r in zip(PROMPTS, reference[0.5], strict=True) if r["flagged"]]
    assert guardrail(client, safe[:5]).json()["action"] == "NONE"
    answer = guardrail(client, [*safe[:3], unsafe[0]]).json()
    assert answer["action"] == "BLOCKED" and "text 4:" in answer["blocked_reason"]


def test_check_and_classify_endpoints_match_classify(client, reference) -> None:
    ref = reference[0.5]
    for text, row in zip(PROMPTS[:6], ref, strict=False):
        for mode in ("block", "annotate"):
            answer = client.post("/check", json={"text": text, "mode": mode})
            flagged = "block" if mode == "block" else "annotate"
            assert answer.json()["decision"] == (flagged if row["flagged"] else "allow")
    records = [{"id": i, "text": t} for i, t in enumerate(PROMPTS)]
    out = client.post("/v1/classify", json={"records": records}).json()
    for got, want in zip(out["verdicts"], ref, strict=True):
        assert got["id"] == want["id"] and got["flagged"] == want["flagged"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert {k: got[k] for k in ("tokens", "truncated", "label", "model", "variant")} == {
            k: want[k] for k in ("tokens", "truncated", "label", "model", "variant")
        }
    bad = client.post("/v1/classify", json=[{"id": "x"}, "fine"]).json()
    assert bad["verdicts"][0]["error"]["type"] == "missing_field"
    assert bad["verdicts"][0]["flagged"] is True  # fail closed by default
    assert bad["verdicts"][1]["id"] == "2" and "score" in bad["verdicts"][1]


def test_auth_health_and_limits(served) -> None:
    url, _ = served
    body = {"input": "a lighthouse"}
    assert httpx.post(f"{url}/v1/moderations", json=body).status_code == 401
    wrong = httpx.post(f"{url}/v1/moderations", json=body, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    # LiteLLM sends its api_key as x-api-key.
    assert httpx.post(f"{url}/v1/moderations", json=body, headers={"x-api-key": KEY}).is_success
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
    assert httpx.get(f"{url}/metrics").status_code == 401
    big = httpx.post(f"{url}/v1/moderations", content=b" " * (2 << 20), headers=AUTH)
    assert big.status_code == 413
    notjson = httpx.post(f"{url}/v1/moderations", content=b"{nope", headers=AUTH)
    assert notjson.status_code == 400 and notjson.json()["error"]["type"] == "bad_request"
    many = httpx.post(f"{url}/v1/moderations", json={"input": ["a"] * 300}, headers=AUTH)
    assert many.status_code == 400 and "too many" in many.json()["error"]["message"]
    long = httpx.post(f"{url}/v1/moderations", json={"input": "x " * 40_000}, headers=AUTH)
    assert long.json()["results"][0]["truncated"] is True


def test_load_no_lost_or_mismatched_answers(served, reference) -> None:
    """200 requests at concurrency 16 (the full 2,000 x 32 run is benchmarks/serve_load.py)."""
    url, service = served
    expected = {t: r for t, r in zip(PROMPTS, reference[0.5], strict=True)}
    before = service.metrics.value("requests_total", endpoint="moderations", code="200")

    async def run() -> list[tuple[str, dict]]:
        sem = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as client:

            async def one(i: int) -> tuple[str, dict]:
                text = PROMPTS[(i * 7) % len(PROMPTS)]
                async with sem:
                    r = await client.post("/v1/moderations", json={"input": text})
                r.raise_for_status()
                return text, r.json()["results"][0]

            return await asyncio.gather(*(one(i) for i in range(200)))

    answers = asyncio.run(run())
    assert len(answers) == 200
    for text, result in answers:
        assert result["flagged"] == expected[text]["flagged"]
        assert result["category_scores"]["unsafe"] == pytest.approx(
            expected[text]["score"], abs=1e-4
        )
    after = service.metrics.value("requests_total", endpoint="moderations", code="200")
    assert after - before == 200
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert 'guard_request_duration_seconds_bucket{endpoint="moderations",le="+Inf"}' in metrics
    assert "guard_flagged_total" in metrics and "guard_batch_size_count" in metrics
    # Coalescing happened: fewer model runs than texts.
    runs = float(
        next(ln for ln in metrics.splitlines() if ln.startswith("guard_batch_size_count")).split()[
            -1
        ]
    )
    texts = float(
        next(ln for ln in metrics.splitlines() if ln.startswith("guard_batch_size_sum")).split()[-1]
    )
    assert texts / runs > 1.5


class StubGuard:
    """A guard whose model is slow or broken, to drive the failure paths."""

    name, variant, threshold, batch_size, fail_closed = "stub", None, 0.5, 16, True
    labels = ("safe", "unsafe")

    def __init__(self, delay: float = 0.0, error: Exception | None = None):
        self.delay, self.error = delay, error

    def classify(self, items):
        return []

    def classify_records(self, records):
        time.sleep(self.delay)
        if self.error:
            raise self.error
        return [Verdict(id=r.id, flagged=False, score=0.1, threshold=0.5) for r in records]


def stub_server(guard: StubGuard, **options) -> BackgroundServer:
    return BackgroundServer(create_app(guard, ServeOptions(**options)))  # type: ignore[arg-type]


@pytest.mark.parametrize("fail_closed", [True, False])
def test_internal_errors_never_silently_allow(fail_closed: bool) -> None:
    guard = StubGuard(error=RuntimeError("session died"))
    with stub_server(guard, fail_closed=fail_closed) as url:
        wait_ready(url)
        answer = guardrail(httpx.Client(base_url=url), ["a lighthouse"]).json()
        result = httpx.post(f"{url}/v1/moderations", json={"input": "a"}).json()["results"][0]
        metrics = httpx.get(f"{url}/metrics").text
    assert answer["errors"][0]["message"] == "RuntimeError: session died"
    assert result["error"]["type"] == "internal"
    if fail_closed:
        assert answer["action"] == "BLOCKED" and "could not be judged" in answer["blocked_reason"]
        assert result["flagged"] is True
    else:
        assert answer["action"] == "NONE" and result["flagged"] is False
    assert 'guard_errors_total{kind="runtime"} 2' in metrics


def test_timeout_and_full_queue() -> None:
    with stub_server(StubGuard(delay=0.6), timeout_s=0.2, max_batch=1, max_queue=2) as url:
        wait_ready(url)
        timed_out = httpx.post(f"{url}/check", json={"text": "a"}).json()
        assert timed_out["decision"] == "block"
        assert timed_out["error"]["message"] == "timed out after 0.2s"

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                return await asyncio.gather(
                    *(client.post("/v1/moderations", json={"input": "a"}) for _ in range(8))
                )

        responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes
    busy = next(r for r in responses if r.status_code == 503)
    assert int(busy.headers["retry-after"]) >= 1
    assert busy.json()["error"]["type"] == "queue_full"


def test_serve_command_end_to_end(tiny_model: Path) -> None:
    """The real `guard serve` process: prints where it listens, serves, stops on SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GUARD_API_KEY": KEY}
    args = ["serve", "-m", str(tiny_model), "--variant", "fp32", "--port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardcli", *args, "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert "guard serve: csam-guard (fp32), threshold 0.5, on http://127.0.0.1:" in line, line
        url = line.split(" on ")[1].split()[0]
        wait_ready(url)
        answer = httpx.post(f"{url}/check", json={"text": PROMPTS[0]}, headers=AUTH)
        assert answer.json()["decision"] in ("allow", "block")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert out == ""  # stdout carries no logs


def test_serve_without_the_extra_says_what_to_install(tiny_model: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", without("starlette", "uvicorn"), "serve", "-m", str(tiny_model)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "pip install 'guardcli[serve]'" in result.stderr and "Traceback" not in result.stderr


def test_unknown_backend(runner) -> None:
    result = invoke(runner, ["serve", "--backend", "tpu"])
    assert result.exit_code == 2 and "Unknown backend 'tpu'" in result.stderr


CHAT_REPLY = "stand-in reply"
LITELLM_THRESHOLD = 0.2


def stand_in_model_list(chat_url: str) -> list[dict]:
    """LiteLLM's model_list entry for the stand-in chat model served at chat_url."""
    params = {"model": "openai/stand-in", "api_base": f"{chat_url}/v1", "api_key": "unused"}
    return [{"model_name": "stand-in", "litellm_params": params}]


def stand_in_chat_model(seen: list[str]):
    """An OpenAI-compatible chat model that answers every call and remembers each prompt."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body["messages"][-1]["content"])
        message = {"role": "assistant", "content": CHAT_REPLY}
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "stand-in"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module", autouse=True)
def litellm_proxy(guard_port: int, tmp_path_factory: pytest.TempPathFactory):
    """LiteLLM's proxy, started when this module starts: its ~15-35 s start-up overlaps the
    other tests. Configured with `guardrail: generic_guardrail_api, mode: pre_call` pointing at
    the port `served` will listen on, in front of a stand-in chat model."""
    if not LITELLM.exists():
        yield None
        return
    seen: list[str] = []
    tmp = tmp_path_factory.mktemp("litellm")
    with BackgroundServer(stand_in_chat_model(seen)) as chat_url:
        config = {
            "model_list": stand_in_model_list(chat_url),
            "guardrails": [
                {
                    "guardrail_name": "guard",
                    "litellm_params": {
                        "guardrail": "generic_guardrail_api",
                        "mode": "pre_call",
                        "api_base": f"http://127.0.0.1:{guard_port}",
                        "api_key": KEY,
                        "default_on": True,
                        "additional_provider_specific_params": {"threshold": LITELLM_THRESHOLD},
                    },
                }
            ],
            "general_settings": {"master_key": "sk-master"},
        }
        with start_litellm(config, tmp) as proxy:
            yield {"proxy": proxy, "seen": seen}


def test_litellm_proxy_pre_call_guardrail(litellm_bin, litellm_proxy, served, reference) -> None:
    """Prompts guard flags get HTTP 400 with guard's reason and never reach the model; the rest
    pass through. Decisions are those of `guard classify --threshold 0.2`."""
    openai = pytest.importorskip("openai")
    rows = reference[LITELLM_THRESHOLD]
    flagged = [t for t, r in zip(PROMPTS, rows, strict=True) if r["flagged"]][:5]
    passed = [t for t, r in zip(PROMPTS, rows, strict=True) if not r["flagged"]][:5]
    litellm_proxy["proxy"].wait_live()
    client = openai.OpenAI(base_url=litellm_proxy["proxy"].url, api_key="sk-master", max_retries=0)
    for text in passed:
        reply = client.chat.completions.create(
            model="stand-in", messages=[{"role": "user", "content": text}]
        )
        assert reply.choices[0].message.content == CHAT_REPLY
    for text in flagged:
        with pytest.raises(openai.BadRequestError) as blocked:
            client.chat.completions.create(
                model="stand-in", messages=[{"role": "user", "content": text}]
            )
        assert blocked.value.status_code == 400
        assert "Blocked by guard csam-guard (fp32)" in str(blocked.value)
        assert f">= {LITELLM_THRESHOLD}" in str(blocked.value)
    assert litellm_proxy["seen"] == passed  # flagged prompts never reached the model
