"""The deployment's typed form (its parameter schema, as the Prefect server stores and the UI
draws it): requirements carry their bounds, and a short-form requirement has no description."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect.client.orchestration import get_client

from taskmark.deploy import to_deployment

FORM = """# Form

```yaml
name: requirement-form
requirements:
  topic: string
  audience: {type: string, enum: [analysts, traders], default: analysts, description: Who reads it}
  depth: {type: integer, minimum: 1, maximum: 5, default: 2}
  title: {type: string, minLength: 3, maxLength: 40, default: Notes}
  tags: {type: array, items: {type: string, maxLength: 8}, minItems: 1, maxItems: 3, default: [news]}
```

## Phase: Write

### Steps
- agent: a - Write about {{ topic }}
"""


async def test_the_deployment_form_has_the_bounds_and_no_type_for_a_description(
    prefect_harness: None, write: Callable[[str, str], Path]
) -> None:
    path = write("form", FORM)
    deployment_id = await to_deployment(path).apply()
    async with get_client() as client:
        stored = await client.read_deployment(deployment_id)
    fields = stored.parameter_openapi_schema["properties"]
    shown = {name: {k: v for k, v in field.items() if k not in ("position", "title")} for name, field in fields.items()}
    assert shown == {
        "topic": {"type": "string"},
        "audience": {
            "type": "string",
            "enum": ["analysts", "traders"],
            "default": "analysts",
            "description": "Who reads it",
        },
        "depth": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
        "title": {"type": "string", "minLength": 3, "maxLength": 40, "default": "Notes"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "maxLength": 8},
            "minItems": 1,
            "maxItems": 3,
            "default": ["news"],
        },
    }
    assert stored.parameter_openapi_schema["required"] == ["topic"]
