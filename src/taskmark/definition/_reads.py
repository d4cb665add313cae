"""Checking what a phase's templates and validation expressions read: names in scope, phases
upstream, earlier steps, and the keys of their outputs, each error at the very name."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence

from taskmark.definition._expressions import check_expression, key_chains
from taskmark.definition._graph import ancestors
from taskmark.definition._model import AgentStep, Phase, RouteStep, ValidationStep
from taskmark.definition._shapes import Shape, answer_keys, answer_shape, first_unknown, output_shape
from taskmark.definition._source import Location, Reporter, Source, did_you_mean
from taskmark.definition._templates import Position, check_template

__all__ = ["ReadChecker"]


class _Places:
    """Where each key of a read is written: found only when an error is reported there
    (for a template, that means lexing it again)."""

    def __init__(self, find: Callable[[], list[Location]], skip: int = 0) -> None:
        self.find, self.skip = functools.cache(find), skip

    def __getitem__(self, index: int) -> Location:
        return self.find()[self.skip + index]

    def rest(self) -> _Places:
        """The places of the keys after the first."""
        return _Places(self.find, self.skip + 1)


class _Scope:
    """What the texts of one phase may read."""

    def __init__(self, phase: Phase, edges: dict[str, list[str]], unsure: Collection[str], names_known: bool) -> None:
        self.phase = phase
        self.names_known = names_known
        # Ancestors are computed only when a text reads a phase that is not a direct dependency.
        self.upstream: Callable[[], set[str]] = functools.cache(lambda: ancestors(edges, phase.name))
        self.unsure: Callable[[], bool] = functools.cache(
            lambda: phase.name in unsure or any(name in unsure for name in self.upstream())
        )
        """Whether the phase, or one upstream of it, has a `dependsOn` that could not be read."""


class ReadChecker:
    """Checks the templates and expressions of a definition's phases.

    Args:
        source: The definition file, to place each error at the name it is about.
        reporter: Where errors go.
        phases: Every phase of the definition.
        unsure: The phases whose `dependsOn` is in error (reported already): what they and the
            phases after them read from other phases is not held against them.
    """

    def __init__(self, source: Source, reporter: Reporter, phases: Sequence[Phase], unsure: Collection[str]) -> None:
        self.source, self.reporter = source, reporter
        self.phases = {p.name: p for p in phases}
        self.edges = {p.name: p.depends_on for p in phases}
        self.unsure = unsure

    def check(self, phase: Phase, requirements: list[str] | None, approval_at: Location | None = None) -> None:
        """Check every template and expression of ``phase``.

        Args:
            phase: The phase.
            requirements: The definition's input names; None when they are not known (the
                metadata is in error), so that names are not reported.
            approval_at: Where the approval prompt's text starts in the file, if it has one.
        """
        scope = _Scope(phase, self.edges, self.unsure, names_known=requirements is not None)
        base = [*(requirements or ()), "inputs", "phases", "steps"]
        approval = phase.options.approval
        if approval is not None:
            if approval.prompt:
                self._template(approval.prompt, approval_at or phase.location, base, scope, [])
            base = [*base, "approval"]
        keys = iter(answer_keys(phase))
        earlier: list[str] = []
        for step in phase.steps:
            if isinstance(step, AgentStep):
                self._template(step.prompt, step.location, base, scope, earlier)
                earlier.append(next(keys))
            elif isinstance(step, ValidationStep):
                self._expression(step, step.expression, [*base, "output"], scope)
            elif isinstance(step, RouteStep):
                self._route(step, base, scope)
        for section, extra in (
            (phase.critique, ["output", "errors"]),
            (phase.refine, ["output", "critique", "errors"]),
        ):
            for step in section.steps if section else []:
                self._template(step.prompt, step.location, [*base, *extra], scope, answer_keys(phase))

    # -- templates ---------------------------------------------------------------------------

    def _at(self, where: Location, text: str, position: Position) -> Location:
        """The place in the file of a position in a template that starts at ``where``.

        Each line of a template is the end of a line of the file (a bullet's text, continued on
        the lines below it); when a line cannot be found (a quoted YAML string), its start.
        """
        line0, column0 = position
        lines = text.split("\n")
        file_line0 = where.line - 1 + line0
        if line0 < len(lines) and lines[line0] and 0 <= file_line0 < len(self.source.lines):
            found = self.source.lines[file_line0].rfind(lines[line0])
            if found >= 0:
                return self.source.at(file_line0, found + column0)
        return where if line0 == 0 else self.source.line_start(file_line0)

    def _template(self, text: str, where: Location, names: list[str], scope: _Scope, earlier: list[str]) -> None:
        check = check_template(text, names)
        if check.syntax_error is not None:
            line0, msg = check.syntax_error
            self.reporter.error(self._at(where, text, (line0, 0)), f"invalid prompt template: {msg}")
            return
        for name in check.unknown_names if scope.names_known else ():
            self.reporter.error(
                self._at(where, text, check.at(name)),
                f"unknown name '{name}' in prompt template; expected one of {', '.join(names)}"
                + did_you_mean(name, names),
            )
        for position, msg in check.problems:
            self.reporter.error(self._at(where, text, position), msg)
        for read in check.reads:
            places = _Places(functools.partial(lambda r: [self._at(where, text, p) for p in check.places(r)], read))
            self._read(read.name, read.keys, places, read.attribute, scope, earlier)

    # -- expressions -------------------------------------------------------------------------

    def _expression(self, step: ValidationStep | RouteStep, expression: str, names: list[str], scope: _Scope) -> None:
        offset = self.source.lines[step.location.line - 1].find(expression)

        def at(column: int) -> Location:
            return step.location if offset < 0 else self.source.at(step.location.line - 1, offset + column)

        problems = check_expression(expression, names if scope.names_known else None)
        for column, msg in problems:
            self.reporter.error(at(column), msg)
        if problems:
            return
        for name in ("phases", "output"):
            for chain in key_chains(expression, name):
                places = _Places(functools.partial(lambda c: [at(column) for column, _, _ in c], chain))
                self._read(name, tuple(k for _, k, _ in chain), places, tuple(a for _, _, a in chain), scope, None)

    def _route(self, step: RouteStep, names: list[str], scope: _Scope) -> None:
        phase = scope.phase
        if not phase.agent_steps():
            self.reporter.error(step.location, f"route: phase '{phase.name}' has no agent steps to route between")
        if sum(1 for s in phase.steps if isinstance(s, RouteStep)) > 1 and phase.route() is not step:
            self.reporter.error(step.location, f"phase '{phase.name}' has more than one route step")
        if step.expression is not None:
            self._expression(step, step.expression, [*names, "branches"], scope)
        elif step.prompt is not None:
            self._template(step.prompt, step.location, [*names, "branches"], scope, [])

    # -- what a chain of keys reads ------------------------------------------------------------

    def _read(
        self,
        name: str,
        keys: tuple[str, ...],
        places: _Places,
        attribute: tuple[bool, ...],
        scope: _Scope,
        earlier: list[str] | None,
    ) -> None:
        """Check ``name[keys[0]][keys[1]]...``; ``earlier`` is None where ``steps`` is not checked."""
        phase = scope.phase
        if name == "phases":
            target = keys[0]
            if not self._phase_reference(target, places, scope):
                return
            self._fields(
                keys[1:], places.rest(), attribute[1:], output_shape(self.phases[target]), f"phases['{target}']", target
            )
        elif name == "steps" and earlier is not None:
            if phase.parallel:
                self.reporter.error(
                    places[0],
                    f"steps['{keys[0]}']: phase '{phase.name}' is parallel, so its steps do not see each other",
                )
            elif keys[0] not in earlier:
                self.reporter.error(
                    places[0],
                    f"steps['{keys[0]}'] is not an earlier agent step of phase '{phase.name}'"
                    + did_you_mean(keys[0], earlier),
                )
            else:
                self._fields(
                    keys[1:], places.rest(), attribute[1:], answer_shape(phase), f"steps['{keys[0]}']", phase.name
                )
        elif name == "output":
            self._fields(keys, places, attribute, answer_shape(phase), "output", phase.name)

    def _phase_reference(self, target: str, places: _Places, scope: _Scope) -> bool:
        """Whether ``phases[target]`` names a phase upstream; else report it at ``places[0]``."""
        phase = scope.phase
        if target not in self.phases:
            self.reporter.error(
                places[0], f"unknown phase '{target}' in phases[...]" + did_you_mean(target, self.phases)
            )
            return False
        if target not in phase.depends_on and target not in scope.upstream() and not scope.unsure():
            self.reporter.error(
                places[0],
                f"phase '{phase.name}' reads phases['{target}'] but does not depend on it; add '{target}' to its dependsOn",
            )
            return False
        return True

    def _fields(
        self,
        keys: tuple[str, ...],
        places: _Places,
        attribute: tuple[bool, ...],
        shape: Shape | None,
        read: str,
        phase: str,
    ) -> None:
        """Report the first of ``keys`` that is not there: they are read from ``read``, which
        holds ``shape``, an output of ``phase``."""
        found = first_unknown(keys, attribute, shape)
        if found is None:
            return
        index, held = found
        key, owner = keys[index], read + "".join(f"['{k}']" for k in keys[:index])
        if held.by_agent:
            hint = ""
            if held.inner is not None and key in held.inner.keys:
                hint = f"; read one agent's answer, as {owner}['{held.keys[0]}'].{key}"
            msg = (
                f"unknown key '{key}' in {owner}: the phase merges its answers by agent, so it holds "
                f"{', '.join(held.keys)}{hint or did_you_mean(key, held.keys)}"
            )
        else:
            declared = ", ".join(held.keys)
            if owner == "output":
                msg = f"unknown output '{key}'; phase '{phase}' declares {declared}"
            elif owner == f"phases['{phase}']":
                msg = f"unknown output '{key}' of phase '{phase}'; it declares {declared}"
            else:
                msg = f"unknown output '{key}' of {owner}; phase '{phase}' declares {declared}"
            msg += did_you_mean(key, held.keys)
        self.reporter.error(places[index], msg)
