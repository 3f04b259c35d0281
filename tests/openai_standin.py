"""A stand-in OpenAI-compatible server for tests: 127.0.0.1 only, a thread, the standard library.

It answers arithmetic correctly (the last "a op b" in the prompt; step by step with a final
"Answer: ..." line when asked to think step by step), reports token usage, and counts every request so a
test can tell whether a rerun cost anything. `fail_first` makes the first N requests fail with
`fail_status` (to exercise retries); `delay` holds each request open (to measure concurrency).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tunebench.tasks.arithmetic import SYMBOLS, explain, solve

_PROBLEM = re.compile(r"(\d+) ([-+*/]) (\d+)")
_OPS = {symbol: op for op, symbol in SYMBOLS.items()}


def arithmetic_reply(prompt: str) -> str:
    found = _PROBLEM.findall(prompt)
    if not found:
        return "I cannot tell what you are asking."
    a, symbol, b = found[-1]
    op, a, b = _OPS[symbol], int(a), int(b)
    if op == "div" and b == 0:
        return "Division by zero is undefined."
    if "step by step" in prompt:
        return f"{explain(op, a, b)}\nAnswer: {solve(op, a, b)}"
    return solve(op, a, b)


class StandIn:
    def __init__(
        self,
        reply: Callable[[str], str] = arithmetic_reply,
        *,
        fail_first: int = 0,
        fail_status: int = 500,
        delay: float = 0.0,
    ) -> None:
        self.reply = reply
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.requests = 0
        self.bodies: list[dict] = []
        self.authorizations: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "standin", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with standin._lock:
                    standin.requests += 1
                    n = standin.requests
                    standin.bodies.append(body)
                    standin.authorizations.append(self.headers.get("Authorization"))
                    standin.in_flight += 1
                    standin.max_in_flight = max(standin.max_in_flight, standin.in_flight)
                try:
                    time.sleep(standin.delay)
                    if n <= standin.fail_first:
                        self._send(standin.fail_status, {"error": {"message": "try again later"}})
                        return
                    self._answer(body)
                finally:
                    with standin._lock:
                        standin.in_flight -= 1

            def _answer(self, body: dict) -> None:
                chat = self.path.endswith("/chat/completions")
                if not chat and not self.path.endswith("/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if body.get("model") != "standin":
                    self._send(404, {"error": {"message": f"model {body.get('model')!r} does not exist"}})
                    return
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                text = standin.reply(prompt)
                # "Tokens" are words here: the whole conversation in, the reply out.
                seen = " ".join(m["content"] for m in body["messages"]) if chat else prompt
                usage = {
                    "prompt_tokens": len(seen.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(seen.split()) + len(text.split()),
                }
                choice = {"index": 0, "finish_reason": "stop", "logprobs": None}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                kind = "chat.completion" if chat else "text_completion"
                payload = {"id": "x", "object": kind, "created": 0, "model": "standin", "choices": [choice]}
                self._send(200, {**payload, "usage": usage})

        return Handler
