"""Definitions: markdown workflow files into validated models, with located errors.

Text in, pydantic models out. This package imports neither Prefect nor litellm, so editors,
linters and ``taskmark validate`` stay fast.
"""

from __future__ import annotations

from taskmark.definition._expressions import FUNCTIONS, check_expression, evaluate
from taskmark.definition._graph import render_graph
from taskmark.definition._inputs import InputProblem, Inputs
from taskmark.definition._load import Report, load_definition, validate_file
from taskmark.definition._model import (
    AGGREGATE_KINDS,
    Agent,
    AgentStep,
    AggregateStep,
    CustomStep,
    Definition,
    NoteStep,
    OutputField,
    Phase,
    RouteStep,
    Section,
    Step,
    ValidationStep,
)
from taskmark.definition._registry import known_step_kinds, register_step_kind
from taskmark.definition._source import KeyPath, Location, Spans, did_you_mean
from taskmark.definition._spec import (
    REQUIREMENT_TYPES,
    STAGES,
    AgentSettings,
    Approval,
    CachePolicy,
    ContextOptions,
    CritiqueOptions,
    InlineAgent,
    LLMSettings,
    Metadata,
    PhaseOptions,
    RefineOptions,
    Requirement,
    Retrieval,
    RetrievalMethod,
    RetryPolicy,
    Schedule,
    matches_type,
    merge_context,
)
from taskmark.definition._templates import render_template
from taskmark.definition._values import typed_value

__all__ = [
    "AGGREGATE_KINDS",
    "FUNCTIONS",
    "REQUIREMENT_TYPES",
    "STAGES",
    "Agent",
    "AgentSettings",
    "AgentStep",
    "AggregateStep",
    "Approval",
    "CachePolicy",
    "ContextOptions",
    "CritiqueOptions",
    "CustomStep",
    "Definition",
    "InlineAgent",
    "InputProblem",
    "Inputs",
    "LLMSettings",
    "KeyPath",
    "Location",
    "Spans",
    "Metadata",
    "NoteStep",
    "OutputField",
    "Phase",
    "PhaseOptions",
    "RefineOptions",
    "Report",
    "Requirement",
    "Retrieval",
    "RetrievalMethod",
    "RetryPolicy",
    "RouteStep",
    "Schedule",
    "Section",
    "Step",
    "ValidationStep",
    "check_expression",
    "did_you_mean",
    "evaluate",
    "known_step_kinds",
    "load_definition",
    "matches_type",
    "merge_context",
    "register_step_kind",
    "render_graph",
    "render_template",
    "typed_value",
    "validate_file",
]
