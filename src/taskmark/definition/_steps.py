"""Bullets into steps, output fields and agent names."""

from __future__ import annotations

import re

from taskmark.definition._agents import AGENT_ID
from taskmark.definition._markdown import RawItem
from taskmark.definition._model import (
    AGGREGATE_KINDS,
    AgentStep,
    AggregateStep,
    CustomStep,
    NoteStep,
    OutputField,
    RouteStep,
    Step,
    ValidationStep,
)
from taskmark.definition._registry import BUILTIN_STEP_KINDS, known_step_kinds
from taskmark.definition._source import Reporter, Spans, did_you_mean
from taskmark.definition._spec import REQUIREMENT_TYPES, LLMSettings, OutputConstraints
from taskmark.definition._validation import validate_spec

__all__ = ["parse_agent_name", "parse_output", "parse_step"]

_KIND = re.compile(r"(?P<kind>[a-z][a-z0-9_-]*)\s*:(?:\s+|$)(?P<rest>.*)", re.DOTALL)
_AGENT = re.compile(r"(?P<agent>\S+)\s+-\s+(?P<prompt>.+)", re.DOTALL)
_ROUTE_BY = re.compile(r"by\s+(?P<agent>\S+)\s+-\s+(?P<prompt>.+)", re.DOTALL)
_AGGREGATE = re.compile(r"(?P<method>\w+)(?:\s+-\s+(?P<agent>\S+))?")
_OUTPUT = re.compile(r"(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>\w+)(?:\s+-\s+(?P<description>.+))?", re.DOTALL)


def parse_step(item: RawItem, reporter: Reporter) -> Step | None:
    """A `### Steps` bullet as a step, or None after reporting why it is not one."""
    match = _KIND.fullmatch(item.text)
    if not match:
        return NoteStep(text=item.text, location=item.location)
    kind, rest = match.group("kind"), match.group("rest").strip()
    where = item.location
    if kind == "agent":
        agent = _AGENT.fullmatch(rest)
        if not agent:
            reporter.error(where, f"expected 'agent: AGENT_ID - prompt'; found '{item.text[:60]}'")
            return None
        return AgentStep(
            agent=agent.group("agent"),
            prompt=agent.group("prompt").strip(),
            llm=_step_llm(item, reporter) or LLMSettings(),
            location=where,
        )
    if item.children:
        reporter.error(item.children[0].location, f"only agent steps take settings; '{kind}:' does not")
    if kind == "validation":
        if not rest:
            reporter.error(where, "expected 'validation: EXPRESSION'; the expression is empty")
            return None
        return ValidationStep(expression=rest, location=where)
    if kind == "aggregate":
        return _aggregate(rest, item, reporter)
    if kind == "route":
        return _route(rest, item, reporter)
    custom = known_step_kinds()
    if kind in custom:
        return CustomStep(kind=kind, argument=rest, location=where)
    kinds = [*BUILTIN_STEP_KINDS, *sorted(custom)]
    reporter.error(
        where,
        f"unknown step kind '{kind}'; expected {', '.join(kinds)} or a registered kind"
        + did_you_mean(kind, kinds)
        + " (a plain note must not start with a lowercase 'word:')",
    )
    return None


def _aggregate(rest: str, item: RawItem, reporter: Reporter) -> AggregateStep | None:
    match = _AGGREGATE.fullmatch(rest)
    method = match.group("method") if match else rest
    if not match or method not in AGGREGATE_KINDS:
        reporter.error(
            item.location,
            f"unknown aggregate '{rest}'; expected one of {', '.join(AGGREGATE_KINDS)}"
            + did_you_mean(method, AGGREGATE_KINDS),
        )
        return None
    agent = match.group("agent")
    if method == "consensus" and not agent:
        reporter.error(
            item.location,
            "expected 'aggregate: consensus - AGENT_ID': consensus needs an agent to reconcile the answers",
        )
        return None
    if method != "consensus" and agent:
        reporter.error(item.location, f"'aggregate: {method}' takes no agent; only consensus does")
        return None
    return AggregateStep(method=method, agent=agent, location=item.location)


def _route(rest: str, item: RawItem, reporter: Reporter) -> RouteStep | None:
    by = _ROUTE_BY.fullmatch(rest)
    if by:
        return RouteStep(agent=by.group("agent"), prompt=by.group("prompt").strip(), location=item.location)
    if not rest or rest.split(maxsplit=1)[0] == "by":
        reporter.error(item.location, "expected 'route: EXPRESSION' or 'route: by AGENT_ID - prompt'")
        return None
    return RouteStep(expression=rest, location=item.location)


def _step_llm(item: RawItem, reporter: Reporter) -> LLMSettings | None:
    """Model settings from bullets nested under an agent step (`- temperature: 0.7`)."""
    if not item.children:
        return None
    values, spans = _nested_settings(item, reporter)
    return validate_spec(LLMSettings, values, spans, reporter, "step settings")


def _nested_settings(item: RawItem, reporter: Reporter) -> tuple[dict[str, object], Spans]:
    """`key: value` bullets nested under ``item``, with where each was written."""
    import yaml

    spans = Spans(root=item.children[0].location)
    values: dict[str, object] = {}
    for child in item.children:
        key, sep, raw = child.text.partition(":")
        key = key.strip()
        if not sep or not key:
            reporter.error(child.location, f"expected a setting 'key: value'; found '{child.text[:60]}'")
            continue
        try:
            values[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            values[key] = raw.strip()
        spans.keys[(key,)] = child.location
        spans.values[(key,)] = child.location
    return values, spans


def parse_output(item: RawItem, reporter: Reporter) -> OutputField | None:
    """An `### Outputs` bullet: `name: type` or `name: type - description`, with bounds nested under it."""
    match = _OUTPUT.fullmatch(item.text)
    if not match:
        reporter.error(item.location, f"expected 'NAME: TYPE' or 'NAME: TYPE - description'; found '{item.text[:60]}'")
        return None
    kind = match.group("type")
    if kind not in REQUIREMENT_TYPES:
        reporter.error(
            item.location,
            f"unknown output type '{kind}'; expected one of {', '.join(REQUIREMENT_TYPES)}"
            + did_you_mean(kind, REQUIREMENT_TYPES),
        )
        return None
    constraints = OutputConstraints()
    if item.children:
        values, spans = _nested_settings(item, reporter)
        checked = validate_spec(OutputConstraints, values, spans, reporter, f"bounds of output '{match.group('name')}'")
        if checked is None:
            return None
        problems = checked.problems(kind)
        for key, problem in problems:
            reporter.error(spans.key((key,)), f"output '{match.group('name')}': {problem}")
        if problems:
            return None
        constraints = checked
    return OutputField(
        name=match.group("name"),
        type=kind,
        description=match.group("description"),
        constraints=constraints,
        location=item.location,
    )


def parse_agent_name(item: RawItem, reporter: Reporter) -> str | None:
    """An `### Agents` bullet: an agent id."""
    name = item.text.strip().strip("`")
    if not AGENT_ID.fullmatch(name):
        reporter.error(
            item.location, f"expected an agent id (letters, digits, '-', '_', '.'); found '{item.text[:60]}'"
        )
        return None
    return name
