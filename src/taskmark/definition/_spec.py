"""The YAML a person writes: metadata, phase options, agent settings.

These models are the JSON Schema that ``taskmark schema`` prints. Keys are camelCase as
written in definitions; attributes are snake_case. Unknown keys are errors.
"""

from __future__ import annotations

import keyword
import re
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from taskmark.definition._cron import check_cron
from taskmark.definition._durations import ACCEPTED_FORMS, parse_duration
from taskmark.definition._inputs import Inputs
from taskmark.definition._source import Location, did_you_mean
from taskmark.definition._values import value_problem

__all__ = [
    "REQUIREMENT_TYPES",
    "STAGES",
    "AgentSettings",
    "Approval",
    "CachePolicy",
    "ContextOptions",
    "CritiqueOptions",
    "Duration",
    "InlineAgent",
    "LLMSettings",
    "Metadata",
    "OutputConstraints",
    "PhaseOptions",
    "RefineOptions",
    "Requirement",
    "Retrieval",
    "RetrievalMethod",
    "RetryPolicy",
    "Schedule",
    "Spec",
    "matches_type",
    "merge_context",
]

STAGES = (
    "ingestion",
    "preProcessing",
    "promptTemplating",
    "inference",
    "parsing",
    "validateStructure",
    "validateQuality",
    "critique",
    "refine",
    "finalValidation",
    "integration",
)
"""The phase lifecycle, in order (DESIGN.md)."""

REQUIREMENT_TYPES = ("string", "number", "integer", "boolean", "array", "object")

RESERVED_NAMES = frozenset({"inputs", "phases", "steps", "output", "errors", "critique", "approval"})
"""Names templates and expressions already use; a requirement may not take them."""


