"""An in-process stand-in for a running Ollama: real HTTP on 127.0.0.1, answering /api/version,
/api/tags, /api/ps, /api/show and /api/create with the documented response shapes
(tests/ollama_api_fixtures.py), and recording every request so tests can assert what LayerFit sent."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import ollama_api_fixtures as api


class FakeOllama:
    """Ollama's API over real HTTP on 127.0.0.1, recording every request (method, path, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.tags: list[dict[str, Any]] = copy.deepcopy(api.TAGS["models"])
        self.ps: list[dict[str, Any]] = []
        self.fail: tuple[int, str] | None = None  # answer every request with this HTTP error
        self.hang = 0.0  # seconds to wait before answering
        self.create_lists_model = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                return dict(json.loads(self.rfile.read(n))) if n else {}

            def _send(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                body = self._body() if method == "POST" else {}
                outer.requests.append((method, self.path, body or None))
                if outer.hang:
                    time.sleep(outer.hang)
                if outer.fail:
                    return self._send(outer.fail[0], {"error": outer.fail[1]})
                route = (method, self.path)
                if route == ("GET", "/api/version"):
                    return self._send(200, api.VERSION)
                if route == ("GET", "/api/tags"):
                    return self._send(200, {"models": outer.tags})
                if route == ("GET", "/api/ps"):
                    return self._send(200, {"models": outer.ps})
                if route == ("POST", "/api/show"):
                    if not any(t["model"] == body["model"] for t in outer.tags):
                        return self._send(404, {"error": f"model '{body['model']}' not found"})
                    return self._send(200, api.SHOW)
                if route == ("POST", "/api/create"):
                    if outer.create_lists_model:
                        entry = copy.deepcopy(api.TAGS["models"][0])
                        entry["name"] = entry["model"] = body["model"]
                        outer.tags.append(entry)
                    return self._send(200, api.CREATE)
                return self._send(404, {"error": "not found"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def running(self, name: str, size: int, size_vram: int, context_length: int) -> None:
        entry = copy.deepcopy(api.PS["models"][0])
        entry.update(name=name, model=name, size=size, size_vram=size_vram, context_length=context_length)
        self.ps.append(entry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> str:
    """A host:port where nothing listens (the socket is closed again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"
