"""Context assembly: what an LLM call is given besides its prompt, within a token budget.

For each call, the caller gathers candidate items (the index document, outputs of earlier
phases, documents, referred outputs), optionally ranks documents against the prompt
(:func:`index_for`), fills the budget tier by tier (:func:`assemble`) and renders the bundle
before the prompt (:func:`render`). A :class:`Bundle` records what went in, what was left out
and why, and has a content hash, so a call's context can be stored and shown.

Pure: no Prefect, no litellm, no I/O. The model's tokenizer comes in as a ``count`` function.
scikit-learn, or the embedding model of the ``embeddings`` extra, is imported only when a
retrieval index is built.
"""

from __future__ import annotations

from taskmark.context._assemble import SHORT_FORM_TOKENS, assemble
from taskmark.context._items import Bundle, Candidate, Choice, Included, Kind, LeftOut
from taskmark.context._render import DEFAULT_LAYOUT, render
from taskmark.context._retrieve import DocumentIndex, EmbeddingIndex, index_for
from taskmark.context._shorten import shorten
from taskmark.context._snapshot import SNAPSHOT_TAG, snapshot_key, snapshot_tag

__all__ = [
    "DEFAULT_LAYOUT",
    "SHORT_FORM_TOKENS",
    "SNAPSHOT_TAG",
    "Bundle",
    "Candidate",
    "Choice",
    "DocumentIndex",
    "EmbeddingIndex",
    "Included",
    "Kind",
    "LeftOut",
    "assemble",
    "index_for",
    "render",
    "shorten",
    "snapshot_key",
    "snapshot_tag",
]
