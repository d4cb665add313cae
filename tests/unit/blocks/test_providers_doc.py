"""Every Python snippet in docs/providers.md runs (with saving recorded, not sent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskmark.blocks import LLMProvider

DOC = Path(__file__).parents[3] / "docs" / "providers.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_page_has_snippets_for_every_provider() -> None:
    text = DOC.read_text()
    for heading in (
        "OpenAI",
        "Anthropic",
        "Gemini",
        "DeepSeek",
        "Moonshot (Kimi)",
        "Zhipu (GLM)",
        "vLLM",
        "llama.cpp",
        "Ollama",
        "local default",
    ):
        assert heading in text, heading
    assert len(SNIPPETS) >= 9


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet-{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs(snippet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[tuple[str, LLMProvider]] = []

    def save(self: LLMProvider, name: str, overwrite: bool = False) -> None:
        saved.append((name, self))

    monkeypatch.setattr(LLMProvider, "save", save)
    exec(compile(snippet, str(DOC), "exec"), {})
    assert saved, "a snippet should configure at least one block"
    for _name, block in saved:
        assert block.model
