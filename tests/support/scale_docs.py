"""The command lines, Python snippets and example definition of docs/scaling.md, for the test
that runs them (tests/e2e/test_scale.py).

The doc is written for several machines: a server host called ``prefect-server``, a database
called ``prefect``. :func:`on_this_machine` turns a doc line into the one the test runs: the
server host becomes 127.0.0.1 (PrefectStack then puts its own port in place of 4200) and the
database name the test's throwaway one. Nothing else changes.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["COMMANDS", "DOC", "doc_commands", "doc_definition", "doc_python", "on_this_machine"]

DOC = Path(__file__).parents[2] / "docs" / "scaling.md"

COMMANDS = {
    "createdb": "createdb -h 127.0.0.1 -U postgres prefect",
    "database_url": "prefect config set PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/prefect",
    "ui_api_url": "prefect config set PREFECT_UI_API_URL=http://prefect-server:4200/api",
    "server": "prefect server start --host 0.0.0.0 --port 4200",
    "api_url": "prefect config set PREFECT_API_URL=http://prefect-server:4200/api",
    "pool": "prefect work-pool create taskmark --type process",
    "pool_limit": "prefect work-pool set-concurrency-limit taskmark 8",
    "deploy": "taskmark deploy workflows/ticker-brief.md --pool taskmark",
    "worker_1": "prefect worker start --pool taskmark --name worker-1 --limit 4",
    "worker_2": "prefect worker start --pool taskmark --name worker-2 --limit 4",
    "gcl_ls": "prefect gcl ls",
    "gcl_inspect": "prefect gcl inspect taskmark-llm-shared-openai",
}
"""Each command line of the doc, by the name the test uses; a test checks the doc has exactly these."""


def on_this_machine(command: str, database: str) -> str:
    """The doc's command line as the test runs it: the server host is 127.0.0.1, the database ``database``."""
    command = command.replace("prefect-server:", "127.0.0.1:")
    return re.sub(r"(5432/|-U postgres )prefect\b", rf"\g<1>{database}", command)


def doc_commands() -> list[str]:
    """Every line of every ```bash block of the doc."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def doc_python() -> list[str]:
    """Every ```python block of the doc, in order."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def doc_definition() -> str:
    """The definition the doc deploys (its ````markdown block)."""
    found = re.search(r"````markdown\n(.*?)````", DOC.read_text(), re.S)
    assert found, f"no ````markdown block in {DOC}"
    return found.group(1)
