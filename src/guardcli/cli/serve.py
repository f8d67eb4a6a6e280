"""`guard serve`: load the model once and answer LiteLLM, OpenAI-moderation and OpenCC clients."""

from __future__ import annotations

from typing import Annotated

import typer

from guardcli.cli._classify_options import LongOpt, UnsafeLabelsOpt, family_options
from guardcli.cli._options import (
    BackendOpt,
    CacheMbOpt,
    CacheOpt,
    DtypeOpt,
    MaxLengthOpt,
    ModelOpt,
    NonNegativeFloatOption,
    PolicyOpt,
    PositiveFloatOption,
    ThreadsOpt,
    ThresholdOpt,
    VariantOpt,
    VerboseOpt,
    backend_name,
)
from guardcli.cli._output import handle_errors, stderr
from guardcli.core.spec import GuardSpec
from guardcli.core.verdict_cache import DEFAULT_CACHE_MB

EPILOG = (
    "Endpoints: POST /beta/litellm_basic_guardrail_api (LiteLLM generic_guardrail_api), "
    "POST /v1/moderations (OpenAI), POST /check (OpenCC), POST /v1/classify (guard's records); "
    "POST /v1/streams, POST|DELETE /v1/streams/{id} (token-level stream families); "
    "GET /healthz, /readyz, /metrics (Prometheus).\n\n"
    "Examples:\n\n"
    "  guard serve --model csam-guard --variant int8\n\n"
    "  GUARD_API_KEY=s3cret guard serve --host 0.0.0.0 --port 8080 --max-batch 16\n\n"
    '  curl -s localhost:8080/v1/moderations -d \'{"input": "a lighthouse at dusk"}\''
)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@handle_errors
def serve(
    *,
    model: ModelOpt = "csam-guard",
    variant: VariantOpt = "auto",
    backend: BackendOpt = None,
    dtype: DtypeOpt = None,
    threshold: ThresholdOpt = None,
    max_length: MaxLengthOpt = None,
    long: LongOpt = None,
    unsafe_labels: UnsafeLabelsOpt = None,
    policy: PolicyOpt = None,
    threads: ThreadsOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on. Default: loopback only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8080,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Most texts coalesced into one model run.")
    ] = 16,
    max_wait_ms: Annotated[
        float,
        NonNegativeFloatOption(
            "--max-wait-ms", help="Longest a request waits for others to share its batch."
        ),
    ] = 5.0,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue", min=1, help="Texts that may wait; beyond it: 503 with Retry-After."
        ),
    ] = 1024,
    timeout: Annotated[
        float,
        PositiveFloatOption("--timeout", help="Seconds per request, queueing included."),
    ] = 30.0,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Larger request bodies get 413.")
    ] = 1 << 20,
    max_text_chars: Annotated[
        int,
        typer.Option("--max-text-chars", min=1, help="Longer texts are cut and marked truncated."),
    ] = 32_000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="GUARD_API_KEY",
            help="Require 'Authorization: Bearer KEY' (or 'x-api-key: KEY', as LiteLLM sends).",
            show_default=False,
        ),
    ] = None,
    fail_closed: Annotated[
        bool,
        typer.Option(
            "--fail-closed/--fail-open",
            help="When a text cannot be judged (timeout, runtime error): block it (default), "
            "or let it pass with the error in the answer, the log and /metrics.",
        ),
    ] = True,
    allow_unjudged: Annotated[
        bool,
        typer.Option(
            "--allow-unjudged",
            help="Let content the model cannot read (image or audio parts, a reply sent "
            "without its conversation to a dialogue guard) pass, with a note in the answer. "
            "Default: block it.",
        ),
    ] = False,
    stream_cache_mb: Annotated[
        float,
        PositiveFloatOption(
            "--stream-cache-mb",
            help="Memory for the KV caches of open streams (/v1/streams, LiteLLM replies), "
            "together; beyond it the least recently used are dropped and rebuilt on next use.",
        ),
    ] = 1024.0,
    stream_ttl: Annotated[
        float,
        PositiveFloatOption(
            "--stream-ttl",
            help="Seconds an idle stream keeps its KV cache (rebuilt when it is used again).",
        ),
    ] = 300.0,
    stream_expire: Annotated[
        float,
        PositiveFloatOption(
            "--stream-expire", help="Seconds after which an idle stream is closed (then 404)."
        ),
    ] = 3600.0,
    cache: CacheOpt = True,
    cache_mb: CacheMbOpt = DEFAULT_CACHE_MB,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level: debug|info|warning|error.")
    ] = "info",
    verbose: VerboseOpt = False,
) -> None:
    """Serve a guard over HTTP: load the model once, batch concurrent requests.

    Speaks LiteLLM's generic guardrail API, OpenAI moderations, OpenCC's /check and guard's own
    record schema. Concurrent requests are coalesced into model batches of up to --max-batch
    texts, or whatever arrived within --max-wait-ms. Binds to 127.0.0.1 unless told otherwise.
    """
    backend = backend_name(backend)
    from guardcli.jobs.serve.server import _uvicorn

    _uvicorn()  # say "install guardcli[serve]" before spending seconds on the model
    from guardcli.families.loader import load_guard
    from guardcli.jobs.serve import ServeOptions, bind, create_app, run

    guard = load_guard(
        GuardSpec(
            model=model,
            variant=variant,
            backend=backend,
            threshold=threshold,
            max_length=max_length,
            threads=threads,
            fail_closed=fail_closed,
            dtype=dtype,
            options=family_options(long, unsafe_labels, policy),
        )
    )
    options = ServeOptions(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        timeout_s=timeout,
        max_body_bytes=max_body_bytes,
        max_text_chars=max_text_chars,
        api_key=api_key or None,
        fail_closed=fail_closed,
        allow_unjudged=allow_unjudged,
        stream_cache_mb=stream_cache_mb,
        stream_ttl_s=stream_ttl,
        stream_expire_s=stream_expire,
        cache_mb=cache_mb if cache else None,
    )
    sock = bind(host, port)
    console = stderr()
    if host not in LOOPBACK and not api_key:
        console.print(
            f"warning: listening on {host} without --api-key; anyone who can reach it can use it."
        )
    bound = sock.getsockname()
    console.print(
        f"guard serve: {guard.name} ({guard.variant}), threshold {guard.threshold}, "
        f"on http://{host}:{bound[1]} ({'fail closed' if fail_closed else 'FAIL OPEN'}"
        f"{', ALLOWING UNJUDGED CONTENT' if allow_unjudged else ''})",
        markup=False,
    )
    run(create_app(guard, options), sock, log_level=log_level)
