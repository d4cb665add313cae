"""`taskmark schema`: the JSON Schema of what people write in YAML."""

from __future__ import annotations

import json

import typer
from pydantic import BaseModel

from taskmark.definition import AgentSettings, CritiqueOptions, InlineAgent, Metadata, PhaseOptions, RefineOptions

app = typer.Typer()


@app.command()
def schema() -> None:
    """Print the JSON Schema of the metadata, phase options and agent settings."""
    parts: dict[str, type[BaseModel]] = {
        "metadata": Metadata,
        "phaseOptions": PhaseOptions,
        "critiqueOptions": CritiqueOptions,
        "refineOptions": RefineOptions,
        "agentFile": AgentSettings,
        "inlineAgent": InlineAgent,
    }
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "taskmark definition format v1",
        "$defs": {name: model.model_json_schema(by_alias=True) for name, model in parts.items()},
    }
    typer.echo(json.dumps(document, indent=2))
