"""Seed files: what a watch folder is asked to run, checked before anything runs.

A seed is a JSON object::

    {"definition": "../definitions/daily.md", "params": {"question": "What moved?"},
     "id": "daily-2026-11-22", "rerun": false}

``definition`` (required) is a definition file, relative to the watch folder unless
absolute; ``params`` (optional) are its inputs; ``id`` (optional) names the run and is its
identity; ``rerun`` (optional) runs it again even when an identical seed has run before.

Checking is pure: no Prefect, no LLM. Every problem is a :class:`~taskmark.errors.Diagnostic`
located in the seed (``SEED:LINE:COL: error: ...``), or in the definition file for a
definition that is not valid.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmark.definition import Definition, Location, Spans, did_you_mean, validate_file
from taskmark.errors import Diagnostic
from taskmark.watch._json_spans import spans_of

__all__ = ["SEED_KEYS", "SEED_SUFFIX", "Seed", "SeedCheck", "check_seed", "deployment_name", "read_seed", "seed_key"]

SEED_SUFFIX = "-seed.json"
"""A file in ``pending/`` is a seed when its name ends with this."""

SEED_KEYS = ("definition", "params", "id", "rerun")
"""The keys a seed may have."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Seed:
    """A valid seed, ready to run."""

    definition_path: Path
    """The definition file, resolved."""
    definition: Definition
    """The definition, as read when the seed was checked."""
    params: dict[str, Any]
    """The inputs, with the definition's defaults filled in."""
    key: str
    """What makes two seeds the same run (see :func:`seed_key`)."""
    id: str | None = None
    """The run's name, when the seed gives one."""
    rerun: bool = False
    """Run even if a seed with the same key has run."""


@dataclass(frozen=True)
class SeedCheck:
    """The outcome of checking one seed: a seed, or why not."""

    seed: Seed | None
    """The seed, when it has no errors."""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    """Every error, the seed's first (by position), then the definition file's."""

    @property
    def ok(self) -> bool:
        """True when the seed can run."""
        return self.seed is not None

    def message(self) -> str:
        """The errors, one ``PATH:LINE:COL: error: ...`` per line."""
        return "".join(f"{d}\n" for d in self.diagnostics)


def read_seed(path: Path, *, base: Path, shown_as: str | None = None, deployment: str | None = None) -> SeedCheck:
    """Read and check the seed file at ``path``.

    Args:
        path: The seed file.
        base: The folder relative definition paths are read from (the watch folder).
        shown_as: The path messages name (default: ``path``), e.g. where a rejected seed goes.
        deployment: The ``--deployment`` the seed will run through, if any.

    Returns:
        The check; an unreadable file is an error at 1:1.
    """
    shown = shown_as or str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return SeedCheck(None, [Diagnostic(shown, 1, 1, f"cannot read the seed: {exc}")])
    return check_seed(text, path=shown, base=base, deployment=deployment)


