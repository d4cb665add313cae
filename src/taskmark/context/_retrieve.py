"""Retrieval: rank documents and referred outputs against a prompt, by TF-IDF cosine.

An index is built once per set of documents (scikit-learn's ``TfidfVectorizer``: sublinear
term frequencies, English stop words, unigrams and bigrams) and kept in a small in-process
LRU, so the calls of a run share it. scikit-learn is imported only when an index is built.
Ranking a query is one sparse product with the transposed document matrix (it touches only
the postings of the query's terms) and a partial sort for the top k.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taskmark.context._items import Candidate

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DocumentIndex", "index_for"]

_CACHED = 4
_cache: OrderedDict[tuple[Candidate, ...], DocumentIndex] = OrderedDict()
_lock = threading.Lock()


class DocumentIndex:
    """A TF-IDF index over candidates, ranked by cosine similarity to a query.

    Example:
        >>> docs = [Candidate("doc:a", "document", "a.md", "The moon pulls the tides."),
        ...         Candidate("doc:b", "document", "b.md", "Sourdough needs a starter.")]
        >>> [(c.id, round(c.score, 2)) for c in DocumentIndex(docs).rank("why do tides rise", 5)]
        [('doc:a', 0.45)]
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        """Build the index.

        Args:
            candidates: The documents and referred outputs retrieval may return.
        """
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

        self.candidates = tuple(candidates)
        """What the index ranks, in the order given."""
        self._vectorizer: Any = TfidfVectorizer(sublinear_tf=True, stop_words="english", ngram_range=(1, 2))
        self._terms_by_document: Any = None
        # Each candidate's place in id order, to settle equal scores.
        by_id = sorted(range(len(self.candidates)), key=lambda i: self.candidates[i].id)
        self._id_rank = np.empty(len(self.candidates), dtype=np.int64)
        self._id_rank[by_id] = np.arange(len(self.candidates))
        try:
            matrix = self._vectorizer.fit_transform([c.text for c in self.candidates])
        except ValueError:  # no candidates, or nothing but stop words: nothing can match
            return
        self._terms_by_document = matrix.T.tocsr()

    def rank(self, query: str, k: int) -> list[Candidate]:
        """The ``k`` candidates most similar to ``query``, best first.

        Args:
            query: The text to match (the prompt).
            k: The most candidates to return.

        Returns:
            Copies of the candidates with ``score`` set to their cosine similarity; those that
            share no term with the query are not returned. Equal scores go by id.
        """
        if self._terms_by_document is None or k <= 0:
            return []
        import numpy as np

        scores: np.ndarray[Any, np.dtype[np.float64]] = (self._vectorizer.transform([query]) @ self._terms_by_document).toarray().ravel()
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            # Everything scoring at least the k-th best score, so that ties at the cut go by id.
            kth = -np.partition(-scores[hits], k - 1)[k - 1]
            hits = hits[scores[hits] >= kth]
        best = hits[np.lexsort((self._id_rank[hits], -scores[hits]))][:k]
        return [replace(self.candidates[i], score=float(scores[i])) for i in best]


def index_for(candidates: Sequence[Candidate]) -> DocumentIndex:
    """The index over ``candidates``, built once per distinct set and kept in a small LRU.

    Args:
        candidates: The documents and referred outputs; equal candidates (ids, kinds,
            sources, texts) in the same order give the same index object.
    """
    # The candidates themselves are the key: Python caches each string's hash, so a lookup
    # costs a pass over the tuple, where a digest would read every text again on every call.
    key = tuple(candidates)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    index = DocumentIndex(candidates)
    with _lock:
        _cache[key] = index
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return index
