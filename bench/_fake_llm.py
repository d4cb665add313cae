"""A fast OpenAI-compatible fake for benchmarks: asyncio, its own process, latency in the URL.

``tests/support/fake_openai.py`` runs ``http.server`` in a thread of the measured process: its
request threads compete with the event loop under measurement for the GIL. This one runs in a
child process (one asyncio loop, keep-alive, no Nagle), so the measured process only pays for
its own client side. The reply latency is part of the base URL, so one server serves every
latency a benchmark needs::

    with FakeLLM() as llm:
        llm.api_base(0.4)   # 'http://127.0.0.1:PORT/d400/v1': every reply after 400 ms
        llm.count()         # chat requests answered so far

Run alone: ``python bench/_fake_llm.py`` prints the port and serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from types import TracebackType

_BODY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}


def _reply(status: int, payload: bytes) -> bytes:
    head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def _serve(port: int) -> None:
    count = 0
    ok = _reply(200, json.dumps(_BODY).encode())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == "content-length:":
                        length = int(line[15:].strip())
                if length:
                    await reader.readexactly(length)
                if method == "GET" and path == "/count":
                    writer.write(_reply(200, str(count).encode()))
                elif path.endswith("/chat/completions"):
                    count += 1
                    delay_ms = int(path.split("/")[1][1:]) if path.startswith("/d") else 0
                    if delay_ms:
                        await asyncio.sleep(delay_ms / 1000)
                    writer.write(ok)
                else:
                    writer.write(_reply(404, b'{"error": {"message": "not found"}}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class FakeLLM:
    """The fake in a child process; a context manager."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FakeLLM:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._process = subprocess.Popen([sys.executable, __file__, str(port)], stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.count()
                break
            except OSError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)

    def api_base(self, latency_s: float) -> str:
        """The base URL whose replies come after ``latency_s``."""
        return f"http://127.0.0.1:{self.port}/d{round(latency_s * 1000)}/v1"

    def count(self) -> int:
        """Chat requests answered since the server started."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=5) as response:
            return int(response.read())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
