"""What goes into a context bundle: candidates, a person's choice, and the bundle itself.

Plain frozen dataclasses: a :class:`Bundle` is a snapshot of what one LLM call was given, so
it never changes once made (:meth:`Bundle.with_text` returns a new one), and it round-trips
through plain JSON (:meth:`Bundle.to_json`, :meth:`Bundle.from_json`) to be stored beside the
call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = ["PINNED_TIER", "TIERS", "Bundle", "Candidate", "Choice", "Included", "Kind", "LeftOut", "Shortened"]

Kind = Literal["index", "requires", "phase", "document", "refers"]
"""Where a candidate comes from; its kind sets its tier."""
Shortened = Literal["extract", "llm"]
"""How an item was cut: by extracting sentences, or by a model's summary."""

TIERS: dict[str, int] = {"index": 0, "requires": 1, "phase": 2, "document": 3, "refers": 3}
"""The tier of each kind; pinned items are tier ``PINNED_TIER`` whatever their kind."""
PINNED_TIER = 4


@dataclass(frozen=True)
class Candidate:
    """A piece of text that may go into a call's context."""

    id: str
    """Stable id: ``index``, ``phase:NAME``, ``doc:PATH``, ``refers:DEFINITION/PHASE``."""
    kind: Kind
    """Where it comes from; sets its tier."""
    source: str
    """Where it comes from, for people: a path, ``phase Verdict of run 1a2b…``."""
    text: str
    """The whole text."""
    score: float | None = None
    """The retrieval score, when it was ranked against the prompt."""


@dataclass(frozen=True)
class Choice:
    """What a person decided about a phase's context."""

    pin: tuple[str, ...] = ()
    """Ids every call must get, in order of importance."""
    exclude: tuple[str, ...] = ()
    """Ids no call may get."""
    note: str = ""
    """Why, in the person's words; kept with the bundle."""


@dataclass(frozen=True)
class Included:
    """An item of a bundle."""

    id: str
    """The candidate's id."""
    kind: Kind
    """The candidate's kind."""
    source: str
    """The candidate's source."""
    tier: int
    """0 index, 1 requires, 2 phase, 3 document and refers, 4 pinned."""
    pinned: bool
    """Whether a person pinned it."""
    text: str
    """The text as included, maybe shortened."""
    tokens: int
    """Tokens of ``text``."""
    original_tokens: int
    """Tokens of the candidate's whole text."""
    shortened: Shortened | None
    """How it was cut, if it was."""
    reason: str
    """Why it is there, for people."""


@dataclass(frozen=True)
class LeftOut:
    """A candidate (or an id a person named) that is not in the bundle."""

    id: str
    """The id."""
    kind: Kind
    """The candidate's kind (for an unknown id, the kind its prefix names)."""
    source: str
    """The candidate's source (for an unknown id, the id)."""
    tier: int
    """The tier it would have had."""
    tokens: int
    """Tokens of its whole text (0 when there is no text)."""
    reason: str
    """Why it is left out, for people."""


@dataclass(frozen=True)
class Bundle:
    """The context one LLM call gets: what is in it, what is not and why, and its size."""

    items: tuple[Included, ...]
    """In tier order, then stable order."""
    left_out: tuple[LeftOut, ...]
    """Candidates and named ids that are not in ``items``."""
    budget: int
    """The token budget it was assembled for."""
    used: int
    """Sum of the items' tokens; above ``budget`` only when the index alone is."""
    note: str = ""
    """The person's note from the :class:`Choice`."""

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of the items' ids, kinds, sources and texts, in order: the content
        address of what the call was given."""
        canonical = [{"id": i.id, "kind": i.kind, "source": i.source, "text": i.text} for i in self.items]
        data = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    def with_text(self, item_id: str, text: str, tokens: int, how: Literal["llm"]) -> Bundle:
        """The same bundle with one item's text replaced (by a model's summary).

        Args:
            item_id: The item to change.
            text: Its new text.
            tokens: Tokens of ``text``; at most the item's current tokens, so the budget holds.
            how: How the new text was made.

        Raises:
            KeyError: No item has ``item_id``.
            ValueError: ``tokens`` is more than the item has now.
        """
        items = list(self.items)
        at = next((n for n, item in enumerate(items) if item.id == item_id), None)
        if at is None:
            raise KeyError(item_id)
        old = items[at]
        if tokens > old.tokens:
            raise ValueError(f"item {item_id!r} has {old.tokens} tokens; its new text has {tokens}")
        items[at] = replace(
            old,
            text=text,
            tokens=tokens,
            shortened=how,
            reason=f"{old.reason}; summarised by the model to {tokens} tokens",
        )
        return replace(self, items=tuple(items), used=self.used - old.tokens + tokens)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: items, left_out, budget, used, note and hash."""
        return {
            "items": [asdict(i) for i in self.items],
            "left_out": [asdict(o) for o in self.left_out],
            "budget": self.budget,
            "used": self.used,
            "note": self.note,
            "hash": self.hash,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bundle:
        """The bundle :meth:`to_json` gave (its ``hash`` is recomputed, not read)."""
        return cls(
            items=tuple(Included(**i) for i in data["items"]),
            left_out=tuple(LeftOut(**o) for o in data["left_out"]),
            budget=data["budget"],
            used=data["used"],
            note=data.get("note", ""),
        )
