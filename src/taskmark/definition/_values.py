"""Whether a value fits a JSON Schema of a requirement, said in the words of the definition format."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["typed_value", "value_problem"]

_SAID = {
    "minLength": ("expected at least {}", "character"),
    "maxLength": ("expected at most {}", "character"),
    "minimum": ("expected at least {}", ""),
    "maximum": ("expected at most {}", ""),
    "minItems": ("expected at least {}", "item"),
    "maxItems": ("expected at most {}", "item"),
    "type": ("expected {}", ""),
}


def _where(error: Any, name: str) -> str:  # noqa: ANN401 - a jsonschema ValidationError
    path = (name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)).lstrip(".")
    return f"{path}: " if path else ""


def _show(value: object, as_json: bool) -> str:
    text = json.dumps(value) if as_json else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def value_problem(schema: Mapping[str, Any], value: object, name: str = "", *, as_json: bool = False) -> str | None:
    """Why ``value`` does not fit ``schema`` (its first problem, where it is inside the value), or None.

    Args:
        schema: A JSON Schema.
        value: The value.
        name: What to call the value where the message says where the problem is (``tags[1]: ...``).
        as_json: Show values as JSON (``"dry"``, ``true``), for a value read from JSON; else as Python.

    Example:
        >>> value_problem({"type": "string", "minLength": 3}, "ab")
        "expected at least 3 characters; found 'ab'"
    """
    # jsonschema (a Prefect dependency) takes ~0.2 s to import: only when a value is checked.
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    error = best_match(Draft202012Validator(dict(schema)).iter_errors(value))
    if error is None:
        return None
    keyword = str(error.validator)
    if keyword == "enum":
        said = "expected one of " + ", ".join(_show(v, as_json) for v in error.validator_value)
    elif keyword in _SAID:
        words, noun = _SAID[keyword]
        said = words.format(error.validator_value)
        if noun:
            said += f" {noun}" + ("" if error.validator_value == 1 else "s")
    else:  # required and additional keys of an object: jsonschema says it well
        return _where(error, name) + str(error.message)
    return f"{_where(error, name)}{said}; found {_show(error.instance, as_json)}"


def typed_value(schema: Mapping[str, Any], raw: str, name: str) -> Any:  # noqa: ANN401 - any value
    """``raw``, a value written as text (``-p rounds=3``, ``resume --set score=4``), as ``schema`` types it:
    a string (or one of an enum of strings) as given, anything else as JSON.

    Raises:
        ValueError: ``raw`` is not JSON where JSON is needed (the message names ``name``).
    """
    enum = schema.get("enum")
    if schema.get("type") == "string" or (enum and all(isinstance(v, str) for v in enum)):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"{name}: expected {schema.get('type', 'a JSON value')} (as JSON); found {raw!r}") from None
