"""A local stand-in for the Hugging Face hub: enough of its download protocol for the real
huggingface_hub client (repo info, recursive tree listing, HEAD/GET resolve with ETag and
X-Repo-Commit, byte ranges), serving one folder as one repo at one commit."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "4f1c0de5a1b2c3d4e5f60718293a4b5c6d7e8f90"


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStub:
    """`requests` logs (method, path, authorization) of every request. Set `gated` to refuse
    callers without `Authorization: Bearer <token>` as the hub does for a gated repo."""

    def __init__(self, repo: str, folder: Path):
        self.repo = repo
        self.files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        self.requests: list[tuple[str, str, str | None]] = []
        self.gated_token: str | None = None
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of resumed downloads
        self.cut: dict[str, int] = {}  # file -> bytes sent before the connection drops, once
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def downloaded(self) -> list[str]:
        """Files whose bytes were sent (GET on resolve)."""
        prefix = f"/{self.repo}/resolve/"
        return sorted(
            p[len(prefix) :].split("/", 1)[1]
            for m, p, _ in self.requests
            if m == "GET" and p.startswith(prefix)
        )

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj, code: int = 200) -> None:
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _route(self) -> None:
                path = unquote(urlsplit(self.path).path)
                auth = self.headers.get("Authorization")
                stub.requests.append((self.command, path, auth))
                if stub.gated_token is not None and auth != f"Bearer {stub.gated_token}":
                    code = 401 if auth is None else 403
                    msg = f"Access to model {stub.repo} is restricted and you are not in the "
                    msg += "authorized list." if auth else "authenticated list."
                    self._send(
                        code,
                        json.dumps({"error": msg}).encode(),
                        {"X-Error-Code": "GatedRepo", "X-Error-Message": msg},
                    )
                    return
                api = f"/api/models/{stub.repo}/"
                if path.startswith(api + "revision/"):
                    self._json(
                        {
                            "id": stub.repo,
                            "modelId": stub.repo,
                            "sha": COMMIT,
                            "private": False,
                            "gated": "manual" if stub.gated_token else False,
                            "siblings": [{"rfilename": f} for f in stub.files],
                        }
                    )
                elif path.startswith(api + "tree/"):
                    dirs = sorted({f.rsplit("/", 1)[0] for f in stub.files if "/" in f})
                    self._json(
                        [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in dirs]
                        + [
                            {"type": "file", "path": f, "size": len(b), "oid": git_blob_sha(b)}
                            for f, b in stub.files.items()
                        ]
                    )
                elif path.startswith(f"/{stub.repo}/resolve/"):
                    filename = path[len(f"/{stub.repo}/resolve/") :].split("/", 1)[1]
                    data = stub.files.get(filename)
                    if data is None:
                        self._send(
                            404,
                            b"Entry not found",
                            {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT},
                        )
                        return
                    headers = {
                        "ETag": f'"{git_blob_sha(data)}"',
                        "X-Repo-Commit": COMMIT,
                        "Accept-Ranges": "bytes",
                        "Content-Type": "application/octet-stream",
                    }
                    start = 0
                    rng = self.headers.get("Range", "")
                    if rng.startswith("bytes=") and self.command == "GET":
                        stub.ranges.append((filename, rng))
                        start = int(rng[6:].split("-")[0] or 0)
                    if start:
                        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                        self._send(206, data[start:], headers)
                    elif self.command == "GET" and filename in stub.cut:
                        sent = stub.cut.pop(filename)  # a dropped connection, mid-file
                        self.send_response(200)
                        for k, v in {**headers, "Content-Length": len(data)}.items():
                            self.send_header(k, str(v))
                        self.end_headers()
                        self.wfile.write(data[:sent])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                    else:
                        self._send(200, data, headers)
                else:
                    self._send(404, b"not found", {"X-Error-Code": "RepoNotFound"})

            do_GET = _route
            do_HEAD = _route

        return Handler
