"""LiteLLM's real proxy (from .venv-litellm) in its own process, for the tests that put guard
behind it: started with a config, waited for, and stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ...conftest import LITELLM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proxy:
    url: str
    proc: subprocess.Popen
    log: Path

    def wait_live(self, timeout: float = 120.0) -> None:
        """Until /health/liveliness answers (its start takes ~15-35 s); fails with its log if
        the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "LiteLLM proxy did not start"
            time.sleep(0.2)


@contextmanager
def start_litellm(config: dict, folder: Path) -> Iterator[Proxy]:
    """The proxy with `config` (written as YAML, of which JSON is a subset) on a free port.
    Without LITELLM_LOCAL_MODEL_COST_MAP it would fetch a price list at start."""
    path = folder / "litellm.yaml"
    path.write_text(json.dumps(config))
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "*"}
    log_path = folder / "litellm.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            yield Proxy(f"http://127.0.0.1:{port}", proc, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
