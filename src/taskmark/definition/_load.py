"""Reading and validating a definition: every error of a file, sorted by line."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from pydantic.alias_generators import to_snake

from taskmark.definition._agents import AgentFinder, agent_from_inline
from taskmark.definition._context import (
    LINK_KEYS,
    Siblings,
    check_context_options,
    check_documents,
    check_file,
    check_index,
    check_target,
    implicit_index_dependencies,
)
from taskmark.definition._cron import never_fires
from taskmark.definition._graph import find_cycles
from taskmark.definition._markdown import RawBlock, RawPhase, RawSection, parse_markdown
from taskmark.definition._model import (
    Agent,
    AgentStep,
    AggregateStep,
    Definition,
    OutputField,
    Phase,
    RouteStep,
    Section,
    Step,
)
from taskmark.definition._reads import ReadChecker
from taskmark.definition._source import Location, Reporter, Source, Spans, did_you_mean, read_source
from taskmark.definition._spec import CritiqueOptions, Metadata, PhaseOptions, RefineOptions, Spec
from taskmark.definition._steps import parse_agent_name, parse_output, parse_step
from taskmark.definition._validation import validate_spec
from taskmark.definition._yaml import load_yaml
from taskmark.errors import DefinitionError, Diagnostic

__all__ = ["Report", "load_definition", "validate_file"]

_OPTION_KEYS = frozenset(f.alias or n for n, f in PhaseOptions.model_fields.items())


@dataclass
class Report:
    """The outcome of validating one file."""

    path: str
    definition: Definition | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file has no errors (warnings allowed)."""
        return self.definition is not None


def load_definition(path: str | Path) -> Definition:
    """Read and validate a definition file.

    Args:
        path: The markdown file; agent files are looked up beside it.

    Returns:
        The definition.

    Raises:
        DefinitionError: With every error of the file, each located.

    Example:
        >>> definition = load_definition("definitions/daily-market-analysis.md")
        >>> [p.name for p in definition.run_order()][0]
        'Question Classification'
    """
    report = validate_file(path)
    if report.definition is None:
        raise DefinitionError(report.diagnostics)
    return report.definition


def validate_file(path: str | Path) -> Report:
    """Validate a definition file and collect all its diagnostics, errors and warnings.

    Never raises for bad input: whatever the file holds ends up as located diagnostics.
    """
    reporter = Reporter()
    source = read_source(path, reporter)
    # Parsing allocates many small objects and frees none until the end; the cyclic collector
    # would walk them again and again (a third of the time on large files).
    collecting = gc.isenabled()
    gc.disable()
    try:
        definition = _Loader(source, reporter).load() if source is not None else None
    finally:
        if collecting:
            gc.enable()
    diagnostics = sorted(
        set(reporter.diagnostics), key=lambda d: (d.path != str(path), d.path, d.line, d.column or 0, d.msg)
    )
    return Report(path=str(path), definition=None if reporter.has_errors else definition, diagnostics=diagnostics)


