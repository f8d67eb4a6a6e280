"""Running the app under uvicorn: in the foreground (`guard serve`) or on a background thread
(tests, benchmarks, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import GuardError, missing_extra

if TYPE_CHECKING:
    import uvicorn


def _uvicorn() -> Any:
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise missing_extra("serve", "`guard serve`") from exc
    return uvicorn


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except Exception:  # absent, or built for another Python: the pure-Python fallback serves
        return False
    return True


def _config(
    app: Any, host: str, port: int, log_level: str, *, own_process: bool = True
) -> uvicorn.Config:
    """uvicorn's settings: its C HTTP parser and, in a process of its own (`guard serve`), uvloop,
    where they import (the serve extra brings them): less CPU per request, which the model shares
    the cores with. A server on a thread of someone else's process keeps asyncio's loop (older
    uvicorn set uvloop's loop policy for the whole process)."""
    uvicorn = _uvicorn()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        loop="uvloop" if own_process and _importable("uvloop") else "asyncio",
        http="httptools" if _importable("httptools") else "h11",
        timeout_graceful_shutdown=5,
        # Longer than clients keep idle connections (httpx: 5 s, uvicorn's default too): a
        # server that closes first races the client's next request, which then fails, and
        # LiteLLM fails the call closed.
        timeout_keep_alive=75,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one. Errors say what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this (Linux). Without it, a keep-alive request waits ~40 ms
    # for a delayed ACK (Nagle), since uvicorn writes headers and body separately.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GuardError(
            f"Cannot listen on {host}:{port}: {exc.strerror}.",
            hint="Choose another --port, or stop what is using this one.",
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run(app: Any, sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    host, port = sock.getsockname()[:2]
    server = _uvicorn().Server(_config(app, host, port, log_level))
    server.run(sockets=[sock])


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves on 127.0.0.1 on a free port, on a thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level="warning"):
        self.sock = bind(host, port)
        bound_host, bound_port = self.sock.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self.server = _uvicorn().Server(
            _config(app, bound_host, bound_port, log_level, own_process=False)
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise GuardError("The background server did not start.")
            time.sleep(0.01)
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
