"""A definition's requirements as a typed Python signature, which Prefect turns into the
flow's parameter schema (the UI's run form) and validates runs against."""

from __future__ import annotations

import inspect

from taskmark.definition import Definition

__all__ = ["signature_of"]


def signature_of(definition: Definition) -> tuple[inspect.Signature, str]:
    """The flow function's signature and a docstring whose Args describe each input that has a description.

    Required inputs come first (Python needs that order); each keeps its default, and its
    annotation carries its bounds into the parameter schema (:attr:`Requirement.annotation`).
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
    lines = [definition.metadata.description or definition.title]
    # Only inputs with a description are listed: Prefect shows an Args entry beside the field,
    # and the type alone (`topic: string`) is already the field's kind.
    described = [f"    {n}: {r.description}" for n, r in definition.metadata.requirements.items() if r.description]
    if described:
        lines += ["", "Args:", *described]
    return inspect.Signature(parameters), "\n".join(lines) + "\n"
