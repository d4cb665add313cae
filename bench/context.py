"""Context assembly: retrieval index build, ranking and bundle assembly at 1,000 to 10,000 documents.

What is measured, and why this way: ``taskmark.context`` is pure, so it is timed in-process,
without Prefect or a model. The documents are synthetic but shaped like real ones: 100–400
words in sentences of 6–20 words, drawn from a 3,000-word vocabulary with Zipf-like
frequencies (a few words very common, most rare), from a fixed seed so every run sees the
same text. Queries are 8–16 words taken from random documents, as a prompt about one of them
would be. Token counts come from a word counter (cheap; a real tokenizer is counted once per
text and cached by the caller).

For each number of documents N:

- **index build**: ``DocumentIndex(documents)`` (TF-IDF fit, once per set of documents);
- **rank**: ``rank(query, k=5)``, median over many queries;
- **rank + assemble**: one call as taskmark makes it with ``retrieval:`` — ``index_for`` (a
  cache hit: the digest of the documents), rank top 5, then ``assemble`` of the index, three
  earlier phases and the 5 retrieved documents within a 3,000-token budget;
- **assemble all N**: ``assemble`` of every document (no ``retrieval:``), to show assembly is
  linear in the number of candidates: its cost per candidate should stay flat as N grows.

The "×" columns divide by the 1,000-document row measured in the same process.

A second table measures retrieval by embeddings (``method: embeddings``, the ``embeddings``
extra: all-MiniLM-L6-v2 on the CPU through onnxruntime) at 500 to 2,000 documents — embedding
every document is what an index build costs, so larger sets only take longer — against TF-IDF
on the same documents and queries in the same process.

    python bench/context.py [--quick | --smoke]

``--smoke`` (does it run?): 100 and 200 documents (20 and 40 for embeddings), 5 queries, one build.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from taskmark.context import Candidate, DocumentIndex, EmbeddingIndex, assemble, index_for

SIZES = (1_000, 2_000, 5_000, 10_000)
EMBEDDING_SIZES = (500, 1_000, 2_000)
SMOKE_SIZES, SMOKE_EMBEDDING_SIZES = (100, 200), (20, 40)
VOCABULARY = 3_000
BUDGET = 3_000
K = 5


def vocabulary(rng: random.Random) -> list[str]:
    """Pronounceable made-up words, all distinct."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def documents(n: int, seed: int = 7) -> list[Candidate]:
    """``n`` documents of 100–400 words in sentences, Zipf-distributed over the vocabulary."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = [1 / rank for rank in range(1, len(words) + 1)]
    docs = []
    for i in range(n):
        drawn = rng.choices(words, weights, k=rng.randint(100, 400))
        sentences, at = [], 0
        while at < len(drawn):
            length = rng.randint(6, 20)
            sentences.append(" ".join(drawn[at : at + length]).capitalize() + ".")
            at += length
        docs.append(Candidate(f"doc:docs/{i:05d}.md", "document", f"docs/{i:05d}.md", " ".join(sentences)))
    return docs


def queries(docs: list[Candidate], n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(docs).text.split()
        start = rng.randrange(max(1, len(words) - 16))
        out.append(" ".join(words[start : start + rng.randint(8, 16)]))
    return out


def words(text: str) -> int:
    return len(text.split())


def fixed(docs: list[Candidate]) -> list[Candidate]:
    """The index and three earlier phases, as a phase with two dependencies would have them."""
    return [
        Candidate("index", "index", "docs/index.md", docs[0].text),
        Candidate("phase:Gather", "requires", "phase Gather", docs[1].text),
        Candidate("phase:Classify", "requires", "phase Classify", docs[2].text),
        Candidate("phase:Draft", "phase", "phase Draft", docs[3].text + " " + docs[4].text),
    ]


def median_time(run: Callable[[Any], object], inputs: list[Any]) -> float:
    times = []
    for value in inputs:
        started = time.perf_counter()
        run(value)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(n: int, n_queries: int, builds: int) -> dict[str, float]:
    docs = documents(n)
    asked = queries(docs, n_queries)
    build = min(median_time(lambda _: DocumentIndex(docs), [None]) for _ in range(builds))
    index = index_for(docs)
    index.rank(asked[0], K)  # warm-up
    rank = median_time(lambda q: index.rank(q, K), asked)
    base = fixed(docs)

    def call(query: str) -> None:
        assemble([*base, *index_for(docs).rank(query, K)], budget=BUDGET, count=words)

    call(asked[0])
    per_call = median_time(call, asked)
    everything = [*base, *docs]
    whole = median_time(lambda _: assemble(everything, budget=BUDGET, count=words), [None] * max(3, builds))
    return {"build": build, "rank": rank, "call": per_call, "all": whole}


def measure_embeddings(n: int, n_queries: int) -> dict[str, float]:
    docs = documents(n)
    asked = queries(docs, n_queries)
    started = time.perf_counter()
    embedded = EmbeddingIndex(docs)
    build = time.perf_counter() - started
    terms = DocumentIndex(docs)
    embedded.rank(asked[0], K)  # warm-up
    return {
        "build": build,
        "tfidf_build": median_time(lambda _: DocumentIndex(docs), [None]),
        "rank": median_time(lambda q: embedded.rank(q, K), asked),
        "tfidf_rank": median_time(lambda q: terms.rank(q, K), asked),
    }


def embeddings_table(n_queries: int) -> None:
    EmbeddingIndex(documents(10)).rank("warm up", K)  # loads the model, outside the timings
    rows = {n: measure_embeddings(n, n_queries) for n in EMBEDDING_SIZES}
    print(
        f"\n### retrieval by embeddings vs TF-IDF, same documents and {n_queries} queries; load {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| documents | embedding index build (s) | documents per s | × TF-IDF build | rank top 5 (ms, median) | × TF-IDF rank |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in rows.items():
        print(
            f"| {n:,} | {r['build']:.1f} | {n / r['build']:.0f} | {r['build'] / r['tfidf_build']:.0f} "
            f"| {r['rank'] * 1e3:.2f} | {r['rank'] / r['tfidf_rank']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer queries and builds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one build: does it run?")
    args = parser.parse_args()
    n_queries, builds = (30, 1) if args.quick else (300, 3)
    if args.smoke:
        global SIZES, EMBEDDING_SIZES  # the sizes every table reads
        SIZES, EMBEDDING_SIZES = SMOKE_SIZES, SMOKE_EMBEDDING_SIZES
        n_queries, builds = 5, 1

    DocumentIndex(documents(10)).rank("warm up", K)  # imports scikit-learn, outside the timings
    rows = {n: measure(n, n_queries, builds) for n in SIZES}
    first = rows[SIZES[0]]
    print(
        f"\n### context assembly: {n_queries} queries per size, best of {builds} builds; load {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| documents | index build (s) | × | rank top 5 (ms, median) | × | rank + assemble per call (ms) | × | assemble all N (ms) | per candidate (µs) | × |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in rows.items():
        per_candidate, first_per_candidate = r["all"] / n, first["all"] / SIZES[0]
        print(
            f"| {n:,} | {r['build']:.2f} | {r['build'] / first['build']:.1f} | {r['rank'] * 1e3:.2f} | {r['rank'] / first['rank']:.1f} "
            f"| {r['call'] * 1e3:.2f} | {r['call'] / first['call']:.1f} | {r['all'] * 1e3:.1f} | {per_candidate * 1e6:.2f} "
            f"| {per_candidate / first_per_candidate:.2f} |"
        )
    embeddings_table(n_queries)


if __name__ == "__main__":
    main()
