"""Fill a token budget with context candidates, tier by tier.

The rules:

- **Tiers**, in priority order: 0 ``index`` (the index document: global conventions), 1
  ``requires`` (outputs of the phases the phase depends on), 2 ``phase`` (the run's other
  completed phases, each in short form: cut to at most ``SHORT_FORM_TOKENS`` tokens first), 3
  ``document`` and ``refers`` (documents and referred outputs, one tier), 4 pinned (whatever a
  person pinned, whatever its kind).
- **Deterministic**: the same candidates, budget and choice give the same bundle and hash,
  whatever the order of the candidates. Within a tier, ranked candidates come first, by score
  descending; ties and unranked candidates by id. Of candidates with the same id, the first in
  that order is kept; the others are left out as duplicates.
- **Excluded** ids go first, whatever their tier (the index too). An id that is both pinned and
  excluded is excluded.
- **The index** is always included first and whole, even over the budget: its tokens count
  in ``used``, which may exceed ``budget`` because of the index and only because of it.
  Pinning the index changes nothing: it stays first.
- **Pinned** items are moved to tier 4 and placed last, in pin order, but are served before
  tiers 1–3: what the index leaves is reserved for them first, so no pin gives way to
  lower-priority items. Pinned outputs of phases are taken whole, not in short form. When the
  pins alone do not fit, they share what is left (each gets its size or an equal share of the
  rest, whichever is smaller) and are shortened to their shares; if a share is under
  ``min_item_tokens``, the last pin is left out and the rest share again.
- **Tiers 1–3** then fill what the pins leave, greedily in order: an item that fits goes in
  whole; a larger one is shortened to what is left if that is at least ``min_item_tokens``,
  else left out ("budget exhausted"); filling goes on, since a smaller later item may fit.
- **The budget holds**: the tokens of the items other than the index never add up to more
  than ``budget`` minus the index's tokens (or 0).
- Shortening is extractive (:func:`taskmark.context.shorten`) and checked with ``count``.
  Each distinct text is counted once per call of :func:`assemble`.
- Ids a person named that match no candidate are listed as left out, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from taskmark.context._items import PINNED_TIER, TIERS, Bundle, Candidate, Choice, Included, Kind, LeftOut
from taskmark.context._shorten import shorten

__all__ = ["SHORT_FORM_TOKENS", "assemble"]

SHORT_FORM_TOKENS = 200
"""The most tokens of another phase's output an item of tier 2 (``phase``) carries."""

_REASONS: dict[str, str] = {
    "index": "index: always first, in full",
    "requires": "required by dependsOn",
    "phase": "completed phase of this run",
    "document": "document of the phase",
    "refers": "referred to by refers:",
}


def assemble(
    candidates: Sequence[Candidate],
    *,
    budget: int,
    count: Callable[[str], int],
    choice: Choice = Choice(),  # noqa: B008 - a frozen dataclass, safe to share
    min_item_tokens: int = 32,
) -> Bundle:
    """Choose and fit the context of one LLM call (the rules are in the module's docstring).

    Args:
        candidates: Everything the call may get, in any order.
        budget: Tokens the context may take.
        count: The model's token counter.
        choice: What a person pinned and excluded, and their note.
        min_item_tokens: The fewest tokens worth shortening an item to.

    Returns:
        The bundle: included items in tier order, and what was left out and why.

    Example:
        >>> words = lambda s: len(s.split())
        >>> bundle = assemble([Candidate("index", "index", "index.md", "Be brief.")], budget=100, count=words)
        >>> [(i.id, i.tokens, i.reason) for i in bundle.items]
        [('index', 2, 'index: always first, in full')]
    """
    return _Assembly(count, choice, min_item_tokens).run(candidates, budget)


