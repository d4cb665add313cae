"""A parsed definition: what the compiler reads. Every part knows where it was written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskmark.definition._source import Location
from taskmark.definition._spec import (
    ContextOptions,
    CritiqueOptions,
    LLMSettings,
    Metadata,
    OutputConstraints,
    PhaseOptions,
    RefineOptions,
)

__all__ = [
    "AGGREGATE_KINDS",
    "Agent",
    "AgentStep",
    "AggregateStep",
    "CustomStep",
    "Definition",
    "NoteStep",
    "OutputField",
    "Phase",
    "RouteStep",
    "Section",
    "Step",
    "ValidationStep",
]

AGGREGATE_KINDS = ("merge", "concat", "vote", "first", "consensus")


class _Located(BaseModel):
    model_config = ConfigDict(frozen=True)

    location: Location = Field(description="Where it was written.")


class AgentStep(_Located):
    """`agent: ID - prompt`: ask an agent."""

    kind: Literal["agent"] = "agent"
    agent: str = Field(description="The agent's id.")
    prompt: str = Field(description="The prompt, a Jinja2 template.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Step-level model overrides.")


class ValidationStep(_Located):
    """`validation: EXPR`: a quality check over the phase's output."""

    kind: Literal["validation"] = "validation"
    expression: str = Field(description="A safe expression that must be true.")


class AggregateStep(_Located):
    """`aggregate: KIND [- AGENT]`: combine the agent answers into the phase's output."""

    kind: Literal["aggregate"] = "aggregate"
    method: Literal["merge", "concat", "vote", "first", "consensus"] = Field(description="How to combine.")
    agent: str | None = Field(default=None, description="The reconciling agent (consensus only).")


class RouteStep(_Located):
    """`route: EXPRESSION` or `route: by AGENT - PROMPT`: pick which agent steps (branches) run.

    The expression (or the agent's answer) names agent ids; only those steps run, and the
    phase records them as ``executed_branches``.
    """

    kind: Literal["route"] = "route"
    expression: str | None = Field(default=None, description="A safe expression giving agent ids.")
    agent: str | None = Field(default=None, description="The router agent.")
    prompt: str | None = Field(default=None, description="The router's prompt template.")


class CustomStep(_Located):
    """`KIND: argument` for a registered step kind."""

    kind: str = Field(description="The registered kind.")
    argument: str = Field(description="Everything after 'KIND:'.")


class NoteStep(_Located):
    """A plain line: a description kept for the graph and the docs."""

    kind: Literal["note"] = "note"
    text: str = Field(description="The line as written.")


Step = Annotated[
    AgentStep | ValidationStep | AggregateStep | RouteStep | NoteStep | CustomStep,
    Field(union_mode="left_to_right"),
]


class OutputField(_Located):
    """A declared output of a phase (`- name: type - description`)."""

    name: str = Field(description="Field name in the phase's output.")
    type: str = Field(description="string, number, integer, boolean, array or object.")
    description: str | None = Field(default=None, description="What the field holds.")
    constraints: OutputConstraints = Field(
        default_factory=OutputConstraints, description="Bounds from its nested bullets."
    )

    def json_schema(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON Schema of this field's value; ``inputs`` gives the bounds that name an input."""
        schema = self.constraints.json_schema(self.type, inputs)
        return {**schema, "description": self.description} if self.description else schema


class Section(_Located):
    """A `### Critique` or `### Refine` section: its options and its agent step."""

    options: CritiqueOptions | RefineOptions = Field(description="The section's option lines.")
    steps: list[AgentStep] = Field(default_factory=list, description="Its agent steps.")


class Phase(_Located):
    """A `## Phase: NAME` section: a subflow that runs the stage lifecycle."""

    name: str = Field(description="The phase's name, unique in the definition.")
    options: PhaseOptions = Field(default_factory=PhaseOptions, description="dependsOn, parallel and the rest.")
    prose: str = Field(default="", description="Paragraphs that are not options.")
    steps: list[Step] = Field(default_factory=list, description="The `### Steps` bullets, in order.")
    agents: list[str] = Field(default_factory=list, description="Agents listed under `### Agents`.")
    outputs: list[OutputField] = Field(default_factory=list, description="Declared `### Outputs`.")
    critique: Section | None = Field(default=None, description="The `### Critique` section.")
    refine: Section | None = Field(default=None, description="The `### Refine` section.")

    @property
    def depends_on(self) -> list[str]:
        """Names of the phases this one waits for."""
        return self.options.depends_on

    @property
    def parallel(self) -> bool:
        """Whether its agent steps run at the same time."""
        return self.options.parallel

    def agent_steps(self) -> list[AgentStep]:
        """Its `agent:` steps, in order."""
        return [s for s in self.steps if isinstance(s, AgentStep)]

    def route(self) -> RouteStep | None:
        """Its `route:` step, if it has one."""
        return next((s for s in self.steps if isinstance(s, RouteStep)), None)


class Agent(_Located):
    """An LLM persona: a system prompt and model settings."""

    id: str = Field(description="The agent's id (its file name without .md).")
    description: str | None = Field(default=None, description="What the agent is for.")
    system_prompt: str = Field(default="", description="The system prompt.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="The agent's model settings.")
    context: ContextOptions | None = Field(default=None, description="The agent's context options, if it sets any.")


class Definition(_Located):
    """A whole definition file, valid."""

    title: str = Field(description="The `# Title`.")
    metadata: Metadata = Field(description="The metadata block.")
    phases: list[Phase] = Field(description="Phases in file order.")
    agents: dict[str, Agent] = Field(default_factory=dict, description="Every agent the steps use, by id.")

    @property
    def name(self) -> str:
        """The slug naming the flow."""
        return self.metadata.name

    @property
    def source_dir(self) -> Path:
        """The folder of the definition file, as the user named it: `documents` and `index` are relative to it."""
        return Path(self.location.path).parent

    def index_path(self) -> Path | None:
        """The index document named in the metadata, if any (an index phase is :meth:`index_phase`)."""
        return self.source_dir / self.metadata.index if self.metadata.index is not None else None

    def index_phase(self) -> Phase | None:
        """The phase with `index: true`, if any."""
        return next((p for p in self.phases if p.options.index), None)

    def documents(self, phase: Phase) -> list[Path]:
        """The files ``phase``'s `documents` entries match now: sorted, each once.

        Example:
            >>> definition = load_definition("definitions/daily-market-analysis.md")
            >>> [p.name for p in definition.documents(definition.phase("Rapid Analysis"))][:2]
            ['crypto-market-structure.md', 'index.md']
        """
        from taskmark.definition._context import match_documents

        found: dict[Path, Path] = {}
        for entry in phase.options.documents:
            for path in match_documents(self.source_dir, entry):
                found.setdefault(path.resolve(), path)
        return sorted(found.values())

    def phase(self, name: str) -> Phase:
        """The phase called ``name``.

        Raises:
            KeyError: When there is none.
        """
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    def run_order(self) -> list[Phase]:
        """Phases in an order that respects dependsOn (file order breaks ties)."""
        from taskmark.definition._graph import topological_order

        order = topological_order({p.name: p.depends_on for p in self.phases})
        return [self.phase(name) for name in order]
