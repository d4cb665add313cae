"""Render a bundle before the prompt: a ``## Context`` section, one heading per item."""

from __future__ import annotations

from typing import Any

from taskmark.context._items import Bundle, Included
from taskmark.definition import render_template

__all__ = ["DEFAULT_LAYOUT", "render"]

DEFAULT_LAYOUT = """\
## Context
{% for item in items %}
### {{ item.title }} ({{ item.kind }} · {{ item.source }}){% if item.shortened %} — shortened{% endif %}
{{ item.text | trim }}
{% endfor %}
## Task

{{ prompt }}"""
"""The layout of a prompt with context (a Jinja template, rendered in the sandbox)."""


def render(bundle: Bundle, prompt: str, template: str | None = None) -> str:
    """The prompt with the bundle's items before it.

    Args:
        bundle: The context.
        prompt: The call's prompt, already rendered.
        template: A layout of one's own; it sees ``items`` (dicts of ``id``, ``kind``,
            ``source``, ``title``, ``text``, ``tokens``, ``shortened``, ``pinned``,
            ``reason``), ``prompt`` and ``note`` (the person's note). Default
            :data:`DEFAULT_LAYOUT`.

    Returns:
        The text to send; ``prompt`` unchanged when the bundle has no items.

    Raises:
        jinja2.TemplateError: The template reads an unknown name or breaks the sandbox.

    Example:
        >>> print(render(Bundle(items=(), left_out=(), budget=100, used=0), "Summarise."))
        Summarise.
    """
    if not bundle.items:
        return prompt
    items = [_fields(item) for item in bundle.items]
    return render_template(template or DEFAULT_LAYOUT, {"items": items, "prompt": prompt, "note": bundle.note})


def _fields(item: Included) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "source": item.source,
        "title": _title(item),
        "text": item.text,
        "tokens": item.tokens,
        "shortened": item.shortened,
        "pinned": item.pinned,
        "reason": item.reason,
    }


def _title(item: Included) -> str:
    """``Conventions`` for the index; else the id without its prefix (a document's file name)."""
    if item.kind == "index":
        return "Conventions"
    prefix, _, name = item.id.partition(":")
    if not name:
        return item.id
    return name.rpartition("/")[2] if prefix == "doc" else name
