"""Answers of a phase's steps and the pure work done on them: parsing, checks, aggregation.

Nothing here does I/O; the lifecycle calls these inside its stage tasks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskmark.definition import AgentStep, OutputField, Phase, ValidationStep, evaluate

__all__ = ["Answer", "aggregate", "check_quality", "check_structure", "output_schema", "parse_text"]


@dataclass
class Answer:
    """One step's answer as it moves through the lifecycle."""

    step: AgentStep
    key: str
    """Unique within the phase: the agent id, or `id#2` for the second step of the same agent."""
    prompt: str | None = None
    text: str | None = None
    value: Any = None
    """The parsed output: a mapping when outputs are declared, else the text."""
    model: str | None = None
    errors: list[str] = field(default_factory=list)
    """Failed structure and quality checks of the current value."""
    failure: str | None = None
    """Why this answer cannot be used (its call or its loop failed)."""
    refinements: int = 0
    routed_out: bool = False
    """A route step did not pick this branch; it never ran."""

    @property
    def usable(self) -> bool:
        """Whether the answer may reach the phase's output."""
        return self.failure is None and self.text is not None and not self.routed_out


def output_schema(outputs: list[OutputField], inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema an agent's reply must match, when the phase declares outputs.

    Only the declared fields, each with its bounds (a bound may name an input, taken from
    ``inputs``): a grammar-constrained model then cannot wander into fields or strings nobody
    asked for.
    """
    if not outputs:
        return None
    return {
        "type": "object",
        "properties": {o.name: o.json_schema(inputs) for o in outputs},
        "required": [o.name for o in outputs],
        "additionalProperties": False,
    }


def parse_text(text: str, parsed: Any, outputs: list[OutputField]) -> tuple[Any, str | None]:  # noqa: ANN401
    """The value of a reply, and why it could not be parsed (None when it could).

    With declared outputs the reply is JSON (already parsed by the provider when it could);
    without, the text is the value.
    """
    if not outputs:
        return text, None
    if isinstance(parsed, dict):
        return parsed, None
    start, end = text.find("{"), text.rfind("}")
    try:
        value = json.loads(text[start : end + 1] if 0 <= start < end else text)
    except ValueError:
        return None, f"the reply is not JSON: {text[:80]!r}"
    if not isinstance(value, dict):
        return None, f"expected a JSON object; found {type(value).__name__}"
    return value, None


def check_structure(value: Any, schema: dict[str, Any] | None) -> list[str]:  # noqa: ANN401
    """What in ``value`` does not match the phase's output schema (see `output_schema`)."""
    if schema is None:
        return []
    # jsonschema comes with Prefect; imported here so that importing taskmark stays light.
    import jsonschema  # type: ignore[import-untyped]

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: [str(p) for p in e.path])
    return [f"output {'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors]


def check_quality(value: Any, phase: Phase, names: dict[str, Any]) -> list[str]:  # noqa: ANN401
    """The validation expressions of ``phase`` that ``value`` fails, each with the value seen."""
    problems = []
    for step in phase.steps:
        if not isinstance(step, ValidationStep):
            continue
        try:
            passed = bool(evaluate(step.expression, {**names, "output": value}))
            reason = "is false"
        except Exception as exc:  # noqa: BLE001 - any error in a user's expression is a failed check
            passed, reason = False, f"raised {type(exc).__name__}: {exc}"
        if not passed:
            problems.append(
                f"validation `{step.expression}` {reason} for output {_short(value)} in phase '{phase.name}'"
            )
    return problems


def _short(value: Any) -> str:  # noqa: ANN401
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def aggregate(method: str, answers: list[Answer]) -> Any:  # noqa: ANN401
    """Combine usable answers (in step order) by ``merge``, ``concat``, ``vote`` or ``first``.

    ``consensus`` is not here: it asks an agent (see the lifecycle).
    """
    values = [(a.key, a.value) for a in answers]
    if method == "merge":
        return dict(values)
    if method == "concat":
        if all(isinstance(v, str) for _, v in values):
            return "\n\n".join(v for _, v in values)
        return [v for _, v in values]
    if method == "first":
        return values[0][1]
    if method == "vote":
        counts = Counter(json.dumps(v, sort_keys=True, default=str) for _, v in values)
        best = max(counts.values())
        return next(v for _, v in values if counts[json.dumps(v, sort_keys=True, default=str)] == best)
    raise ValueError(f"unknown aggregate {method!r}")
