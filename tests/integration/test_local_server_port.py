"""The local server's start survives losing its port to another process between probe and bind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskmark.server import _local as _local_server

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    harness = {PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL}
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path)}, restore_defaults=harness):
        yield tmp_path
        _local_server.stop_server()


def test_a_port_taken_before_the_server_binds_it_is_traded_for_another(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        offered = [taken]
        real_free_port = _local_server.free_port
        monkeypatch.setattr(_local_server, "free_port", lambda: offered.pop() if offered else real_free_port())

        api_url = _local_server.ensure_server()

        assert not offered, "the taken port was never offered"
        assert f":{taken}/" not in api_url
        assert httpx.get(f"{api_url}/health", timeout=10).json() is True
