from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in the corpus folder, so paths in messages are as short as a user would type."""
    monkeypatch.chdir(DATA)
    return DATA
