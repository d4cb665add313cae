"""A run's inputs, typed once from the definition's ``requirements``.

Everything that takes inputs goes through :class:`Inputs`: ``--param`` on the command line,
the Prefect run form (the flow's signature, which Prefect turns into its parameter schema and
checks each run against), a schedule's parameters, a watch-folder seed and a deployment's
defaults. Each says a problem in the same words; only where it points differs (a flag, a line
of YAML, a key of a JSON seed).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from taskmark.definition._source import did_you_mean
from taskmark.definition._values import typed_value

if TYPE_CHECKING:
    from taskmark.definition._spec import Requirement

__all__ = ["InputProblem", "Inputs"]


class InputProblem(NamedTuple):
    """What is wrong with one input given to a run."""

    name: str
    kind: Literal["unknown", "invalid", "missing"]
    message: str
    """Says which input: ``unknown input 'x'; ...``, ``x: expected ...; found ...``,
    ``missing required input 'x' (string)``."""


class Inputs:
    """The inputs a definition's runs take: each one's type, bounds and default.

    Example:
        >>> inputs = Inputs({"rounds": Requirement(type="integer", maximum=5)})
        >>> [p.message for p in inputs.problems({"rounds": 9})]
        ['rounds: expected at most 5; found 9']
    """

    def __init__(self, requirements: Mapping[str, Requirement]) -> None:
        self.requirements = dict(requirements)

    def problems(
        self, values: Mapping[str, Any], *, within: str = "", as_json: bool = False, complete: bool = True
    ) -> list[InputProblem]:
        """What is wrong with ``values`` as a run's inputs, in the order given, then what is missing.

        Args:
            values: The inputs by name.
            within: What the inputs sit under, to begin an invalid value's path with (``params.``).
            as_json: Show values as JSON, for values read from a JSON file.
            complete: Whether ``values`` must hold every required input (else defaults and a
                later source may fill them).
        """
        known = ", ".join(self.requirements) or "none"
        found: list[InputProblem] = []
        for name, value in values.items():
            requirement = self.requirements.get(name)
            if requirement is None:
                message = f"unknown input '{name}'; the definition's inputs are: {known}"
                found.append(InputProblem(name, "unknown", message + did_you_mean(name, self.requirements)))
            elif (problem := requirement.problem(value, within + name, as_json=as_json)) is not None:
                found.append(InputProblem(name, "invalid", problem))
        if complete:
            found += [
                InputProblem(name, "missing", f"missing required input '{name}' ({requirement.type})")
                for name, requirement in self.requirements.items()
                if requirement.required and name not in values
            ]
        return found

    def filled(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with the default of each input they leave out."""
        defaults = {name: r.default for name, r in self.requirements.items() if not r.required}
        return {**defaults, **values}

    def parse(self, name: str, raw: str) -> Any:  # noqa: ANN401 - any input value
        """The value of ``name`` written as text (``-p rounds=3``): a string as given, else JSON.

        Raises:
            ValueError: ``name`` is no input, or ``raw`` is not JSON where JSON is needed.
        """
        requirement = self.requirements.get(name)
        if requirement is None:
            (problem,) = self.problems({name: None}, complete=False)
            raise ValueError(problem.message)
        return typed_value(requirement.value_schema, raw, name)

    def signature(self, title: str) -> tuple[inspect.Signature, str]:
        """The flow function's signature and a docstring (``title``, then Args for each input that
        has a description): Prefect makes the run form and each run's check of them.

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
            for name, requirement in sorted(self.requirements.items(), key=lambda item: not item[1].required)
        ]
        lines = [title]
        # Only inputs with a description are listed: Prefect shows an Args entry beside the field,
        # and the type alone (`topic: string`) is already the field's kind.
        described = [f"    {n}: {r.description}" for n, r in self.requirements.items() if r.description]
        if described:
            lines += ["", "Args:", *described]
        return inspect.Signature(parameters), "\n".join(lines) + "\n"
