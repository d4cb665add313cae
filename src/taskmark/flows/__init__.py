"""The compiler: a definition becomes a Prefect flow whose phases are concurrent subflows."""

from __future__ import annotations

from taskmark.flows._compile import compile

__all__ = ["compile"]
