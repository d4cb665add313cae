"""Validating YAML values against the spec models, with every error at its line."""

from __future__ import annotations

from typing import Any, TypeVar, get_origin

from pydantic import ValidationError

from taskmark.definition._source import KeyPath, Reporter, Spans, did_you_mean
from taskmark.definition._spec import Spec

__all__ = ["validate_spec"]

S = TypeVar("S", bound=Spec)


def _aliases(model: type[Spec]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(model: type[Spec], loc: KeyPath) -> type[Spec] | None:
    """The spec model that the value at ``loc`` is validated against (for key suggestions)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, Spec)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        annotation = field.annotation
        args = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)]
        specs = [a for a in [annotation, *args] if isinstance(a, type) and issubclass(a, Spec)]
        current = specs[0] if specs else None
    return current if isinstance(current, type) and issubclass(current, Spec) else None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_spec(model: type[S], value: object, spans: Spans, reporter: Reporter, what: str) -> S | None:
    """Validate a YAML value against a spec model and report each error at its place.

    Args:
        model: The spec model.
        value: The plain value loaded from YAML.
        spans: Where its parts are.
        reporter: Where errors go.
        what: How to name the value in messages ("metadata", "phase options").

    Returns:
        The model, with the location of it and of its nested models set. When the value has
        errors, they are reported and the model is built from the rest of it (see
        :func:`_salvage`); None when even that fails.
    """
    if not isinstance(value, dict):
        found = "nothing" if value is None else f"{type(value).__name__} {_show(value)}"
        reporter.error(spans.root, f"{what}: expected a mapping of `key: value` lines; found {found}")
        return None
    try:
        result = model.model_validate(value)
    except ValidationError as exc:
        locs: list[KeyPath] = []
        for error in exc.errors(include_url=False):
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            locs.append(loc)
            dotted = ".".join(str(p) for p in loc)
            kind = error["type"]
            if kind == "extra_forbidden":
                parent = _model_at(model, loc[:-1])
                choices = _aliases(parent) if parent else []
                key = str(loc[-1])
                reporter.error(
                    spans.key(loc),
                    f"unknown key '{dotted}' in {what}"
                    + (f"; expected one of {', '.join(choices)}" if choices else "")
                    + did_you_mean(key, choices),
                )
            elif kind == "missing":
                reporter.error(spans.value(loc[:-1]), f"{what}: missing required key '{dotted}'")
            else:
                # A validator's own ValueError is its message as written; pydantic's wording around it is not ours.
                raised = error.get("ctx", {}).get("error") if kind == "value_error" else None
                message = str(raised) if isinstance(raised, ValueError) else error["msg"]
                found = "" if kind == "value_error" else f"; found {_show(error.get('input'))}"
                message = message[:1].lower() + message[1:]
                prefix = f"{dotted}: " if dotted else f"{what}: "
                reporter.error(spans.value(loc), f"{prefix}{message}{found}")
        salvaged = _salvage(model, value, locs)
        if salvaged is None:
            return None
        result = salvaged
    _place(result, (), spans)
    return result


def _salvage(model: type[S], value: dict[Any, Any], locs: list[KeyPath]) -> S | None:
    """The model of ``value`` without its keys in error (only the entries in error of a mapping
    such as `requirements`), or None when that is not valid either (a required key is wrong).

    The errors are reported already; what is left is enough for the checks that come after
    (a phase with a misspelt option still has its `dependsOn` and its outputs), so that one
    mistake is reported once, not again by every check that would have needed the part.
    """
    pruned = dict(value)
    for loc in locs:
        if not loc:
            return None
        key = loc[0]
        field = next((f for n, f in model.model_fields.items() if key in (n, f.alias)), None)
        entries = pruned.get(key)
        if len(loc) > 1 and field is not None and get_origin(field.annotation) is dict and isinstance(entries, dict):
            pruned[key] = {k: v for k, v in entries.items() if k != loc[1]}
        else:
            pruned.pop(key, None)
    try:
        return model.model_validate(pruned)
    except ValidationError:
        return None


def _place(node: object, path: KeyPath, spans: Spans) -> None:
    """Set the location of every spec model inside ``node``."""
    if isinstance(node, Spec):
        node._location = spans.value(path)
        for name, field in type(node).model_fields.items():
            _place(getattr(node, name), (*path, field.alias or name), spans)
    elif isinstance(node, dict):
        for key, item in node.items():
            if isinstance(item, Spec):
                _place(item, (*path, key), spans)
