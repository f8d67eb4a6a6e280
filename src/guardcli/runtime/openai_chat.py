"""An OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, SGLang, hosted providers).

Requests go out concurrently, at most `concurrency` at a time; 429 and 5xx answers and
connection errors are retried with exponential backoff (honouring Retry-After); each request
times out. Only the standard library is used.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from guardcli.core.errors import GuardError
from guardcli.core.verdicts import RecordError

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 4
TOP_LOGPROBS = 5


@dataclass
class Completion:
    text: str
    # [(token, [(candidate, logprob), ...]), ...] when the endpoint returned logprobs
    logprobs: list[tuple[str, list[tuple[str, float]]]] | None = None


class ChatEndpoint:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        max_tokens: int = 128,
        logprobs: bool = True,
    ):
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.logprobs = logprobs

    def complete_all(
        self, conversations: list[list[dict[str, str]]]
    ) -> list[Completion | RecordError]:
        """One completion per conversation, in order; a request that fails for good becomes a
        RecordError for that record (a bad key or an unreachable host fails the whole run)."""
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(self._complete_one, conversations))

    def _complete_one(self, messages: list[dict[str, str]]) -> Completion | RecordError:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        data = self._post(body)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (KeyError, IndexError, TypeError) as exc:
            return RecordError(
                "model_output", f"the endpoint's answer has no message content ({exc})"
            )
        return Completion(text, _logprobs(choice.get("logprobs")))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, payload, headers, method="POST")
            delay = self.backoff * 2**attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {exc.code} {detail}".strip()
                if exc.code in (401, 403):
                    raise GuardError(
                        f"{self.url} refused the request ({exc.code}).",
                        hint="Pass --api-key or set OPENAI_API_KEY.",
                    ) from None
                if exc.code != 429 and exc.code < 500:
                    raise GuardError(f"{self.url} answered {last}.") from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = max(delay, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except json.JSONDecodeError:
                last = "an answer that is not JSON"
            if attempt < self.retries:
                time.sleep(delay)
        raise GuardError(
            f"{self.url} failed after {self.retries + 1} attempts: {last}.",
            hint="Check --endpoint and that the server is up; 429/5xx answers are retried.",
        )


def _logprobs(block: Any) -> list[tuple[str, list[tuple[str, float]]]] | None:
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        return None
    out = []
    for item in block["content"]:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            return None
        top = [
            (t["token"], float(t["logprob"]))
            for t in item.get("top_logprobs") or []
            if isinstance(t, dict) and isinstance(t.get("token"), str) and "logprob" in t
        ]
        if not top and "logprob" in item:
            top = [(item["token"], float(item["logprob"]))]
        out.append((item["token"], top))
    return out


def severity_probabilities(
    logprobs: list[tuple[str, list[tuple[str, float]]]], prefix: str, continuations: dict[str, str]
) -> dict[str, float] | None:
    """P(severity) from the candidates at the token that follows `prefix` ("Safety:") in the
    generated text, renormalised over the severities present among them; None when the text
    has no such token or no candidate names a severity."""
    seen = ""
    for token, top in logprobs:
        if seen.endswith(prefix) or seen.rstrip(" ").endswith(prefix):
            found: dict[str, float] = {}
            for candidate, logprob in top:
                if not candidate.strip():
                    continue
                owners = [s for s, c in continuations.items() if c.startswith(candidate)]
                if len(owners) == 1:
                    found[owners[0]] = found.get(owners[0], 0.0) + math.exp(logprob)
            total = sum(found.values())
            if not total:
                return None
            return {s: found.get(s, 0.0) / total for s in continuations}
        seen += token
        if len(seen) > 4 * len(prefix) and prefix not in seen:
            return None
    return None
