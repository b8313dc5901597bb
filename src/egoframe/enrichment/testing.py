"""A local OpenAI-compatible chat server that injects faults, for tests and the benchmark.

It speaks ``POST /v1/chat/completions`` on 127.0.0.1 from a thread pool (``ThreadingHTTPServer``).
Requests are keyed by their last user message (the inference example), so a test can script faults per
item (``plan[key] = ["429", "500", "ok"]``: the n-th request for that key gets the n-th entry, then "ok")
and count what each item cost. The "ok" answer is one sentence that repeats the action label, so it passes
validation. Nothing here is imported by the library itself.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from egoframe.enrichment.prompt import PromptTemplate

FAULTS = ("ok", "429", "500", "503", "timeout", "malformed", "no_choices", "empty", "multi", "no_noun",
          "truncated", "no_usage", "401", "400")


@dataclass
class ServedRequest:
    key: str
    fault: str
    at: float  # time.monotonic() when the request arrived


@dataclass
class FaultPlan:
    per_key: dict[str, list[str]] = field(default_factory=dict)
    latency: float = 0.0  # seconds every answer takes, like a real model's generation time
    retry_after: str = "0.05"  # Retry-After header value sent with 429 / 503
    hang: float = 5.0  # how long a "timeout" fault sleeps before answering (past the client's timeout)


class FakeChatServer:
    """``with FakeChatServer(plan) as srv: ... srv.base_url ...``; ``srv.count(key)`` = requests for ``key``."""

    def __init__(self, plan: FaultPlan | None = None, port: int = 0) -> None:
        self.plan = plan or FaultPlan()
        self.served: list[ServedRequest] = []
        self._counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
            # headers and body go out as two writes; with Nagle + delayed ACK each answer would wait ~40 ms
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # silence per-request stderr lines
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                try:
                    request = json.loads(body)
                    messages = request["messages"]
                except (ValueError, KeyError):
                    return self._send(400, {"error": {"message": "bad request"}})
                key = messages[-1]["content"]
                fault = server._next_fault(key)
                server._answer(self, fault, key, request)

            def _send(self, status: int, payload, headers: dict[str, str] | None = None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): exactly what a "timeout" fault provokes

        class Server(ThreadingHTTPServer):
            # the default listen backlog of 5 drops connections when 32 clients connect at once
            request_queue_size = 256

        self._httpd = Server(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True  # a handler still sleeping in a "timeout" fault must not block exit
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeChatServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def _next_fault(self, key: str) -> str:
        with self._lock:
            n = self._counts[key]
            self._counts[key] += 1
            script = self.plan.per_key.get(key, [])
            fault = script[n] if n < len(script) else "ok"
            self.served.append(ServedRequest(key, fault, time.monotonic()))
        return fault

    def _answer(self, handler, fault: str, key: str, request: dict) -> None:
        plan = self.plan
        if fault in ("429", "503"):
            return handler._send(int(fault), {"error": {"message": "slow down"}}, {"Retry-After": plan.retry_after})
        if fault in ("500", "400", "401"):
            return handler._send(int(fault), {"error": {"message": f"injected {fault}"}})
        if fault == "timeout":
            time.sleep(plan.hang)
        elif plan.latency:
            time.sleep(plan.latency)
        if fault == "malformed":
            return handler._send(200, None, raw=b'{"choices": [{"message": {"content": "the person ta')
        if fault == "no_choices":
            return handler._send(200, {"id": "x", "object": "chat.completion", "choices": []})
        action = _action_of(key)
        text = {
            "empty": "",
            "multi": f"The person does {action}. Then the person leaves.",
            "no_noun": "The person does something with the right hand.",
        }.get(fault, f"The person is seen to {action} with the right hand.")
        prompt_tokens = sum(len(m.get("content", "").split()) for m in request.get("messages", []))
        payload = {
            "id": "chatcmpl-fake", "object": "chat.completion", "model": request.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if fault == "truncated" else "stop"}],
        }
        if fault != "no_usage":
            payload["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                                "total_tokens": prompt_tokens + len(text.split())}
        handler._send(200, payload)


def key_for(record, template=None) -> str:
    """The server's key for ``record``: the last message the enricher sends for it."""
    return (template or PromptTemplate()).messages(record)[-1]["content"]


def _action_of(query: str) -> str:
    match = re.search(r"Action: (.*)", query)
    return match.group(1).strip() if match else "the action"


def main(argv: list[str] | None = None) -> None:
    """``python -m egoframe.enrichment.testing --latency 0.05``: serve fault-free until killed.

    Prints the base URL as its first line. The benchmark runs the server in its own process so that the
    server's threads do not compete with the measured client for the GIL.
    """
    import argparse

    parser = argparse.ArgumentParser(description="fault-free fake OpenAI-compatible chat server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = FakeChatServer(FaultPlan(latency=args.latency), port=args.port)
    print(server.base_url, flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