@dataclass
class _Assembly:
    count: Callable[[str], int]
    choice: Choice
    min_item_tokens: int
    left_out: list[LeftOut] = field(default_factory=list)
    _counted: dict[str, int] = field(default_factory=dict)

    def tokens(self, text: str) -> int:
        if text not in self._counted:
            self._counted[text] = self.count(text)
        return self._counted[text]

    def leave(self, candidate: Candidate, tier: int, reason: str) -> None:
        self.left_out.append(
            LeftOut(candidate.id, candidate.kind, candidate.source, tier, self.tokens(candidate.text), reason)
        )

    def run(self, candidates: Sequence[Candidate], budget: int) -> Bundle:
        by_id: dict[str, Candidate] = {}
        for c in sorted(candidates, key=_order):
            if c.id in by_id:
                self.leave(c, TIERS[c.kind], "duplicate id")
            else:
                by_id[c.id] = c
        ranks = _ranks(by_id.values())
        pins = dict.fromkeys(self.choice.pin)
        for id_ in dict.fromkeys(self.choice.exclude):
            if id_ in by_id:
                c = by_id.pop(id_)
                self.leave(
                    c, TIERS[c.kind], "excluded by a person" + (", which overrides its pin" if id_ in pins else "")
                )
            else:
                kind = _kind_of(id_)
                self.left_out.append(LeftOut(id_, kind, id_, TIERS[kind], 0, "excluded, but no candidate has this id"))
        for id_ in pins:
            if id_ not in by_id and id_ not in self.choice.exclude:
                self.left_out.append(
                    LeftOut(id_, _kind_of(id_), id_, PINNED_TIER, 0, "pinned, but no candidate has this id")
                )

        index = [self.whole(c, 0, c.id in pins, _REASONS["index"]) for c in by_id.values() if c.kind == "index"]
        room = max(0, budget - sum(i.tokens for i in index))
        pinned = self.fit_pins([by_id[p] for p in pins if p in by_id and by_id[p].kind != "index"], room)
        room -= sum(i.tokens for i in pinned)
        rest: list[Included] = []
        for c in by_id.values():
            if c.kind == "index" or c.id in pins:
                continue
            reason = _REASONS[c.kind] if c.id not in ranks else f"retrieved: {ranks[c.id]}"
            item = self.fit(c, TIERS[c.kind], room, SHORT_FORM_TOKENS if c.kind == "phase" else math.inf, reason)
            if item is not None:
                rest.append(item)
                room -= item.tokens
        items = (*index, *rest, *pinned)
        return Bundle(
            items=items,
            left_out=tuple(self.left_out),
            budget=budget,
            used=sum(i.tokens for i in items),
            note=self.choice.note,
        )

    def whole(self, c: Candidate, tier: int, pinned: bool, reason: str) -> Included:
        size = self.tokens(c.text)
        return Included(c.id, c.kind, c.source, tier, pinned, c.text, size, size, None, reason)

    def fit_pins(self, pins: list[Candidate], room: int) -> list[Included]:
        """The pinned items within ``room``: whole if they all fit, else sharing it."""
        sizes = [self.tokens(c.text) for c in pins]
        shares = _share(sizes, room)
        while pins and any(share < min(size, self.min_item_tokens) for share, size in zip(shares, sizes, strict=False)):
            self.leave(
                pins.pop(),
                PINNED_TIER,
                f"pinned, but {room} tokens are too few for {len(pins) + 1} pins of at least {self.min_item_tokens} tokens; the last pin gives way",
            )
            sizes.pop()
            shares = _share(sizes, room)
        fitted = (
            self.fit(c, PINNED_TIER, share, math.inf, "pinned by a person", pinned=True)
            for c, share in zip(pins, shares, strict=False)
        )
        return [item for item in fitted if item is not None]

    def fit(
        self, c: Candidate, tier: int, room: int, cap: float, reason: str, *, pinned: bool = False
    ) -> Included | None:
        """``c`` whole if it fits in ``room`` and ``cap``, else shortened to them, else None
        (and listed as left out)."""
        size = self.tokens(c.text)
        allowed = int(min(room, cap))
        if size <= allowed:
            return self.whole(c, tier, pinned, reason)
        if size > room and room < self.min_item_tokens:
            self.leave(c, tier, f"budget exhausted ({room} tokens left)")
            return None
        text = shorten(c.text, allowed, self.tokens)
        if not text:
            self.leave(c, tier, f"cannot be shortened to {allowed} tokens")
            return None
        n = self.tokens(text)
        why = (
            f"short form, from {size} to {n} tokens"
            if allowed == cap
            else f"shortened from {size} to {n} tokens: only {allowed} left"
        )
        return Included(c.id, c.kind, c.source, tier, pinned, text, n, size, "extract", f"{reason}; {why}")


def _order(c: Candidate) -> tuple[int, bool, float, str, str, str, str]:
    """Tier, then ranked before unranked, by score descending, then by id (kind, source and
    text settle duplicate ids)."""
    return (TIERS[c.kind], c.score is None, -(c.score or 0.0), c.id, c.kind, c.source, c.text)


def _ranks(candidates: Iterable[Candidate]) -> dict[str, str]:
    """``rank R of N (score S)`` of each ranked candidate, among the ranked ones of its tier."""
    ranked: dict[int, list[Candidate]] = {}
    for c in candidates:
        if c.score is not None:
            ranked.setdefault(TIERS[c.kind], []).append(c)
    return {
        c.id: f"rank {n} of {len(tier)} (score {c.score:.2f})"
        for tier in ranked.values()
        for n, c in enumerate(tier, 1)
    }


def _share(sizes: list[int], room: int) -> list[int]:
    """Each size, or an equal share of what the smaller ones leave of ``room``, whichever is
    smaller (water-filling)."""
    shares = [0] * len(sizes)
    left = room
    for n, i in enumerate(sorted(range(len(sizes)), key=lambda i: (sizes[i], i))):
        shares[i] = min(sizes[i], left // (len(sizes) - n))
        left -= shares[i]
    return shares


def _kind_of(id_: str) -> Kind:
    """The kind an id's prefix names, for ids no candidate has."""
    prefix = id_.partition(":")[0]
    kinds: dict[str, Kind] = {"index": "index", "phase": "phase", "doc": "document", "refers": "refers"}
    return kinds.get(prefix, "document")
