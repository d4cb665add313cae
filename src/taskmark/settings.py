"""Settings that are not secret, read from ``TASKMARK_*`` environment variables.

Secrets (API keys) live only in Prefect Blocks; ``TASKMARK_LLM_API_KEY`` is read by the
providers layer as a secret and never stored here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """taskmark's non-secret settings."""

    model_config = SettingsConfigDict(env_prefix="TASKMARK_", extra="ignore")

    llm_model: str | None = Field(default=None, description="Model override for every call.")
    llm_api_base: str | None = Field(default=None, description="API base override for every call.")
    heartbeat_timeout_s: float = Field(
        default=90.0,
        ge=10.0,  # Prefect's floor for a proactive automation's window
        description=(
            "Seconds without a heartbeat after which a running flow run is marked Crashed on taskmark's "
            "local server (runs send one every 30 s; keep it at 60 or more)."
        ),
    )
    document_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "Folders besides each definition's own whose files `documents:` and `index:` may name "
            f"(TASKMARK_DOCUMENT_ROOTS: paths separated by {os.pathsep!r}, as in PATH)."
        ),
    )

    @field_validator("document_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        # Written like PATH; an empty entry (a stray separator) names no folder.
        return [p for p in value.split(os.pathsep) if p.strip()] if isinstance(value, str) else value