def check_seed(text: str, *, path: str, base: Path, deployment: str | None = None) -> SeedCheck:
    """Check a seed's text: JSON syntax, keys, the definition, and the params against its inputs.

    Args:
        text: The seed file's text.
        path: The seed file as messages name it.
        base: The folder relative definition paths are read from.
        deployment: The ``--deployment`` the seed will run through, if any; a
            ``FLOW/DEPLOYMENT`` name must be the definition's flow.

    Returns:
        The seed, or every error found (a JSON syntax error stops at itself).

    Example:
        >>> check = check_seed('{"definition": "two.md", "params": {"topc": "tides"}}', path="a-seed.json", base=Path("."))
        >>> print(check.message(), end="")
        a-seed.json:1:26: error: params: missing required input 'topic' (string)
        a-seed.json:1:37: error: params: unknown input 'topc'; the definition's inputs are: topic; did you mean 'topic'?
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "the file is empty" if not text.strip() else exc.msg
        return SeedCheck(None, [Diagnostic(path, exc.lineno, exc.colno, f"invalid JSON: {what}")])
    return _Checker(path, spans_of(path, text), base, deployment).check(value)


def seed_key(definition: Definition, definition_text: str, params: dict[str, Any], run_id: str | None = None) -> str:
    """What makes two seeds the same run.

    With an ``id``, the id alone. Otherwise a SHA-256 of the definition file's text, the
    agents it uses (their prompts and model settings, wherever they are defined) and the
    params with defaults filled in: the same work asked twice has the same key; an edited
    definition, agent or input makes a new one.
    """
    if run_id is not None:
        return f"id:{run_id}"
    agents = {
        name: agent.model_dump(mode="json", exclude={"location"}) for name, agent in sorted(definition.agents.items())
    }
    document = json.dumps(
        {"definition": definition_text, "agents": agents, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def deployment_name(deployment: str, definition: Definition) -> str:
    """The ``FLOW/DEPLOYMENT`` a seed runs through: ``NAME`` alone means ``DEFINITION-NAME/NAME``."""
    return deployment if "/" in deployment else f"{definition.name}/{deployment}"


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), "null")


class _Checker:
    """One check of one seed's parsed value."""

    def __init__(self, path: str, spans: Spans, base: Path, deployment: str | None) -> None:
        self.path, self.spans, self.base, self.deployment = path, spans, base, deployment
        self.errors: list[Diagnostic] = []
        self.definition_errors: list[Diagnostic] = []

    def error(self, at: Location, msg: str) -> None:
        self.errors.append(Diagnostic(self.path, at.line, at.column, msg))

    def check(self, value: object) -> SeedCheck:
        if not isinstance(value, dict):
            self.error(
                self.spans.root,
                'expected a JSON object such as {"definition": "flow.md", "params": {}}; found ' + _json_type(value),
            )
            return self.result(None)
        for key in value:
            if key not in SEED_KEYS:
                self.error(
                    self.spans.key((key,)),
                    f"unknown key '{key}'; expected one of {', '.join(SEED_KEYS)}" + did_you_mean(key, SEED_KEYS),
                )
        run_id = self.run_id(value.get("id"))
        rerun = value.get("rerun", False)
        if not isinstance(rerun, bool):
            self.error(self.spans.value(("rerun",)), f"'rerun': expected true or false; found {json.dumps(rerun)}")
        loaded = self.definition(value)
        params = value.get("params", {})
        if not isinstance(params, dict):
            self.error(
                self.spans.value(("params",)), f"'params': expected an object of inputs; found {json.dumps(params)}"
            )
            params = None
        if loaded is None or params is None:
            return self.result(None)
        definition, resolved, text = loaded
        filled = self.params(definition, params, "params" in value)
        if self.errors:
            return self.result(None)
        key = seed_key(definition, text, filled, run_id)
        return self.result(Seed(resolved, definition, filled, key, run_id, rerun is True))

    def result(self, seed: Seed | None) -> SeedCheck:
        ordered = sorted(self.errors, key=lambda d: (d.line, d.column or 0))
        return SeedCheck(seed if not ordered else None, ordered + self.definition_errors)

    def run_id(self, run_id: object) -> str | None:
        if run_id is None:
            return None
        if not isinstance(run_id, str) or not _ID.fullmatch(run_id):
            self.error(
                self.spans.value(("id",)),
                f"'id': expected letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit); found {json.dumps(run_id)}",
            )
            return None
        return run_id

    def definition(self, value: dict[str, Any]) -> tuple[Definition, Path, str] | None:
        if "definition" not in value:
            self.error(self.spans.root, "missing key 'definition': the definition file to run")
            return None
        at = self.spans.value(("definition",))
        named = value["definition"]
        if not isinstance(named, str) or not named.strip():
            self.error(at, f"'definition': expected the path of a definition file; found {json.dumps(named)}")
            return None
        resolved = (self.base / named).resolve()
        if not resolved.is_file():
            where = "" if Path(named).is_absolute() else f" (relative paths are read from the watch folder {self.base})"
            self.error(at, f"definition '{named}' not found: no file {resolved}{where}")
            return None
        report = validate_file(resolved)
        if report.definition is None:
            errors = [d for d in report.diagnostics if d.severity == "error"]
            self.error(
                at,
                f"definition '{named}' is not valid ({len(errors)} error{'s' if len(errors) != 1 else ''}, listed below)",
            )
            self.definition_errors = errors
            return None
        if self.deployment is not None:
            flow = deployment_name(self.deployment, report.definition).partition("/")[0]
            if flow != report.definition.name:
                self.error(
                    at,
                    f"definition '{named}' is the flow '{report.definition.name}', not '{flow}' of deployment '{self.deployment}'",
                )
                return None
        try:
            text = resolved.read_text(encoding="utf-8")
        except OSError as exc:  # removed between the check and the read
            self.error(at, f"cannot read definition '{named}': {exc}")
            return None
        return report.definition, resolved, text

    def params(self, definition: Definition, params: dict[str, Any], given: bool) -> dict[str, Any]:
        inputs = definition.metadata.inputs
        for problem in inputs.problems(params, within="params.", as_json=True):
            if problem.kind == "invalid":
                self.error(self.spans.value(("params", problem.name)), problem.message)
            elif problem.kind == "unknown":
                self.error(self.spans.key(("params", problem.name)), f"params: {problem.message}")
            else:
                self.error(self.spans.key(("params",)) if given else self.spans.root, f"params: {problem.message}")
        return inputs.filled(params)