class Spec(BaseModel):
    """Base of the models people write in YAML: camelCase keys, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
    _location: Location | None = PrivateAttr(default=None)

    @property
    def location(self) -> Location | None:
        """Where this was written, when it came from a file."""
        return self._location


def _coerce_str(value: object) -> object:
    # YAML reads `version: 1.0` as a float and a phase named 2024 as an int; both are names.
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _check_slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", value):
        raise ValueError(
            f"expected a slug (lowercase letters, digits and single dashes, "
            f"such as 'daily-market-analysis'); found {value!r}"
        )
    return value


Slug = Annotated[str, BeforeValidator(_coerce_str), AfterValidator(_check_slug)]
Name = Annotated[str, BeforeValidator(_coerce_str)]

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "description": f"A time such as {ACCEPTED_FORMS}."}),
]
"""A time string, held as seconds."""


class RetryPolicy(Spec):
    """Exponential backoff for transient failures."""

    max_attempts: int = Field(default=3, ge=1, description="Attempts in all, the first included.")
    backoff_ms: int = Field(default=1000, ge=0, description="Delay before the first retry; doubles each time.")


class LLMSettings(Spec):
    """Model settings; each level (step, phase, definition, agent) overrides the next."""

    provider: str | None = Field(default=None, description="Name of a saved LLMProvider block.")
    model: str | None = Field(default=None, description="A litellm model string, such as 'gpt-4o-mini'.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens in an answer.")


class CachePolicy(Spec):
    """Answer identical LLM requests from cache for a while."""

    ttl: Duration = Field(description="How long a cached answer stays valid.")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def matches_type(value: object, type_name: str) -> bool:
    """Whether a plain value is of a requirement or output type (booleans are not numbers)."""
    if isinstance(value, bool) and type_name != "boolean":
        return False
    return isinstance(value, _JSON_TYPES[type_name])


_APPLIES: dict[str, frozenset[str]] = {
    "string": frozenset({"enum", "min_length", "max_length"}),
    "number": frozenset({"enum", "minimum", "maximum"}),
    "integer": frozenset({"enum", "minimum", "maximum"}),
    "boolean": frozenset(),
    "array": frozenset({"min_items", "max_items", "items"}),
    "object": frozenset({"keys", "values"}),
}
_BOUNDS = (("min_length", "max_length"), ("min_items", "max_items"), ("minimum", "maximum"))
_BOUND_NAMES = frozenset(set().union(*_APPLIES.values()))


class OutputConstraints(Spec):
    """Bounds on an output's value, written as bullets nested under it.

    They become part of the JSON Schema the model is asked to follow (servers such as
    llama.cpp enforce it with a grammar) and are checked in the validateStructure stage.
    """

    enum: list[Any] | None = Field(default=None, min_length=1, description="The allowed values.")
    min_length: int | None = Field(default=None, ge=0, description="Fewest characters in a string.")
    max_length: int | None = Field(default=None, ge=1, description="Most characters in a string.")
    min_items: int | None = Field(default=None, ge=0, description="Fewest items in an array.")
    max_items: int | None = Field(default=None, ge=1, description="Most items in an array.")
    minimum: int | float | str | None = Field(
        default=None, description="Smallest number allowed, or the name of a numeric input."
    )
    maximum: int | float | str | None = Field(
        default=None, description="Largest number allowed, or the name of a numeric input."
    )
    items: ValueShape | None = Field(default=None, description="The type (and bounds) of each item of an array.")
    keys: list[str] | None = Field(
        default=None, min_length=1, description="The keys an object must have, and no others."
    )
    values: ValueShape | None = Field(default=None, description="The type (and bounds) of each value of an object.")

    def problems(self, type_name: str) -> list[tuple[str, str]]:
        """Why these constraints do not fit a value of ``type_name``: (camelCase key, message) pairs."""
        takes = ", ".join(to_camel(k) for k in sorted(_APPLIES[type_name])) or "no bounds"
        found = [
            (to_camel(name), f"'{to_camel(name)}' does not apply to {type_name}; {type_name} takes {takes}")
            for name in sorted((self.model_fields_set & _BOUND_NAMES) - _APPLIES[type_name])
        ]
        for low, high in _BOUNDS:
            lo, hi = getattr(self, low), getattr(self, high)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
                found.append((to_camel(low), f"{to_camel(low)} {lo} is more than {to_camel(high)} {hi}"))
        found += [
            ("enum", f"enum value {v!r} is not of type {type_name}")
            for v in self.enum or []
            if not matches_type(v, type_name)
        ]
        return found

    def input_bounds(self) -> list[str]:
        """The input names used as bounds, here and in nested item or value types."""
        names = [b for b in (self.minimum, self.maximum) if isinstance(b, str)]
        return names + [n for nested in (self.items, self.values) if nested is not None for n in nested.input_bounds()]

    def json_schema(self, type_name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON Schema of a value of ``type_name`` with these bounds; ``inputs`` gives input-named bounds."""
        schema: dict[str, Any] = {"type": type_name}
        for name in ("enum", "min_length", "max_length", "min_items", "max_items", "minimum", "maximum"):
            bound = getattr(self, name)
            if bound is not None:
                value = inputs[bound] if isinstance(bound, str) else bound
                # 5.0 from a number input bounds an integer as 5 (llama.cpp's grammar needs an int).
                schema[to_camel(name)] = (
                    int(value) if type_name == "integer" and isinstance(value, float) and value.is_integer() else value
                )
        if self.items is not None:
            schema["items"] = self.items.json_schema(self.items.type, inputs)
        values = self.values.json_schema(self.values.type, inputs) if self.values is not None else None
        if self.keys is not None:
            schema["properties"] = {key: values or {} for key in self.keys}
            schema["required"] = list(self.keys)
            schema["additionalProperties"] = False
        elif values is not None:
            schema["additionalProperties"] = values
        return schema


class ValueShape(OutputConstraints):
    """The type of an array's items or an object's values, with its own bounds (`items: string`)."""

    type: str = Field(description=f"One of {', '.join(REQUIREMENT_TYPES)}.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"type": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fits(self) -> ValueShape:
        if self.type not in REQUIREMENT_TYPES:
            raise ValueError(
                f"unknown type '{self.type}'; expected one of {', '.join(REQUIREMENT_TYPES)}"
                + did_you_mean(self.type, REQUIREMENT_TYPES)
            )
        problems = self.problems(self.type)
        if problems:
            raise ValueError(problems[0][1])
        return self


OutputConstraints.model_rebuild()


def _check_number(value: object) -> object:
    # One message, where a union of int and float would give one per member.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number; found {value!r}")
    return value


_Number = Annotated[int | float, BeforeValidator(_check_number)]

_PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "number": float,
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
}


