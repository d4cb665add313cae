"""A document that became a link outside the definition's folder after validation is refused
by the run: the phase fails saying so, and the file's text reaches neither the LLM server
nor Prefect (artifacts, states)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect.client.orchestration import get_client

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import ProviderOverrides
from taskmark.definition import load_definition
from taskmark.runs._run import arun

SECRET = "root:x:0:0:the canary of test_document_roots_run"

READER = """# Reader

```yaml
name: document-roots-reader
```

## Phase: Read
documents: docs/*.md

### Steps
- agent: a - summarise the notes
"""


async def test_a_document_swapped_for_a_link_outside_after_validation_is_refused_at_run_time(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    llm.default = lambda _request: Reply(content="a summary")
    path = write("reader", READER)
    (path.parent / "docs").mkdir()
    note = path.parent / "docs" / "note.md"
    note.write_text("An honest note.\n")
    secret = tmp_path.parent / f"{tmp_path.name}-private.md"
    secret.write_text(SECRET)
    definition = load_definition(path)  # valid: the note is a plain file inside the folder

    note.unlink()
    note.symlink_to(secret)
    result = await arun(definition, overrides=overrides)

    assert result.state == "FAILED"
    assert result.phases["Read"].error == (
        "phase 'Read' failed in ingestion: refused to read document 'docs/note.md': it resolves to "
        f"{secret.resolve().as_posix()}, outside the definition's folder ({path.parent.resolve().as_posix()}); "
        "to allow another folder, name it in TASKMARK_DOCUMENT_ROOTS"
    )
    assert llm.requests == []
    async with get_client() as client:
        artifacts = await client.read_artifacts()
        flow_run = await client.read_flow_run(result.flow_run_id)  # type: ignore[arg-type]
    assert not any(SECRET in str(a.data) for a in artifacts)
    assert SECRET not in flow_run.model_dump_json()
