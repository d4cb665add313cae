"""Structured output: ask for JSON matching a schema, parse the reply, and repair it once.

Where the endpoint supports it the request carries ``response_format`` (``json_schema``),
which servers such as llama.cpp and vLLM enforce with a grammar; otherwise the schema is
put in the prompt. A reply that does not parse gets exactly one repair request, counted as
parsing rather than as a retry; a second failure is an error quoting the start of the reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ._types import Completion, Message, Schema

__all__ = [
    "OutputMode",
    "ParseFailure",
    "parse_reply",
    "repair_messages",
    "response_format",
    "schema_json",
    "with_instruction",
]

OutputMode = Literal["auto", "json_schema", "json_object", "prompt"]

QUOTE_LIMIT = 120
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")


class ParseFailure(ValueError):
    """The reply is not JSON matching the schema; ``reason`` says why.

    ``problems`` is set when the reply is JSON that breaks the schema: which fields, and why.
    """

    def __init__(self, reason: str, *, problems: str | None = None) -> None:
        self.reason = reason
        self.problems = problems
        super().__init__(reason)


def schema_json(schema: Schema) -> dict[str, Any]:
    """The JSON Schema of ``schema`` (a pydantic model class or a JSON Schema mapping)."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    return dict(schema)


def schema_name(schema: Schema) -> str:
    """A name for the schema as OpenAI's ``json_schema.name`` allows (``[a-zA-Z0-9_-]{1,64}``)."""
    if isinstance(schema, type):
        raw = schema.__name__
    else:
        raw = str(schema.get("title") or "reply")
    return _NAME_CHARS.sub("_", raw)[:64] or "reply"


def response_format(schema: Schema, mode: OutputMode) -> dict[str, Any] | None:
    """The ``response_format`` request parameter for ``mode``, or None to use the prompt."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": schema_name(schema), "schema": schema_json(schema)},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def instruction(schema: Schema) -> str:
    """The text that asks for JSON when the endpoint cannot be told through the API."""
    return (
        "Reply with only one JSON value that matches this JSON Schema: no prose, no code "
        "fences.\nJSON Schema: " + json.dumps(schema_json(schema), separators=(",", ":"))
    )


def with_instruction(messages: Sequence[Message], schema: Schema) -> list[Message]:
    """``messages`` with the JSON instruction added to (or as) the system message."""
    out = [Message(role=m["role"], content=m["content"]) for m in messages]
    text = instruction(schema)
    if out and out[0]["role"] == "system":
        out[0] = Message(role="system", content=out[0]["content"] + "\n\n" + text)
    else:
        out.insert(0, Message(role="system", content=text))
    return out


def parse_reply(text: str, schema: Schema) -> Any:  # noqa: ANN401
    """Decode and validate a reply.

    Code fences are tolerated, since many models add them even when told not to.

    Args:
        text: The assistant's reply.
        schema: A pydantic model class (an instance is returned) or a JSON Schema (the
            decoded JSON is returned after validation).

    Returns:
        The parsed value.

    Raises:
        ParseFailure: The reply is not JSON, or does not match the schema.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate_json(body)
        except ValidationError as exc:
            raise _failure(exc) from None
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseFailure(f"not JSON ({exc.msg} at position {exc.pos})") from None
    _validate_json_schema(value, schema)
    return value


def _failure(exc: ValidationError) -> ParseFailure:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return ParseFailure(f"not JSON ({errors[0]['msg']})")
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errors[:3]]
    return _mismatch("; ".join(parts))


def _mismatch(problems: str) -> ParseFailure:
    return ParseFailure("does not match the schema: " + problems, problems=problems)


def _validate_json_schema(value: Any, schema: Mapping[str, Any]) -> None:  # noqa: ANN401
    # jsonschema comes with Prefect; imported here so `import taskmark.blocks` stays light.
    import jsonschema  # type: ignore[import-untyped]

    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        parts = [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors[:3]]
        raise _mismatch("; ".join(parts))


def repair_messages(messages: Sequence[Message], reply: Completion, reason: str, schema: Schema) -> list[Message]:
    """The conversation for the one repair attempt.

    A complete reply is quoted back with what was wrong with it. A reply cut off at the
    token limit is not: it is usually a small model repeating itself, and shown its own
    loop it repeats it again; it is asked for afresh, and for less.
    """
    wanted = "only the JSON value, matching this JSON Schema: " + json.dumps(schema_json(schema), separators=(",", ":"))
    if reply.truncated:
        return [
            *messages,
            Message(
                role="user",
                content=(
                    "Your last answer ran past the length limit before its JSON ended. "
                    f"Answer again, more briefly, with {wanted}"
                ),
            ),
        ]
    return [
        *messages,
        Message(role="assistant", content=reply.text),
        Message(role="user", content=f"That reply cannot be used ({reason}). Answer again with {wanted}"),
    ]


def quote(reply: str) -> str:
    """The start of a reply, for an error message."""
    flat = " ".join(reply.split())
    return repr(flat if len(flat) <= QUOTE_LIMIT else flat[: QUOTE_LIMIT - 1] + "…")