class _Loader:
    """One validation of one file."""

    def __init__(self, source: Source, reporter: Reporter) -> None:
        self.source = source
        self.reporter = reporter
        self.option_spans: dict[str, Spans] = {}
        self.metadata_spans: Spans | None = None
        self.inputs: list[str] | None = None
        """The input names as written (an input whose settings are wrong is one still); None when
        the metadata cannot be read, and with it what the templates may read."""
        self.unread: dict[str, frozenset[str]] = {}
        """The option keys of each phase that could not be read (they keep their defaults)."""

    def _yaml(self, block: RawBlock, what: str) -> tuple[object, Spans] | None:
        """The YAML value of ``block`` (an empty one as an empty mapping) and where its parts are."""
        loaded = load_yaml(block.text, self.source, block.line0, self.reporter, indent=block.indent, what=what)
        if loaded is None:
            return None
        value, spans = loaded
        spans.root = block.location
        return (value if value is not None else {}), spans

    def load(self) -> Definition | None:
        if not self.source.text.strip():
            self.reporter.error(
                self.source.at(0),
                "the file is empty; expected a '# Title', a ```yaml metadata block and '## Phase: NAME' sections",
            )
            return None
        raw = parse_markdown(self.source, self.reporter)
        metadata: Metadata | None = None
        if raw.metadata is None:
            self.reporter.error(
                raw.title_location, "missing metadata: expected a ```yaml block after the title, with at least 'name:'"
            )
        else:
            metadata = self._metadata(raw.metadata)
        if not raw.phases:
            self.reporter.error(raw.title_location, "a definition needs at least one '## Phase: NAME' section")
        phases: list[Phase] = []
        first_at: dict[str, Location] = {}
        inline: dict[str, Agent] = {}
        for raw_phase in raw.phases:
            if raw_phase.name in first_at:
                self.reporter.error(
                    raw_phase.location,
                    f"phase '{raw_phase.name}' already defined at line {first_at[raw_phase.name].line}",
                )
                continue
            first_at[raw_phase.name] = raw_phase.location
            phases.append(self._phase(raw_phase, inline))
        self._check_graph(phases)
        self._check_context(phases, metadata)
        phases = self._with_index_dependencies(phases)
        agents = self._resolve_agents(phases, inline)
        reads = ReadChecker(self.source, self.reporter, phases, self._unsure_dependencies(phases))
        for phase in phases:
            inputs = None if "approval" in self.unread.get(phase.name, ()) else self.inputs
            reads.check(phase, inputs, self._approval_prompt_at(phase))
            if metadata is not None:
                self._check_output_bounds(phase, metadata)
        if metadata is None or self.reporter.has_errors or raw.title is None:
            return None
        return Definition(
            title=raw.title,
            metadata=metadata,
            phases=phases,
            agents=agents,
            location=raw.title_location,
        )

    def _metadata(self, block: RawBlock) -> Metadata | None:
        """The metadata; with errors, what of it is right (see :func:`validate_spec`), or None."""
        loaded = self._yaml(block, "metadata")
        if loaded is None:
            return None
        value, self.metadata_spans = loaded
        self.inputs = _input_names(value)
        metadata = validate_spec(Metadata, value, self.metadata_spans, self.reporter, "metadata")
        if metadata is not None:
            self._check_schedule(metadata, self.metadata_spans)
            check_context_options(metadata.context, self.metadata_spans, ("context",), self.reporter)
        return metadata

    # -- one phase -------------------------------------------------------------------------

    def _options(self, raw: RawPhase) -> PhaseOptions:
        """The options of a phase. Those that cannot be read keep their defaults and are noted in
        :attr:`unread`: the phase still takes part in every other check, which then leaves alone
        what depends on them (a phase whose `dependsOn` is unread may read any phase)."""
        what = f"phase '{raw.name}' options"
        if len(raw.options) > 1:
            self.reporter.error(
                raw.options[1].location,
                f"{what} are given twice (first at line {raw.options[0].location.line}); put them in one block",
            )
        loaded = self._yaml(raw.options[0], what) if len(raw.options) == 1 else None
        options = validate_spec(PhaseOptions, *loaded, self.reporter, what) if loaded is not None else None
        if loaded is None or options is None:
            if raw.options:
                self.unread[raw.name] = _OPTION_KEYS
            return PhaseOptions()
        spans = self.option_spans[raw.name] = loaded[1]
        read = {key for name in options.model_fields_set for key in (name, PhaseOptions.model_fields[name].alias)}
        self.unread[raw.name] = frozenset(str(path[0]) for path in spans.keys if len(path) == 1) - read
        check_context_options(options.context, spans, ("context",), self.reporter)
        return options

    def _phase(self, raw: RawPhase, inline: dict[str, Agent]) -> Phase:
        options = self._options(raw)
        sections = raw.sections
        steps = [s for s in (parse_step(i, self.reporter) for i in _items(sections, "Steps")) if s is not None]
        listed = [a for a in (parse_agent_name(i, self.reporter) for i in _items(sections, "Agents")) if a]
        if "Agents" in sections:
            self._inline_agents(sections["Agents"], inline)
        outputs = self._outputs(_items(sections, "Outputs"))
        if not steps:
            self.reporter.warning(raw.location, f"phase '{raw.name}' has no steps")
        return Phase(
            name=raw.name,
            location=raw.location,
            options=options,
            prose="\n\n".join(raw.prose),
            steps=steps,
            agents=listed,
            outputs=outputs,
            critique=self._section(sections.get("Critique"), CritiqueOptions),
            refine=self._section(sections.get("Refine"), RefineOptions),
        )

    def _inline_agents(self, section: RawSection, inline: dict[str, Agent]) -> None:
        for block in section.options:
            loaded = load_yaml(
                block.text, self.source, block.line0, self.reporter, indent=block.indent, what="inline agents"
            )
            if loaded is None:
                continue
            value, spans = loaded
            if not isinstance(value, dict):
                self.reporter.error(block.location, "inline agents: expected a mapping of agent ids to settings")
                continue
            for agent_id, settings in value.items():
                where = spans.key((agent_id,))
                if str(agent_id) in inline:
                    self.reporter.error(
                        where, f"agent '{agent_id}' already defined at line {inline[str(agent_id)].location.line}"
                    )
                    continue
                agent = agent_from_inline(str(agent_id), settings, spans.sub((agent_id,)), self.reporter)
                if agent is not None:
                    inline[str(agent_id)] = agent.model_copy(update={"location": where})

    def _outputs(self, items: list) -> list[OutputField]:  # type: ignore[type-arg]
        outputs: dict[str, OutputField] = {}
        for item in items:
            output = parse_output(item, self.reporter)
            if output is None:
                continue
            if output.name in outputs:
                self.reporter.error(
                    output.location,
                    f"output '{output.name}' already declared at line {outputs[output.name].location.line}",
                )
                continue
            outputs[output.name] = output
        return list(outputs.values())

    def _section(self, raw: RawSection | None, model: type[CritiqueOptions] | type[RefineOptions]) -> Section | None:
        if raw is None:
            return None
        options: Spec = model()
        loaded = self._yaml(raw.options[0], f"{raw.name} options") if raw.options else None
        if loaded is not None:
            options = validate_spec(model, *loaded, self.reporter, f"{raw.name} options") or options
        steps: list[AgentStep] = []
        for item in raw.items:
            step = parse_step(item, self.reporter)
            if isinstance(step, AgentStep):
                steps.append(step)
            elif step is not None and step.kind != "note":
                self.reporter.error(
                    step.location,
                    f"a ### {raw.name} section takes agent steps ('agent: ID - prompt'); found a {step.kind} step",
                )
        if not steps:
            self.reporter.error(raw.location, f"### {raw.name} needs an agent step: '- agent: AGENT_ID - prompt'")
        return Section(options=options, steps=steps, location=raw.location)

    # -- whole-definition checks ------------------------------------------------------------

    def _check_graph(self, phases: list[Phase]) -> None:
        names = [p.name for p in phases]
        for phase in phases:
            for i, dep in enumerate(phase.depends_on):
                if dep == phase.name:
                    self.reporter.error(
                        self._option_at(phase, "dependsOn", i), f"phase '{phase.name}' depends on itself"
                    )
                elif dep not in names:
                    self.reporter.error(
                        self._option_at(phase, "dependsOn", i),
                        f"phase '{phase.name}' depends on unknown phase '{dep}'" + did_you_mean(dep, names),
                    )
        edges = {p.name: [d for d in p.depends_on if d != p.name] for p in phases}
        by_name = {p.name: p for p in phases}
        for cycle in find_cycles(edges):
            self.reporter.error(
                self._option_at(by_name[cycle[0]], "dependsOn"),
                "dependency cycle: " + " → ".join(cycle) + " (each phase depends on the next)",
            )

    def _option_at(self, phase: Phase, key: str, index: int | None = None) -> Location:
        """Where the value of option ``key`` (its item ``index``, the value itself when it is no
        list) of ``phase`` is written."""
        spans = self.option_spans.get(phase.name)
        if spans is None:
            return phase.location
        return spans.value((key,) if index is None else (key, index))

    def _unsure_dependencies(self, phases: list[Phase]) -> set[str]:
        """The phases whose `dependsOn` is unread or names no phase: the error is reported once,
        and what such a phase (or one after it) reads from other phases is not held against it."""
        names = {p.name for p in phases}
        return {
            p.name for p in phases if "dependsOn" in self.unread.get(p.name, ()) or not names.issuperset(p.depends_on)
        }

    def _check_context(self, phases: list[Phase], metadata: Metadata | None) -> None:
        """`refers`/`duplicates`/`relatesTo` targets, `documents`, the index. Cycles through
        `refers` are allowed: a phase reads the latest completed outputs and never waits."""
        base = Path(self.source.path).parent
        names = [p.name for p in phases]
        siblings = Siblings(self.source.path)
        own_name = metadata.name if metadata is not None else None
        index_at = self.metadata_spans.value(("index",)) if self.metadata_spans is not None else None
        if metadata is not None and metadata.index is not None and index_at is not None:
            problem = check_file(base, metadata.index, "index")
            if problem is not None:
                self.reporter.error(index_at, problem)
        for phase in phases:
            for key, verb in LINK_KEYS:
                for i, target in enumerate(getattr(phase.options, to_snake(key))):
                    problem = check_target(target, phase.name, verb, names, own_name, siblings)
                    if problem is not None:
                        self.reporter.error(self._option_at(phase, key, i), problem)
            for i, entry in enumerate(phase.options.documents):
                problem = check_documents(base, entry)
                if problem is not None:
                    self.reporter.error(self._option_at(phase, "documents", i), problem)
        index_phases = [(p.name, p.location, self._option_at(p, "index")) for p in phases if p.options.index]
        for where, problem in check_index(metadata, index_at, index_phases):
            self.reporter.error(where, problem)

    def _with_index_dependencies(self, phases: list[Phase]) -> list[Phase]:
        """The phases, each phase not upstream of the index phase made to wait for it."""
        changed = implicit_index_dependencies({p.name: p.options for p in phases})
        return [
            p.model_copy(update={"options": p.options.model_copy(update={"depends_on": changed[p.name]})})
            if p.name in changed
            else p
            for p in phases
        ]

    def _resolve_agents(self, phases: list[Phase], inline: dict[str, Agent]) -> dict[str, Agent]:
        finder = AgentFinder(self.source.path, self.reporter)
        agents: dict[str, Agent] = {}
        for phase in phases:
            used: list[tuple[str, Location]] = [(s.agent, s.location) for s in _all_agent_steps(phase)]
            used += [
                (s.agent, s.location) for s in phase.steps if isinstance(s, (AggregateStep, RouteStep)) and s.agent
            ]
            for agent_id, where in used:
                agent = finder.find(agent_id, where, inline)
                if agent is not None:
                    agents[agent_id] = agent
            used_ids = {a for a, _ in used}
            for agent_id in phase.agents:
                if agent_id not in used_ids and finder.find(agent_id, phase.location, inline) is not None:
                    self.reporter.warning(
                        phase.location, f"agent '{agent_id}' is listed in phase '{phase.name}' but no step uses it"
                    )
        return agents

    def _check_schedule(self, metadata: Metadata, spans: Spans) -> None:
        schedule = metadata.schedule
        if schedule is None:
            return
        idle = never_fires(schedule.cron) if schedule.cron is not None else None
        if idle is not None:
            self.reporter.warning(spans.value(("schedule", "cron")), f"schedule.cron: {idle}")
        for problem in metadata.inputs.problems(schedule.parameters, within="schedule.parameters."):
            if problem.kind == "invalid":
                self.reporter.error(spans.value(("schedule", "parameters", problem.name)), problem.message)
            elif problem.kind == "missing":
                self.reporter.error(spans.key(("schedule",)), f"schedule.parameters: {problem.message}")
            elif problem.name not in (self.inputs or ()):  # else its requirement is in error already
                self.reporter.error(
                    spans.key(("schedule", "parameters", problem.name)), f"schedule.parameters: {problem.message}"
                )

    def _approval_prompt_at(self, phase: Phase) -> Location | None:
        """Where the text of ``phase``'s approval prompt starts, if it has one."""
        spans = self.option_spans.get(phase.name)
        if phase.options.approval is None or spans is None:
            return None
        return spans.value(("approval", "prompt"))

    def _check_output_bounds(self, phase: Phase, metadata: Metadata) -> None:
        numeric = [n for n, r in metadata.requirements.items() if r.type in ("number", "integer")]
        unchecked = set(self.inputs or ()) - set(metadata.requirements)  # inputs whose settings are wrong
        for output in phase.outputs:
            for name in output.constraints.input_bounds():
                if name not in numeric and name not in unchecked:
                    self.reporter.error(
                        output.location,
                        f"output '{output.name}': bound '{name}' is not a number or a numeric input"
                        + (f"; numeric inputs: {', '.join(numeric)}" if numeric else "")
                        + did_you_mean(name, numeric),
                    )


def _input_names(metadata: object) -> list[str] | None:
    """The input names written in the metadata, or None when they cannot be told."""
    if not isinstance(metadata, dict):
        return None
    requirements = metadata.get("requirements")
    if requirements is None:
        return []
    return [str(name) for name in requirements] if isinstance(requirements, dict) else None


def _items(sections: dict[str, RawSection], name: str) -> list:  # type: ignore[type-arg]
    return sections[name].items if name in sections else []


def _all_agent_steps(phase: Phase) -> list[AgentStep]:
    steps: list[Step] = list(phase.steps)
    for section in (phase.critique, phase.refine):
        if section is not None:
            steps.extend(section.steps)
    return [s for s in steps if isinstance(s, AgentStep)]
