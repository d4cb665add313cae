"""A real Prefect stack shared by the deployment tests: `prefect server start`, the `taskmark`
process pool, the deployments of prefect.yaml and a process worker, all started with the
command lines of docs/deploying.md; LLM calls go to the fake OpenAI-compatible server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.deploy_docs import COMMANDS, doc_definition
from support.fake_openai import FakeOpenAIServer, schema_reply
from support.prefect_stack import PrefectStack

ROOT = Path(__file__).parents[2]

API_KEY = f"sk-canary-{uuid.uuid4().hex}"
"""The key the worker is given: no log, parameter, artifact or event may contain it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e ``e2e`` (a conftest's ``pytestmark`` marks nothing)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def prefect_stack(
    _fake_llm_server: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectStack]:
    """Server, pool, `prefect deploy --all` from the repository root, and a worker."""
    llm_env = {
        "TASKMARK_LLM_API_BASE": _fake_llm_server.api_base,
        "TASKMARK_LLM_MODEL": "openai/fake-model",
        "TASKMARK_LLM_API_KEY": API_KEY,
    }
    stack = PrefectStack(tmp_path_factory.mktemp("prefect-home"), ROOT, llm_env)
    print(f"\nPrefect stack: {stack.ui_url} (logs in {stack.logs})")
    try:
        stack.start_server()
        stack.run(COMMANDS["config"])
        stack.run(COMMANDS["pool"])
        stack.run(COMMANDS["deploy_all"])
        # The worker polls every second instead of every 10 (the command line is the docs').
        stack.start(COMMANDS["worker"], log_name="worker", env={"PREFECT_WORKER_QUERY_SECONDS": "1"})
        yield stack
    finally:
        stack.close()  # the worker before the server


@pytest.fixture
def llm(_fake_llm_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The fake LLM server, answering each structured call with an example of its schema."""
    _fake_llm_server.reset()
    _fake_llm_server.default = schema_reply
    yield _fake_llm_server
    _fake_llm_server.reset()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `my-workflows/earnings-preview.md`, the docs' hand-written definition."""
    folder = tmp_path_factory.mktemp("workspace")
    (folder / "my-workflows").mkdir()
    (folder / "my-workflows" / "earnings-preview.md").write_text(doc_definition())
    return folder


@pytest.fixture
def preview_deployment(prefect_stack: PrefectStack, workspace: Path) -> Any:
    """`taskmark deploy` of the docs' definition, as the docs run it; the deployment read back.

    Run for each test that asks: `taskmark serve` takes the deployment off the pool.
    """
    prefect_stack.run(COMMANDS["taskmark_deploy"], cwd=workspace)
    with prefect_stack.client() as client:
        return client.read_deployment_by_name("earnings-preview/earnings-preview")
