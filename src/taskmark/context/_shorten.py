"""Extractive shortening: the sentences that say most of what a text says, within a token budget.

No model. The text is split into sentences, one line at most each (a markdown heading is kept
whole). Each is scored by which of the text's most frequent content words it contains,
weighted by their frequency: its cosine to the centroid of the text's own term frequencies.
The first sentence is always kept; the best-scoring others are added while the estimate says
they fit; then all are put back in their original order, with `` … `` where something was
cut. The result is checked with the model's own counter and cut further while too long; when
no choice of sentences fits, the text is cut after a word (or, for one enormous word, a
character). So ``count(shorten(text, n, count)) <= n`` always.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

__all__ = ["GAP", "shorten"]

GAP = " …"
"""Marks where text was cut."""
_UNIT = re.compile(r"(?P<heading>^[ \t]{0,3}#{1,6}[ \t].*$)|\S.*?(?:[.!?](?=\s)|$)", re.M)
_WORD = re.compile(r"[a-z][a-z0-9_'-]{2,}")
_TOP_WORDS = 20
_ATTEMPTS = 3
_STOP = frozenset(
    "about above after again against all also and any are because been before being below between both but can could did "
    "does doing down during each few for from further had has have having her here hers herself him himself his how into "
    "its itself just more most much must not now off once only other our ours out over own same she should some such than "
    "that the their theirs them then there these they this those through too under until very was were what when where "
    "which while who whom why will with would you your yours".split()
)


def shorten(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """The most central sentences of ``text``, in their order, within ``max_tokens``.

    Args:
        text: The text to shorten.
        max_tokens: The most tokens the result may have.
        count: The model's token counter; called a few times (and cached by the caller).

    Returns:
        ``text`` itself when it fits; else its first sentence (with any headings above it)
        and the best-scoring others, joined in their original order with `` … `` at each
        cut; ``""`` when not even one character fits.

    Example:
        >>> words = lambda s: len(s.split())
        >>> shorten("Tides rise. Cats purr loudly at night. Tides fall.", 5, words)
        'Tides rise. … Tides fall.'
    """
    total = count(text)
    if total <= max_tokens:
        return text
    if max_tokens <= 0:
        return ""
    found = list(_UNIT.finditer(text))
    if not found:
        return ""
    units = [m.span() for m in found]
    # The first sentence, and the headings above it, are always kept.
    lead = next((n for n, m in enumerate(found) if m.group("heading") is None), len(found) - 1) + 1
    words = [len(text[a:b].split()) for a, b in units]
    per_word = total / max(1, sum(words))
    cost = [math.ceil(n * per_word) for n in words]
    scores = _scores(text, units)
    order = [*range(lead), *sorted(range(lead, len(units)), key=scores.__getitem__, reverse=True)]
    target, previous, out = max_tokens, None, text
    for _ in range(_ATTEMPTS):
        chosen, used = [], 0
        for n, i in enumerate(order):
            if n < lead or used + cost[i] <= target:
                chosen.append(i)
                used += cost[i]
        if chosen == previous:
            break
        out, previous = _join(text, units, sorted(chosen)), chosen
        size = count(out)
        if size <= max_tokens:
            return out
        target = target * max_tokens // size - 1
    return _truncate(out, max_tokens, count)


def _scores(text: str, units: list[tuple[int, int]]) -> list[float]:
    """Per sentence, the cosine of its content words to the text's most frequent ones."""
    bags = [set(_WORD.findall(text[a:b].lower())) - _STOP for a, b in units]
    frequency = Counter(w for w in _WORD.findall(text.lower()) if w not in _STOP)
    top = dict(sorted(frequency.items(), key=lambda wf: (-wf[1], wf[0]))[:_TOP_WORDS])
    return [sum(top.get(w, 0) for w in bag) / math.sqrt(len(bag)) if bag else 0.0 for bag in bags]


def _join(text: str, units: list[tuple[int, int]], chosen: list[int]) -> str:
    parts: list[str] = []
    for n, i in enumerate(chosen):
        if n:
            prev = chosen[n - 1]
            between = text[units[prev][1] : units[i][0]]
            parts.append(between if i == prev + 1 else GAP + ("\n" if "\n" in between else " "))
        parts.append(text[units[i][0] : units[i][1]])
    if chosen[-1] != len(units) - 1:
        parts.append(GAP)
    return "".join(parts)


def _truncate(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` ending at a word (else at a character) that fits with
    the gap mark after it; ``""`` if none does."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    n = _longest(len(ends), lambda k: count(text[: ends[k - 1]] + GAP) <= max_tokens)
    if n:
        return text[: ends[n - 1]] + GAP
    first = ends[0] if ends else 0
    c = _longest(first, lambda k: count(text[:k] + GAP) <= max_tokens)
    return text[:c] + GAP if c else ""


def _longest(most: int, fits: Callable[[int], bool]) -> int:
    """The largest ``k`` in ``1..most`` with ``fits(k)``, ``fits`` being monotone; 0 if none."""
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
