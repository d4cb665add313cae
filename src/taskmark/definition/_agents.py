"""Agents: from `agents/ID.md` beside the definition, the project's `definitions/agents/`,
or inline YAML under `### Agents`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from taskmark.definition._context import check_context_options
from taskmark.definition._model import Agent
from taskmark.definition._source import Location, Reporter, Spans, did_you_mean, read_source
from taskmark.definition._spec import AgentSettings, InlineAgent, LLMSettings
from taskmark.definition._validation import validate_spec
from taskmark.definition._yaml import load_yaml

__all__ = ["AGENT_ID", "AgentFinder", "agent_from_inline"]

AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""An agent id: a file name without path separators."""

PROJECT_AGENTS = os.path.join("definitions", "agents")


def _llm(settings: AgentSettings) -> LLMSettings:
    return LLMSettings(
        provider=settings.provider,
        model=settings.model,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
    )


def agent_from_inline(agent_id: str, value: object, spans: Spans, reporter: Reporter) -> Agent | None:
    """An agent defined inline (``ID: {...}`` in a ```yaml block under `### Agents`)."""
    settings = validate_spec(InlineAgent, value if value is not None else {}, spans, reporter, f"agent '{agent_id}'")
    if settings is None:
        return None
    check_context_options(settings.context, spans, ("context",), reporter)
    return Agent(
        id=agent_id,
        description=settings.description,
        system_prompt=settings.system_prompt.strip(),
        llm=_llm(settings),
        context=settings.context,
        location=spans.root,
    )


class AgentFinder:
    """Finds agent files for one definition, reading each file once."""

    def __init__(self, definition_path: str, reporter: Reporter) -> None:
        self.folders = [os.path.join(os.path.dirname(definition_path), "agents")]
        if os.path.abspath(self.folders[0]) != os.path.abspath(PROJECT_AGENTS):
            self.folders.append(PROJECT_AGENTS)
        self.reporter = reporter
        self._found: dict[str, Agent | None] = {}

    def available(self) -> list[str]:
        """Agent ids that have a file (for did-you-mean)."""
        ids: set[str] = set()
        for folder in self.folders:
            if os.path.isdir(folder):
                ids.update(p.stem for p in Path(folder).glob("*.md"))
        return sorted(ids)

    def find(self, agent_id: str, used_at: Location, inline: dict[str, Agent]) -> Agent | None:
        """The agent ``agent_id``, or None after reporting why it does not resolve."""
        if agent_id in inline:
            return inline[agent_id]
        if agent_id not in self._found:
            self._found[agent_id] = self._lookup(agent_id)
        if self._found[agent_id] is not None or self._path(agent_id):
            return self._found[agent_id]  # an agent file with errors has reported them
        tried = " or ".join(f"{folder}/{agent_id}.md" for folder in self.folders)
        self.reporter.error(
            used_at,
            f"unknown agent '{agent_id}': no inline agent and no file {tried}"
            + did_you_mean(agent_id, [*inline, *self.available()]),
        )
        return None

    def _path(self, agent_id: str) -> str | None:
        if AGENT_ID.fullmatch(agent_id):
            for folder in self.folders:
                path = os.path.join(folder, f"{agent_id}.md")
                if os.path.isfile(path):
                    return path
        return None

    def _lookup(self, agent_id: str) -> Agent | None:
        path = self._path(agent_id)
        return self._read(agent_id, path) if path else None

    def _read(self, agent_id: str, path: str) -> Agent | None:
        source = read_source(path, self.reporter)
        if source is None:
            return None
        body_start, settings = 0, AgentSettings()
        if source.lines[0].strip() == "---":
            end = next((i for i, line in enumerate(source.lines[1:], 1) if line.strip() == "---"), None)
            if end is None:
                self.reporter.error(source.at(0, 0), "front matter opened with '---' is never closed")
                return None
            loaded = load_yaml("\n".join(source.lines[1:end]), source, 1, self.reporter, what="agent front matter")
            if loaded is None:
                return None
            value, spans = loaded
            spans.root = source.at(0, 0)
            checked = validate_spec(
                AgentSettings, value if value is not None else {}, spans, self.reporter, "agent front matter"
            )
            if checked is None:
                return None
            check_context_options(checked.context, spans, ("context",), self.reporter)
            body_start, settings = end + 1, checked
        return Agent(
            id=agent_id,
            description=settings.description,
            system_prompt="\n".join(source.lines[body_start:]).strip(),
            llm=_llm(settings),
            context=settings.context,
            location=source.at(0),
        )
