"""A definition's requirements as a typed Python signature, which Prefect turns into the
flow's parameter schema (the UI's run form) and validates runs against."""

from __future__ import annotations

import inspect

from taskmark.definition import Definition

__all__ = ["signature_of"]


def signature_of(definition: Definition) -> tuple[inspect.Signature, str]:
    """The flow function's signature and a docstring whose Args describe each input.

    Required inputs come first (Python needs that order); each keeps its default.
    """
    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=requirement.annotation,
            default=inspect.Parameter.empty if requirement.required else requirement.default,
        )
        for name, requirement in sorted(definition.metadata.requirements.items(), key=lambda item: not item[1].required)
    ]
    lines = [definition.metadata.description or definition.title, "", "Args:"]
    lines += [f"    {n}: {r.description or r.type}" for n, r in definition.metadata.requirements.items()]
    return inspect.Signature(parameters), "\n".join(lines) + "\n"
