"""Prompt templates: Jinja2 in a sandbox, checked for syntax and for the names they read."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["TemplateCheck", "check_template", "environment", "render_template"]


@functools.lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed environment templates are parsed and rendered in."""
    from jinja2 import StrictUndefined

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass
class TemplateCheck:
    """What a template reads, or why it cannot be parsed."""

    syntax_error: tuple[int, str] | None = None
    """(0-based line within the template, message)."""
    unknown_names: list[str] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=lambda: {"phases": [], "steps": [], "output": []})
    """Constant keys read as ``NAME["X"]`` or ``NAME.X`` for phases, steps and output."""


@functools.lru_cache(maxsize=4096)
def _analyse(text: str) -> TemplateCheck:
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        return TemplateCheck(syntax_error=(max(exc.lineno - 1, 0), exc.message or "syntax error"))
    except RecursionError:
        return TemplateCheck(syntax_error=(0, "template nested too deeply"))
    # Names read but never assigned in the template ({% set %}, loop variables, macro
    # arguments). Cheaper than jinja2.meta.find_undeclared_variables, which runs the compiler.
    read: set[str] = set()
    assigned: set[str] = set()
    for name in tree.find_all(nodes.Name):
        (read if name.ctx == "load" else assigned).add(name.name)
    check = TemplateCheck(unknown_names=sorted(read - assigned - set(env.globals)))
    for node in tree.find_all((nodes.Getitem, nodes.Getattr)):
        owner = getattr(node, "node", None)
        if not isinstance(owner, nodes.Name) or owner.name not in check.keys:
            continue
        if isinstance(node, nodes.Getitem):
            if not isinstance(node.arg, nodes.Const) or not isinstance(node.arg.value, str):
                continue  # computed at run time; checked then
            key = node.arg.value
        else:
            key = getattr(node, "attr", "")
        check.keys[owner.name].append(key)
    return check


def check_template(text: str, names: Collection[str]) -> TemplateCheck:
    """Parse a template and list the names it reads that are not in ``names``.

    Args:
        text: The template.
        names: The top-level names it may read (Jinja's own globals are always allowed).
    """
    check = _analyse(text)
    return replace(check, unknown_names=[n for n in check.unknown_names if n not in names])


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> Template:
    return environment().from_string(text)


def render_template(text: str, names: Mapping[str, Any]) -> str:
    """Render a template in the sandbox; each distinct template is compiled once.

    Raises:
        jinja2.TemplateError: An undefined name or a sandbox violation at render time.
    """
    return _compiled(text).render(names)
