"""Parsing replies against a schema, and the repair conversation."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from taskmark.blocks import Completion
from taskmark.blocks._structured import (
    ParseFailure,
    parse_reply,
    quote,
    repair_messages,
    response_format,
    with_instruction,
)


class Verdict(BaseModel):
    category: str
    confidence: float


SCHEMA = {
    "type": "object",
    "properties": {"category": {"enum": ["macro", "news"]}},
    "required": ["category"],
}


def test_pydantic_schema_returns_an_instance() -> None:
    assert parse_reply('{"category": "macro", "confidence": 0.5}', Verdict) == Verdict(category="macro", confidence=0.5)


def test_code_fences_are_tolerated() -> None:
    assert parse_reply('```json\n{"category": "news"}\n```', SCHEMA) == {"category": "news"}


@pytest.mark.parametrize(
    ("reply", "schema", "reason"),
    [
        ("Sure! Here it is", SCHEMA, "not JSON (Expecting value at position 0)"),
        (
            '{"category": "sports"}',
            SCHEMA,
            "does not match the schema: category: 'sports' is not one of ['macro', 'news']",
        ),
        ("{}", SCHEMA, "does not match the schema: (root): 'category' is a required property"),
        ('{"category": "macro"}', Verdict, "does not match the schema: confidence: Field required"),
        ("nope", Verdict, "not JSON (Invalid JSON: expected ident at line 1 column 2)"),
    ],
)
def test_failures_say_why(reply: str, schema: object, reason: str) -> None:
    with pytest.raises(ParseFailure) as info:
        parse_reply(reply, schema)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_response_format_carries_the_schema() -> None:
    fmt = response_format(Verdict, "json_schema")
    assert fmt is not None
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict"
    assert fmt["json_schema"]["schema"]["required"] == ["category", "confidence"]
    assert response_format(SCHEMA, "json_object") == {"type": "json_object"}
    assert response_format(SCHEMA, "prompt") is None


def test_instruction_joins_an_existing_system_message() -> None:
    messages = with_instruction(
        [{"role": "system", "content": "You classify."}, {"role": "user", "content": "q"}], SCHEMA
    )
    assert len(messages) == 2
    assert messages[0]["content"].startswith("You classify.\n\nReply with only one JSON value")
    alone = with_instruction([{"role": "user", "content": "q"}], SCHEMA)
    assert [m["role"] for m in alone] == ["system", "user"]


def test_repair_conversation_quotes_the_bad_reply_and_the_reason() -> None:
    bad = Completion(text="bad reply", model="m")
    messages = repair_messages([{"role": "user", "content": "q"}], bad, "not JSON (x)", SCHEMA)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "bad reply"
    assert "(not JSON (x))" in messages[2]["content"]


def test_a_reply_cut_off_at_the_token_limit_is_asked_for_again_not_quoted() -> None:
    loop = Completion(text='{"answer": "1.1.1.1.1.1.1.1', model="m", truncated=True)
    messages = repair_messages([{"role": "user", "content": "q"}], loop, "not JSON (x)", SCHEMA)
    assert [m["role"] for m in messages] == ["user", "user"]
    assert "1.1.1" not in messages[1]["content"]
    assert "more briefly" in messages[1]["content"]


def test_quote_is_short_and_single_line() -> None:
    quoted = quote("line one\nline two " + "x" * 500)
    assert "\n" not in quoted
    assert len(quoted) <= 125
    assert quoted.startswith("'line one line two")
