"""Settings that are not secret, read from ``TASKMARK_*`` environment variables.

Secrets (API keys) live only in Prefect Blocks; ``TASKMARK_LLM_API_KEY`` is read by the
providers layer as a secret and never stored here.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """taskmark's non-secret settings."""

    model_config = SettingsConfigDict(env_prefix="TASKMARK_", extra="ignore")

    llm_model: str | None = Field(default=None, description="Model override for every call.")
    llm_api_base: str | None = Field(default=None, description="API base override for every call.")