class Requirement(OutputConstraints):
    """An input of the workflow: a typed flow parameter (a field of the UI's run form).

    It takes the bounds outputs take (``minLength``, ``minimum``, ``items``, ``maxItems``, ...);
    they reach the parameter's JSON Schema (the UI's form checks them) and every run checks them.
    """

    type: str = Field(description=f"One of {', '.join(REQUIREMENT_TYPES)}.")
    default: Any = Field(default=None, description="The value when none is given; without one the input is required.")
    description: str | None = Field(default=None, description="Shown beside the field in the UI.")
    minimum: _Number | None = Field(default=None, description="Smallest number allowed.")
    maximum: _Number | None = Field(default=None, description="Largest number allowed.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        # `question: string` is short for `question: {type: string}`.
        return {"type": value} if isinstance(value, str) else value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in REQUIREMENT_TYPES:
            raise ValueError(
                f"unknown type '{value}'; expected one of {', '.join(REQUIREMENT_TYPES)}"
                + did_you_mean(value, REQUIREMENT_TYPES)
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Requirement:
        problems = self.problems(self.type)
        if problems:
            raise ValueError(problems[0][1])
        named = self.input_bounds()
        if named:
            raise ValueError(f"bound '{named[0]}' of an item: the bounds of an input are numbers, not other inputs")
        if "default" in self.model_fields_set:
            if not matches_type(self.default, self.type):
                raise ValueError(f"default {self.default!r} is not of type {self.type}")
            if self.enum is not None and self.default not in self.enum:
                raise ValueError(f"default {self.default!r} is not one of the enum {self.enum}")
            problem = self.problem(self.default) if self._bounded else None
            if problem is not None:
                raise ValueError(f"default does not fit the bounds: {problem}")
        return self

    @property
    def required(self) -> bool:
        """Whether a run must give this input (it has no default)."""
        return "default" not in self.model_fields_set

    @property
    def value_schema(self) -> dict[str, Any]:
        """The JSON Schema of the value: its type, enum and bounds (no title, description or default)."""
        return self.json_schema(self.type, {})

    def problem(self, value: object, name: str = "", *, as_json: bool = False) -> str | None:
        """Why ``value`` is not a valid value of this input (wrong type, outside a bound), or None.

        Args:
            value: The value.
            name: The input's name, to begin the message with (``tags[1]: ...``).
            as_json: Show values as JSON, for a value read from a JSON file.

        Example:
            >>> Requirement(type="string", min_length=3).problem("ab")
            "expected at least 3 characters; found 'ab'"
        """
        return value_problem(self.value_schema, value, name, as_json=as_json)

    @property
    def annotation(self) -> Any:  # noqa: ANN401 - a typing form
        """The Python type of the value: a `Literal` of the enum, else the JSON type's class; with
        bounds, annotated with its JSON Schema (the parameter schema Prefect stores) and a check of them."""
        base: Any = Literal[tuple(self.enum)] if self.enum else _PYTHON_TYPES[self.type]
        if not self._bounded:
            return base
        return Annotated[base, WithJsonSchema(self.value_schema), AfterValidator(self._fits)]

    @property
    def _bounded(self) -> bool:
        """Whether it has bounds besides its type and enum."""
        return bool(set(self.value_schema) - {"type", "enum"})

    def _fits(self, value: Any) -> Any:  # noqa: ANN401 - any input value
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}; expected an IANA name such as 'America/New_York'") from exc
    return value


class Schedule(Spec):
    """When a deployment of the definition runs by itself."""

    cron: Annotated[str, AfterValidator(check_cron)] | None = Field(
        default=None, description="A cron expression of five fields, such as '0 8 * * 1-5', or @daily and the like."
    )
    interval: Duration | None = Field(default=None, description="Run every so often instead of on a cron.")
    timezone: Annotated[str, AfterValidator(_check_timezone)] = Field(
        default="UTC", description="IANA time zone of the cron."
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="Inputs of the scheduled runs.")
    active: StrictBool = Field(default=True, description="Whether the schedule starts active.")

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("expected exactly one of 'cron' or 'interval'")
        return self


RetrievalMethod = Literal["tfidf", "embeddings"]
"""How retrieval ranks: by shared terms (TF-IDF), or by meaning (sentence embeddings)."""


class Retrieval(Spec):
    """Rank documents and referred outputs against the step's prompt; keep the best (`true`, or `{k: N, method: M}`)."""

    k: int = Field(
        default=5, ge=1, le=100, description="How many of the ranked documents and referred outputs to keep."
    )
    method: RetrievalMethod = Field(
        default="tfidf",
        description="How to rank: by shared terms (tfidf), or by meaning (embeddings, with the embeddings extra installed).",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {} if value is True else value


class ContextOptions(Spec):
    """What each agent call is given besides its prompt; each level (agent, phase, definition) overrides the next, key by key."""

    budget_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Tokens of context per agent call; by default the model's context window less the prompt and the answer.",
    )
    summarize: Literal["extract", "llm"] = Field(
        default="extract",
        description="How an item too large for the room left is shortened: by extracting sentences, or by asking the model.",
    )
    retrieval: Annotated[Retrieval | None, BeforeValidator(lambda v: None if v is False else v)] = Field(
        default=None,
        description="Rank documents and referred outputs against the prompt and keep the top k (`true` keeps 5).",
    )
    template: str | None = Field(
        default=None,
        description="A Jinja2 layout of the context and the prompt instead of the default; it reads items, prompt and note.",
    )


def merge_context(*layers: ContextOptions | None) -> ContextOptions:
    """Merge context options, most specific first: for each key, the first layer that sets it wins.

    Args:
        layers: Options of the agent, the phase, the definition (None where a level sets none).

    Returns:
        The options in force; the defaults where no layer sets a key.

    Example:
        >>> merge_context(ContextOptions(budget_tokens=400), None, ContextOptions(budget_tokens=900, summarize="llm"))
        ContextOptions(budget_tokens=400, summarize='llm', retrieval=None, template=None)
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            for name in layer.model_fields_set:
                merged.setdefault(name, getattr(layer, name))
    return ContextOptions.model_validate(merged)


class Metadata(Spec):
    """The first ```yaml block of a definition."""

    name: Slug = Field(description="Slug naming the flow and its deployment.")
    description: str | None = Field(default=None, description="One line on what the workflow does.")
    version: Annotated[str, BeforeValidator(_coerce_str)] | None = Field(
        default=None, description="The definition's own version."
    )
    max_execution_time: Duration | None = Field(default=None, description="Whole-run timeout.")
    max_concurrent_phases: int = Field(default=4, ge=1, description="Most phases running at once.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Backoff for transient failures.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Default model settings of every agent call.")
    requirements: dict[str, Requirement] = Field(
        default_factory=dict, description="The workflow's inputs (flow parameters)."
    )
    schedule: Schedule | None = Field(default=None, description="When a deployment runs by itself.")
    cache: CachePolicy | None = Field(default=None, description="Reuse identical LLM answers for a while.")
    index: str | None = Field(
        default=None,
        description="The index document, relative to the definition's folder: conventions every agent call gets first.",
    )
    context: ContextOptions | None = Field(default=None, description="Context options of every agent call.")

    @field_validator("requirements")
    @classmethod
    def _names(cls, value: dict[str, Requirement]) -> dict[str, Requirement]:
        for name in value:
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(
                    f"requirement name {name!r} must be an identifier (letters, digits, _) and not a Python keyword"
                )
            if name in RESERVED_NAMES:
                raise ValueError(f"requirement name '{name}' is reserved; pick another")
        return value

    @property
    def inputs(self) -> Inputs:
        """The inputs runs take, typed from :attr:`requirements`: the one check of them everywhere."""
        return Inputs(self.requirements)


def _one_or_list(value: object) -> object:
    if value is None:
        return []
    return [value] if not isinstance(value, list) else value


class Approval(Spec):
    """A person approves a phase before it starts (`approval: true`, or these keys)."""

    prompt: str | None = Field(
        default=None, description="What the approver is asked; a template over the inputs and phases."
    )
    fields: dict[str, Requirement] = Field(
        default_factory=dict,
        description="More typed inputs the approver fills in; the phase's templates see them as approval.NAME.",
    )
    timeout: Duration = Field(
        default=24 * 3600, description="How long the run waits for an answer before the phase fails."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {} if value is True else value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, Requirement]) -> dict[str, Requirement]:
        for name in value:
            if name in ("decision", "note") or not str(name).isidentifier():
                raise ValueError(f"approval field '{name}': expected an identifier other than decision and note")
        return value


class PhaseOptions(Spec):
    """The `key: value` lines (or ```yaml block) right under a `## Phase:` heading."""

    depends_on: Annotated[list[Name], BeforeValidator(_one_or_list)] = Field(
        default_factory=list, description="Phases that must complete first; their outputs are visible."
    )
    parallel: StrictBool = Field(default=False, description="Run the agent steps at the same time.")
    description: str | None = Field(default=None, description="What the phase is for.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Model settings for this phase's agent calls.")
    handlers: dict[str, str] = Field(
        default_factory=dict, description="Python handlers by stage, as 'package.module:function'."
    )
    cache: CachePolicy | None = Field(default=None, description="Reuse identical LLM answers for a while.")
    approval: Annotated[Approval | None, BeforeValidator(lambda v: None if v is False else v)] = Field(
        default=None,
        description="Pause before the phase until a person approves it (`true`, or prompt/fields/timeout).",
    )
    refers: Annotated[list[Name], BeforeValidator(_one_or_list)] = Field(
        default_factory=list,
        description="Phases whose most recent completed outputs this one may use without waiting: 'Phase Name' of this definition, or 'definition-name/Phase Name' of another in the same folder.",
    )
    documents: Annotated[list[Name], BeforeValidator(_one_or_list)] = Field(
        default_factory=list,
        description="Markdown or text files the phase may draw on: paths or globs relative to the definition's folder.",
    )
    context: ContextOptions | None = Field(default=None, description="Context options of this phase's agent calls.")
    review: Literal["context"] | None = Field(
        default=None, description="`context`: pause before inference for a person to pin or exclude context items."
    )
    index: StrictBool = Field(
        default=False, description="This phase's output is the index document of the phases after it."
    )
    duplicates: Annotated[list[Name], BeforeValidator(_one_or_list)] = Field(
        default_factory=list, description="Phases this one duplicates (for tools only; targets as in refers)."
    )
    relates_to: Annotated[list[Name], BeforeValidator(_one_or_list)] = Field(
        default_factory=list, description="Phases this one relates to (for tools only; targets as in refers)."
    )

    @field_validator("handlers")
    @classmethod
    def _handlers(cls, value: dict[str, str]) -> dict[str, str]:
        for stage, ref in value.items():
            if stage not in STAGES:
                raise ValueError(
                    f"unknown stage '{stage}'; expected one of {', '.join(STAGES)}" + did_you_mean(str(stage), STAGES)
                )
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", str(ref)):
                raise ValueError(f"{stage}: expected 'package.module:function'; found {ref!r}")
        return value


class CritiqueOptions(Spec):
    """Option lines of a `### Critique` section."""

    when: Literal["onFailure", "always"] = Field(
        default="onFailure", description="Critique only when quality checks fail, or always."
    )


class RefineOptions(Spec):
    """Option lines of a `### Refine` section."""

    max_refinements: int = Field(default=2, ge=0, le=20, description="Most revise-and-recheck loops.")


class AgentSettings(Spec):
    """The front matter of an agent file `agents/ID.md` (its body is the system prompt)."""

    description: str | None = Field(default=None, description="What the agent is for.")
    provider: str | None = Field(default=None, description="Name of a saved LLMProvider block.")
    model: str | None = Field(default=None, description="A litellm model string.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens in an answer.")
    context: ContextOptions | None = Field(
        default=None,
        description="Context options of this agent's calls; they override the phase's and the definition's.",
    )


class InlineAgent(AgentSettings):
    """An agent defined in a ```yaml block under `### Agents`."""

    system_prompt: str = Field(default="", description="The agent's system prompt.")
