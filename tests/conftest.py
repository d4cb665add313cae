"""Shared test set-up: offline environment, a guard against network access, the fake LLM
server, and Prefect's test harness.

The environment is set at import time, before any test module imports litellm (which
would download a price map) or Prefect (which would send telemetry).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# -- offline, quiet, isolated: before anything imports litellm or prefect ------------------
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="taskmark-tests-prefect-"))
# Tests must not talk to a server configured on the developer's machine.
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)

sys.path.insert(0, str(Path(__file__).parent))

import pytest

from support.fake_openai import FakeOpenAIServer

# Variables that change which provider answers; cleared for every test so that the
# developer's own keys neither leak into nor change any test.
_PROVIDER_ENV = (
    "TASKMARK_LLM_MODEL",
    "TASKMARK_LLM_API_BASE",
    "TASKMARK_LLM_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "DEEPSEEK_API_KEY",
    "MOONSHOT_API_KEY",
    "ZAI_API_KEY",
    "ZHIPUAI_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "TOGETHERAI_API_KEY",
    "XAI_API_KEY",
)


# -- no accidental network --------------------------------------------------------------------


class NetworkAccessDenied(RuntimeError):
    """A test tried to reach an address off this machine."""


_blocked: list[str] = []


def _is_local_host(host: Any) -> bool:
    if host in (None, "", "localhost", "localhost.localdomain"):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check(address: Any, family: int) -> None:
    if family == getattr(socket, "AF_UNIX", None):
        return
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local_host(host):
        _blocked.append(repr(address))
        raise NetworkAccessDenied(f"test tried to reach {address!r}; only 127.0.0.0/8 is allowed")


@pytest.fixture(scope="session", autouse=True)
def _network_guard() -> Iterator[None]:
    """Fail any connection (or name lookup) that would leave the machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        _check(address, self.family)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        _check(address, self.family)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            _blocked.append(f"getaddrinfo({host!r})")
            raise NetworkAccessDenied(f"test tried to resolve {host!r}; no network in tests")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(autouse=True)
def _no_network_attempts() -> Iterator[None]:
    """Fail the test if anything in it tried the network, even if the error was swallowed."""
    start = len(_blocked)
    yield
    attempts = _blocked[start:]
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(autouse=True)
def _hermetic_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider keys or taskmark overrides from the developer's environment."""
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)


# -- the fake OpenAI-compatible server --------------------------------------------------------


@pytest.fixture(scope="session")
def _fake_llm_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(_fake_llm_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """A real HTTP server speaking the OpenAI chat API on 127.0.0.1, reset for each test.

    Script replies with ``fake_llm.push(Reply(...))``; read ``fake_llm.requests``.
    """
    _fake_llm_server.reset()
    yield _fake_llm_server
    _fake_llm_server.reset()


# -- Prefect ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's real local server on a temporary SQLite database, once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


class CapturedEvents:
    """Events emitted during a test, as Prefect ``Event`` objects."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def all(self) -> list[Any]:
        """Every event emitted so far."""
        return list(self.events)

    def named(self, name: str) -> list[Any]:
        """The events called ``name``."""
        return [e for e in self.events if e.event == name]


@pytest.fixture
def captured_events(monkeypatch: pytest.MonkeyPatch) -> CapturedEvents:
    """Capture ``prefect.events.emit_event`` calls in memory instead of sending them.

    Each call is validated into a real ``prefect.events.Event``, so a malformed resource
    or payload fails here as it would on a server. The provider emits only when there is a
    Prefect API to tell; here it is told there is. Delivery to a real server is covered
    by the canary test, which reads events back from the server.
    """
    import prefect.events
    from prefect.events import Event

    from taskmark.blocks import _usage

    captured = CapturedEvents()

    def emit_event(event: str, resource: dict[str, str], **kwargs: Any) -> Any:
        obj = Event(event=event, resource=resource, **kwargs)
        captured.events.append(obj)
        return obj

    monkeypatch.setattr(_usage, "should_emit", lambda: True)
    monkeypatch.setattr(prefect.events, "emit_event", emit_event)
    return captured


@pytest.fixture(autouse=True)
def _fresh_step_kind_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Custom step kinds a test registers stay in that test."""
    from taskmark.definition import _registry
    from taskmark.tasks import _strategies

    monkeypatch.setattr(_registry, "_registered", set(_registry._registered))
    monkeypatch.setattr(_strategies, "_STRATEGIES", dict(_strategies._STRATEGIES))
