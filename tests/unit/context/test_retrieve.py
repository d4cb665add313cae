"""Retrieval: TF-IDF and embedding cosine ranking, top k, and the per-process index cache."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import taskmark.context._retrieve as retrieve
from taskmark.context import Candidate, DocumentIndex, EmbeddingIndex, index_for

DOCS = [
    Candidate("doc:bread.md", "document", "bread.md", "Sourdough bread needs a starter, flour and water. Bake it hot."),
    Candidate("doc:chess.md", "document", "chess.md", "The Sicilian defence is a chess opening for black."),
    Candidate(
        "doc:tides.md",
        "document",
        "tides.md",
        "Tides rise twice a day: the moon pulls the sea. Spring tides follow the full moon.",
    ),
    Candidate(
        "refers:ledger/Verdict",
        "refers",
        "ledger/Verdict (run 1a2b3c4d)",
        "Verdict: the moon and tides report is sound.",
    ),
]


def test_the_relevant_document_comes_first_and_nothing_unrelated_comes() -> None:
    ranked = DocumentIndex(DOCS).rank("why do the tides follow the moon?", 5)
    assert [c.id for c in ranked] == ["doc:tides.md", "refers:ledger/Verdict"]
    assert ranked[0].score is not None and ranked[1].score is not None and 1 >= ranked[0].score > ranked[1].score > 0
    assert ranked[0].text == DOCS[2].text and DOCS[2].score is None  # copies


def test_k_is_respected_and_equal_scores_go_by_id() -> None:
    same = [Candidate(f"doc:{n}.md", "document", f"{n}.md", "tides and the moon") for n in "dcab"]
    index = DocumentIndex([*same, DOCS[0]])
    assert [c.id for c in index.rank("tides", 3)] == ["doc:a.md", "doc:b.md", "doc:c.md"]
    assert index.rank("tides", 0) == []


def test_no_documents_or_only_stop_words_rank_nothing() -> None:
    assert DocumentIndex([]).rank("tides", 5) == []
    assert DocumentIndex([Candidate("doc:a.md", "document", "a.md", "the and of")]).rank("the", 5) == []
    assert DocumentIndex(DOCS).rank("zebra quantum", 5) == []


def test_the_index_is_built_once_per_set_of_documents() -> None:
    first = index_for(DOCS)
    assert index_for(list(DOCS)) is first
    assert index_for(DOCS[:2]) is not first
    assert (
        index_for([*DOCS[:3], Candidate("refers:ledger/Verdict", "refers", "ledger/Verdict (run 9)", DOCS[3].text)])
        is not first
    )


def test_calls_asking_at_once_for_the_same_index_build_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    class Counted(DocumentIndex):
        def __init__(self, candidates: list[Candidate]) -> None:
            built.append(len(candidates))
            time.sleep(0.05)  # long enough for every caller to miss the cache
            super().__init__(candidates)

    monkeypatch.setattr(retrieve, "DocumentIndex", Counted)
    docs = [Candidate(f"doc:{n}.md", "document", f"{n}.md", f"note {n} on the tides") for n in range(5)]
    start = threading.Barrier(8)

    def ask(_: int) -> object:
        start.wait()
        return index_for(docs)

    with ThreadPoolExecutor(8) as pool:
        indexes = list(pool.map(ask, range(8)))
    assert built == [5] and all(i is indexes[0] for i in indexes)


# Nothing in these shares a term with the question but its meaning: TF-IDF cannot find it.
PARAPHRASED = [
    Candidate(
        "doc:car.md", "document", "car.md", "An automobile engine burns petrol; fill the tank before a long drive."
    ),
    Candidate("doc:bread.md", "document", "bread.md", DOCS[0].text),
    Candidate("doc:chess.md", "document", "chess.md", DOCS[1].text),
]
QUESTION = "What fuel does my vehicle need?"


def test_embeddings_find_by_meaning_what_tfidf_cannot() -> None:
    assert DocumentIndex(PARAPHRASED).rank(QUESTION, 1) == []
    ranked = EmbeddingIndex(PARAPHRASED).rank(QUESTION, 2)
    assert [c.id for c in ranked][:1] == ["doc:car.md"]
    assert ranked[0].score is not None and 1 >= ranked[0].score > 0.3
    assert len(ranked) <= 2 and all(c.score is not None and c.score > 0 for c in ranked)


def test_embedding_ranks_are_deterministic_and_ties_go_by_id() -> None:
    same = [Candidate(f"doc:{n}.md", "document", f"{n}.md", "The moon pulls the tides.") for n in "cab"]
    index = EmbeddingIndex([*same, *PARAPHRASED])
    assert [c.id for c in index.rank("tides and the moon", 3)] == ["doc:a.md", "doc:b.md", "doc:c.md"]
    assert index.rank(QUESTION, 3) == EmbeddingIndex([*same, *PARAPHRASED]).rank(QUESTION, 3)
    assert EmbeddingIndex([]).rank(QUESTION, 3) == [] and index.rank(QUESTION, 0) == []


def test_each_method_has_its_own_index() -> None:
    tfidf, embeddings = index_for(PARAPHRASED), index_for(PARAPHRASED, "embeddings")
    assert isinstance(tfidf, DocumentIndex) and isinstance(embeddings, EmbeddingIndex)
    assert index_for(list(PARAPHRASED), "embeddings") is embeddings and index_for(PARAPHRASED, "tfidf") is tfidf
