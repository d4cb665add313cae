"""Rendering a bundle before the prompt: the default layout and a custom one."""

from __future__ import annotations

import json

import pytest
from jinja2 import TemplateError

from taskmark.context import Bundle, Candidate, Choice, assemble, render


def words(text: str) -> int:
    return len(text.split())


CANDIDATES = [
    Candidate("index", "index", "definitions/docs/index.md", "Cite sources.\n"),
    Candidate(
        "phase:Question Classification",
        "requires",
        "phase Question Classification",
        json.dumps({"kind": "macro"}, indent=1),
    ),
    Candidate("doc:docs/fed-minutes.md", "document", "definitions/docs/fed-minutes.md", "Rates held. " * 40),
]


def test_the_default_layout_puts_each_item_under_a_heading_before_the_task() -> None:
    bundle = assemble(CANDIDATES, budget=60, count=words)
    shortened = bundle.items[2].text
    assert render(bundle, "Classify the question.") == (
        "## Context\n\n"
        "### Conventions (index · definitions/docs/index.md)\nCite sources.\n\n"
        '### Question Classification (requires · phase Question Classification)\n{\n "kind": "macro"\n}\n\n'
        f"### fed-minutes.md (document · definitions/docs/fed-minutes.md) — shortened\n{shortened.strip()}\n\n"
        "## Task\n\nClassify the question."
    )


def test_an_empty_bundle_leaves_the_prompt_as_it_is() -> None:
    assert (
        render(Bundle(items=(), left_out=(), budget=10, used=0), "Just this. {{ not a template }}")
        == "Just this. {{ not a template }}"
    )


def test_a_custom_template_sees_items_prompt_and_note() -> None:
    bundle = assemble(
        CANDIDATES[:2],
        budget=60,
        count=words,
        choice=Choice(pin=("phase:Question Classification",), note="macro matters"),
    )
    template = "{% for i in items %}[{{ i.id }}|{{ i.kind }}|{{ i.tokens }}|{{ i.pinned }}|{{ i.shortened }}]{% endfor %} {{ note }}: {{ prompt }}"
    assert (
        render(bundle, "Go.", template)
        == "[index|index|2|False|None][phase:Question Classification|requires|4|True|None] macro matters: Go."
    )


def test_a_template_reading_an_unknown_name_fails() -> None:
    bundle = assemble(CANDIDATES[:1], budget=60, count=words)
    with pytest.raises(TemplateError, match="'nope' is undefined"):
        render(bundle, "Go.", "{{ nope }}")
