"""Bundles: JSON round trip, content hash, a summary in place of an item's text."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from taskmark.context import Bundle, Candidate, Choice, assemble


def words(text: str) -> int:
    return len(text.split())


def bundle() -> Bundle:
    candidates = [
        Candidate("index", "index", "index.md", "Cite sources."),
        Candidate("doc:a.md", "document", "a.md", "Tides rise. " * 100, score=0.4),
        Candidate("doc:b.md", "document", "b.md", "Bread."),
    ]
    return assemble(
        candidates, budget=100, count=words, choice=Choice(pin=("doc:b.md",), exclude=("doc:c.md",), note="b first")
    )


def test_json_round_trip() -> None:
    original = bundle()
    data = json.loads(json.dumps(original.to_json()))
    assert data["hash"] == original.hash and data["note"] == "b first"
    assert Bundle.from_json(data) == original


def test_the_hash_covers_the_items_only() -> None:
    original = bundle()
    assert len(original.hash) == 64
    assert replace(original, note="other", budget=5, left_out=()).hash == original.hash
    assert replace(original, items=original.items[::-1]).hash != original.hash


def test_with_text_replaces_one_items_text_and_changes_the_hash() -> None:
    original = bundle()
    item = original.items[1]
    assert item.id == "doc:a.md" and item.shortened == "extract"
    summarised = original.with_text("doc:a.md", "The sea rises twice daily.", 5, "llm")
    new = summarised.items[1]
    assert (new.text, new.tokens, new.shortened, new.original_tokens) == (
        "The sea rises twice daily.",
        5,
        "llm",
        item.original_tokens,
    )
    assert new.reason == f"{item.reason}; summarised by the model to 5 tokens"
    assert summarised.used == original.used - item.tokens + 5
    assert summarised.hash != original.hash and summarised.items[0] == original.items[0]
    with pytest.raises(KeyError):
        original.with_text("doc:nope.md", "x", 1, "llm")
    with pytest.raises(ValueError, match="has 1 tokens; its new text has 2"):
        original.with_text("doc:b.md", "two words", 2, "llm")
