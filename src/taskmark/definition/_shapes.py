"""What a phase's output holds, as far as the definition says: the keys templates and
validation expressions may read from ``phases["P"]``, ``steps["ID"]`` and ``output``.

It follows how the integration stage forms a phase's outputs (``taskmark.tasks``):
`aggregate: merge` gives a mapping by answer key; `first`, `vote`, `consensus`, a single
agent step and a sequential phase give one answer, which holds the declared `### Outputs`.
Nobody can check before a run what `concat`, custom steps, phases without declared outputs
and parallel phases without an aggregate (a merge, or a lone answer when one is left) give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskmark.definition._model import AggregateStep, Phase

__all__ = ["MAPPING_METHODS", "Shape", "answer_keys", "answer_shape", "first_unknown", "output_shape"]

MAPPING_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))
"""Attributes of every mapping (``phases["P"].items()``); a key written ``.name`` may be one."""


@dataclass(frozen=True)
class Shape:
    """The keys a value is known to hold."""

    keys: tuple[str, ...]
    by_agent: bool = False
    """Whether the keys are answer keys (a merge); else declared outputs."""
    inner: Shape | None = None
    """The shape of the value under each key, when known."""


def answer_keys(phase: Phase) -> list[str]:
    """The key of each agent step's answer: the agent id, ``ID#2`` for its second step, and so on."""
    seen: dict[str, int] = {}
    keys = []
    for step in phase.agent_steps():
        seen[step.agent] = seen.get(step.agent, 0) + 1
        keys.append(step.agent if seen[step.agent] == 1 else f"{step.agent}#{seen[step.agent]}")
    return keys


def answer_shape(phase: Phase) -> Shape | None:
    """What one answer of ``phase`` holds (``steps["ID"]``, ``output``): its declared outputs."""
    return Shape(tuple(o.name for o in phase.outputs)) if phase.outputs else None


def output_shape(phase: Phase) -> Shape | None:
    """What ``phases["P"]`` holds once ``phase`` completed, or None when it cannot be known."""
    aggregate = next((s for s in phase.steps if isinstance(s, AggregateStep)), None)
    keys = answer_keys(phase)
    method: str
    if aggregate is not None:
        method = aggregate.method
    elif len(keys) == 1 or (keys and not phase.parallel):
        method = "first"
    else:
        # Custom steps only; or a parallel phase without an aggregate, which merges its answers
        # when more than one is left and passes a lone one on as it is: no single shape.
        method = "unknown"
    if method == "merge":
        return Shape(tuple(keys), by_agent=True, inner=answer_shape(phase))
    if method in ("first", "vote", "consensus"):
        return answer_shape(phase)
    return None


def first_unknown(keys: Sequence[str], attribute: Sequence[bool], shape: Shape | None) -> tuple[int, Shape] | None:
    """The first of ``keys`` (read one inside the other) that ``shape`` does not hold, with the
    shape it was looked up in; None when every key is known or the shape is not."""
    for index, key in enumerate(keys):
        if shape is None:
            return None
        if key not in shape.keys:
            if attribute[index] and key in MAPPING_METHODS:
                return None  # a method of the mapping, such as .items()
            return index, shape
        shape = shape.inner
    return None
