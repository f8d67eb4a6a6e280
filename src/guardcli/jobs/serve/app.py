"""The HTTP service: one loaded Guard behind LiteLLM's guardrail API, OpenAI moderations,
OpenCC's /check and guard's own /v1/classify, with health, readiness and metrics.

Starlette only (no FastAPI): the endpoints parse JSON by hand in `protocols`, so the server
needs no schema layer, and `guard --help` never imports any of it.
"""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from guardcli.jobs.serve import protocols, stream_routes
from guardcli.jobs.serve.json_body import dumps
from guardcli.jobs.serve.protocols import BadRequest

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from guardcli.families import Guard


from guardcli.jobs.serve.service import (  # noqa: F401 (re-exported)
    _PATH,
    SELF_CHECK,
    GuardService,
    Handler,
    HTTPError,
    ServeOptions,
    log,
    policy_for,
    redact,
)


def _json_response_class() -> type[Response]:
    from starlette.responses import JSONResponse

    class StrictJSONResponse(JSONResponse):
        """Strict JSON: NaN/inf refused, UTF-8 checked (a failure is a 500, never bad JSON)."""

        def render(self, content: Any) -> bytes:
            return dumps(content)

    return StrictJSONResponse


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None):
    """The service's one error shape: {"error": {"message", "type"}}."""
    return _json_response_class()(
        {"error": {"message": message, "type": kind}}, status_code=status, headers=headers
    )


def _route(service: GuardService, endpoint: str, handler: Handler, *, auth: bool = True):
    """Wrap a handler: auth, JSON errors, request counts and latency."""
    from starlette.responses import Response

    JSONResponse = _json_response_class()

    async def endpoint_fn(request: Request) -> Response:
        start = time.perf_counter()
        try:
            if auth and not service.authorised(request):
                raise HTTPError(
                    401,
                    "Missing or wrong API key.",
                    "unauthorized",
                    {"WWW-Authenticate": "Bearer"},
                )
            result = await handler(service, request)
            response = result if isinstance(result, Response) else JSONResponse(result)
        except HTTPError as err:
            if err.kind != "queue_full":  # counted where it happens
                service.metrics.errors.labels(kind=err.kind).inc()
            response = error_response(err.status, err.message, err.kind, err.headers)
        except BadRequest as err:
            service.metrics.errors.labels(kind="bad_request").inc()
            response = error_response(400, str(err), "bad_request")
        except Exception as exc:  # a bug: answer 500, which LiteLLM treats as a failed check
            log.exception("internal error on %s", endpoint)
            service.metrics.errors.labels(kind="internal").inc()
            response = error_response(500, redact(f"{type(exc).__name__}: {exc}"), "internal")
        metrics = service.metrics
        metrics.requests.labels(endpoint=endpoint, code=str(response.status_code)).inc()
        metrics.request_duration.labels(endpoint=endpoint).observe(time.perf_counter() - start)
        return response

    return endpoint_fn


async def _guardrail(service: GuardService, request: Request) -> Any:
    body = await service.body(request)
    fast = await stream_routes.litellm_reply(service, body)
    if fast is not None:
        return fast
    records, threshold = protocols.guardrail_request(body, service.policy, service.limits)
    verdicts = await service.judge(records, threshold, "guardrail")
    return protocols.guardrail_response(verdicts, service.policy)


async def _moderations(service: GuardService, request: Request) -> Any:
    body = await service.body(request)
    records = protocols.moderation_request(body, service.limits)
    verdicts = await service.judge(records, None, "moderations")
    return protocols.moderation_response(verdicts, service.policy, f"modr-{uuid.uuid4().hex}")


async def _check(service: GuardService, request: Request) -> Any:
    body = await service.body(request)
    record, mode, threshold = protocols.check_request(body, service.limits)
    (verdict,) = await service.judge([record], threshold, "check")
    return protocols.check_response(verdict, mode, service.policy)


async def _classify(service: GuardService, request: Request) -> Any:
    body = await service.body(request)
    records, threshold = protocols.classify_request(body, service.limits)
    verdicts = await service.judge(records, threshold, "classify")
    return protocols.classify_response(verdicts, service.policy)


async def _healthz(service: GuardService, request: Request) -> Any:
    return {"status": "ok"}


async def _readyz(service: GuardService, request: Request) -> Any:
    JSONResponse = _json_response_class()
    guard = service.guard
    if service.ready:
        return {"status": "ready", "model": guard.name, "variant": guard.variant}
    if service.load_error:
        return JSONResponse({"status": "failed", "error": service.load_error}, status_code=503)
    return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})


async def _metrics(service: GuardService, request: Request) -> Any:
    from starlette.responses import Response

    body, content_type = service.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


def create_app(guard: Guard, options: ServeOptions | None = None) -> Starlette:
    """The ASGI app serving `guard`. The model warms up in the background after start-up;
    /readyz says when it is done, and requests that arrive earlier simply wait in the queue."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    service = GuardService(guard, options or ServeOptions())

    @asynccontextmanager
    async def lifespan(app: Starlette):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    def post(path: str, name: str, handler: Handler) -> Route:
        return Route(path, _route(service, name, handler), methods=["POST"])

    def get(path: str, name: str, handler: Handler, auth: bool) -> Route:
        return Route(path, _route(service, name, handler, auth=auth), methods=["GET"])

    routes = [
        post("/beta/litellm_basic_guardrail_api", "guardrail", _guardrail),
        post("/v1/moderations", "moderations", _moderations),
        post("/check", "check", _check),
        post("/v1/classify", "classify", _classify),
        post("/v1/streams", "streams_open", stream_routes.open_stream),
        post("/v1/streams/{stream_id}", "streams_append", stream_routes.append),
        Route(
            "/v1/streams/{stream_id}",
            _route(service, "streams_delete", stream_routes.delete),
            methods=["DELETE"],
        ),
        get("/healthz", "healthz", _healthz, auth=False),
        get("/readyz", "readyz", _readyz, auth=False),
        get("/metrics", "metrics", _metrics, auth=True),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown routes (404) and wrong methods (405) answer in the service's JSON shape.
        assert isinstance(exc, HTTPException)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        service.metrics.errors.labels(kind=kinds.get(exc.status_code, "http")).inc()
        message = {404: "No such endpoint.", 405: "Method not allowed on this endpoint."}
        return error_response(
            exc.status_code,
            message.get(exc.status_code, str(exc.detail)),
            kinds.get(exc.status_code, "http"),
            dict(exc.headers or {}),
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error: %s: %s", type(exc).__name__, exc)
        return error_response(500, "Internal server error.", "internal")

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.service = service
    return app
