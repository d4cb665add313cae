"""A small real HTTP server that speaks the OpenAI chat-completions API, scriptable per test.

Tests reach it through litellm over real HTTP, so the whole client path (httpx, litellm's
response parsing and exception mapping) is exercised. Each test scripts the next replies
(status, body, headers, latency, garbage) and reads back every request the server saw, when
it arrived, and how many were held unanswered at once (``max_in_flight``).

It runs ``http.server`` in a background thread so that sync and async tests can share one
server. ``request_queue_size`` is raised because the default listen backlog of 5 makes a
burst of parallel connections wait a second for TCP's SYN retry.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "RecordedRequest", "Reply", "example_of", "schema_reply"]


@dataclass
class Reply:
    """One scripted answer.

    ``content`` becomes the assistant message; ``raw`` (if set) is sent as the body as it
    is, which is how tests send garbage; ``status`` other than 200 sends an OpenAI-style
    error body with ``error_message``.
    """

    content: str | None = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None
    error_message: str = "scripted failure"
    error_type: str = "server_error"
    error_code: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    finish_reason: str = "stop"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    arrived_at: float = 0.0
    """When the server received it (``time.monotonic()``): gaps between requests, as the server saw them."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages the client sent."""
        return list(self.body.get("messages", []))


class _Server(ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True
    # Handlers may be sleeping on a scripted delay; do not wait for them on close.
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out closes its socket before the scripted delay ends; the
        # resulting BrokenPipeError is the point of the test, not a failure.
        return


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on a free 127.0.0.1 port.

    Example:
        >>> server = FakeOpenAIServer().start()
        >>> server.push(Reply(status=429, headers={"Retry-After": "0"}), Reply(content="hi"))
        >>> server.api_base  # doctest: +SKIP
        'http://127.0.0.1:54321/v1'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._generation = 0  # bumped by reset(): requests still held from before do not count
        self._usage = [0, 0, 0]  # answers with usage, prompt tokens, completion tokens
        self._stopping = threading.Event()
        self.default: Callable[[RecordedRequest], Reply] = lambda _req: Reply()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def api_base(self) -> str:
        """The base URL a client puts in ``api_base``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting -----------------------------------------------------------------------

    def push(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one, then falls back to ``default``."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget queued replies, recorded requests, the in-flight counts and the default reply."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._in_flight = self._max_in_flight = 0
            self._usage = [0, 0, 0]
            self._generation += 1
            self.default = lambda _req: Reply()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat request received since the last reset, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        """How many chat requests reached the server since the last reset."""
        with self._lock:
            return len(self._requests)

    @property
    def in_flight(self) -> int:
        """Chat requests received and not yet answered, now."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most chat requests the server held unanswered at once since the last reset:
        how many calls a client really had open together, whatever the machine's speed."""
        with self._lock:
            return self._max_in_flight

    @property
    def usage_sent(self) -> tuple[int, int, int]:
        """Since the last reset: answers sent with usage (HTTP 200, not raw), and the prompt and
        completion tokens they reported: what a client must account, request by request."""
        with self._lock:
            answers, prompt, completion = self._usage
            return answers, prompt, completion

    def _sent(self, reply: Reply, generation: int) -> None:
        with self._lock:
            if generation == self._generation and reply.status == 200 and reply.raw is None:
                self._usage[0] += 1
                self._usage[1] += reply.prompt_tokens
                self._usage[2] += reply.completion_tokens

    def _arrived(self) -> int:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            return self._generation

    def _answered(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._in_flight -= 1

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            if self._script:
                return self._script.popleft()
        return self.default(request)

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _completion_body(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": reply.finish_reason,
                "message": {"role": "assistant", "content": reply.content},
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _payload(reply: Reply, body: dict[str, Any]) -> bytes:
    if reply.raw is not None:
        return reply.raw
    if reply.status == 200:
        return json.dumps(_completion_body(reply, str(body.get("model", "")))).encode()
    error = {"message": reply.error_message, "type": reply.error_type, "code": reply.error_code}
    return json.dumps({"error": error}).encode()


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm and delayed ACKs
        # every reply would wait ~40 ms on a keep-alive connection.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": []}).encode(), {})
            else:
                self._send(404, b'{"error": {"message": "not found"}}', {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_unparseable": raw.decode("utf-8", "replace")}
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, b'{"error": {"message": "not found"}}', {})
                return
            request = RecordedRequest(
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                arrived_at=time.monotonic(),
            )
            generation = server._arrived()
            try:  # answered once the reply is ready, before it is sent: the client cannot be quicker
                reply = server._next_reply(request)
                if reply.delay_s:
                    server._sleep(reply.delay_s)
                payload = _payload(reply, body)
            finally:
                server._answered(generation)
            server._sent(reply, generation)  # before the client can have it
            self._send(reply.status, payload, reply.headers)

        def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                # The client gave up (a timeout test); nothing to answer.
                self.close_connection = True

    return Handler


def example_of(schema: dict[str, Any]) -> Any:
    """A value that matches ``schema`` (the subset taskmark writes): what a well-behaved
    model constrained by the schema would answer. Strings are 1,200 characters unless bounded."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        values = schema.get("additionalProperties")
        properties = schema.get("properties") or ({"key": values} if isinstance(values, dict) else {})
        return {name: example_of(sub) for name, sub in properties.items()}
    if kind == "array":
        count = max(schema.get("minItems", 0), min(schema.get("maxItems", 2), 2))
        return [example_of(schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return True
    words = "The quick brown fox reports that the market moved on the news. "
    length = min(schema.get("maxLength", 1200), max(schema.get("minLength", 0), 1200))
    return (words * (length // len(words) + 1))[:length].strip() or "x"


def schema_reply(request: RecordedRequest) -> Reply:
    """Answer a structured request with an example of its JSON Schema, anything else with text."""
    fmt = request.body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema")
    return Reply(content=json.dumps(example_of(schema)) if schema else "A short answer.")
