"""Filling the budget: tiers, the index, pins, excludes, shortening, determinism."""

from __future__ import annotations

import random
from collections import Counter

from taskmark.context import SHORT_FORM_TOKENS, Candidate, Choice, assemble
from taskmark.context._shorten import GAP


def words(text: str) -> int:
    return len(text.split())


def text_of(n: int, topic: str = "tides") -> str:
    """``n`` words in sentences of five, each sentence numbered."""
    return " ".join(f"{topic} sentence {i} says little." for i in range(n // 5))


INDEX = Candidate("index", "index", "docs/index.md", "House style: be brief and cite sources.")


def test_items_come_in_tier_order() -> None:
    candidates = [
        Candidate("doc:b.md", "document", "b.md", text_of(10)),
        Candidate("refers:ledger/Verdict", "refers", "ledger/Verdict (run 1a2b3c4d)", "buy"),
        Candidate("phase:Draft", "phase", "phase Draft", text_of(10)),
        Candidate("phase:Gather", "requires", "phase Gather", "fact: the moon is large"),
        INDEX,
    ]
    bundle = assemble(candidates, budget=1000, count=words)
    assert [(i.id, i.tier) for i in bundle.items] == [
        ("index", 0),
        ("phase:Gather", 1),
        ("phase:Draft", 2),
        ("doc:b.md", 3),
        ("refers:ledger/Verdict", 3),
    ]
    assert [i.reason for i in bundle.items] == [
        "index: always first, in full",
        "required by dependsOn",
        "completed phase of this run",
        "document of the phase",
        "referred to by refers:",
    ]
    assert bundle.left_out == () and bundle.used == sum(i.tokens for i in bundle.items) and bundle.budget == 1000


def test_ranked_candidates_come_by_score_then_id_and_say_their_rank() -> None:
    candidates = [
        Candidate("doc:c.md", "document", "c.md", "c", score=0.2),
        Candidate("doc:a.md", "document", "a.md", "a"),
        Candidate("doc:b.md", "document", "b.md", "b", score=0.2),
        Candidate("doc:d.md", "document", "d.md", "d", score=0.9),
    ]
    bundle = assemble(candidates, budget=100, count=words)
    assert [i.id for i in bundle.items] == ["doc:d.md", "doc:b.md", "doc:c.md", "doc:a.md"]
    assert bundle.items[0].reason == "retrieved: rank 1 of 3 (score 0.90)"
    assert bundle.items[2].reason == "retrieved: rank 3 of 3 (score 0.20)"


def test_of_two_candidates_with_one_id_the_first_in_tier_order_wins() -> None:
    candidates = [
        Candidate("phase:A", "phase", "phase A", "later"),
        Candidate("phase:A", "requires", "phase A", "first"),
    ]
    bundle = assemble(candidates, budget=100, count=words)
    assert [(i.id, i.text) for i in bundle.items] == [("phase:A", "first")]
    assert [(o.id, o.reason) for o in bundle.left_out] == [("phase:A", "duplicate id")]


def test_the_index_is_always_first_and_whole_even_over_the_budget() -> None:
    index = Candidate("index", "index", "docs/index.md", text_of(50))
    bundle = assemble([Candidate("phase:A", "requires", "phase A", "fact"), index], budget=20, count=words)
    assert [(i.id, i.text, i.shortened) for i in bundle.items] == [("index", index.text, None)]
    assert bundle.used == 50 > bundle.budget
    assert [(o.id, o.tokens, o.reason) for o in bundle.left_out] == [("phase:A", 1, "budget exhausted (0 tokens left)")]


def test_other_phases_come_in_short_form() -> None:
    long = Candidate("phase:Draft", "phase", "phase Draft", text_of(500))
    (item,) = assemble([long], budget=10_000, count=words).items
    assert item.shortened == "extract" and item.original_tokens == 500
    assert words(item.text) == item.tokens <= SHORT_FORM_TOKENS
    assert item.reason == f"completed phase of this run; short form, from 500 to {item.tokens} tokens"
    required = Candidate("phase:Draft", "requires", "phase Draft", text_of(500))
    assert assemble([required], budget=10_000, count=words).items[0].text == required.text  # only tier 2


def test_an_item_too_large_is_shortened_to_what_is_left() -> None:
    big = Candidate("doc:big.md", "document", "big.md", text_of(400))
    bundle = assemble([INDEX, Candidate("phase:A", "requires", "phase A", text_of(50)), big], budget=157, count=words)
    item = bundle.items[-1]
    left = 157 - 7 - 50
    assert (item.id, item.shortened, item.original_tokens) == ("doc:big.md", "extract", 400)
    assert item.tokens == words(item.text) <= left and len(item.text) < len(big.text)
    assert item.reason == f"document of the phase; shortened from 400 to {item.tokens} tokens: only {left} left"
    assert item.text.startswith("tides sentence 0 says little.")  # the first sentence is kept
    kept = [int(s.split()[0]) for s in item.text.replace(GAP, "").split("tides sentence ")[1:]]
    assert kept == sorted(kept)  # in their original order
    assert bundle.used - 7 <= 157 - 7


def test_an_item_is_left_out_when_too_few_tokens_are_left_but_a_smaller_later_one_still_fits() -> None:
    candidates = [
        Candidate("phase:A", "requires", "phase A", text_of(90)),
        Candidate("phase:B", "requires", "phase B", text_of(90)),
        Candidate("phase:C", "requires", "phase C", "short fact"),
    ]
    bundle = assemble(candidates, budget=110, count=words)
    assert [i.id for i in bundle.items] == ["phase:A", "phase:C"]
    assert [(o.id, o.tier, o.tokens, o.reason) for o in bundle.left_out] == [
        ("phase:B", 1, 90, "budget exhausted (20 tokens left)")
    ]
    assert bundle.used == 92


def test_a_pinned_document_survives_a_budget_that_higher_tiers_would_fill_and_comes_last() -> None:
    candidates = [
        INDEX,
        Candidate("phase:A", "requires", "phase A", text_of(100)),
        Candidate("phase:B", "phase", "phase B", text_of(100)),
        Candidate("doc:bread.md", "document", "bread.md", text_of(40, "bread"), score=0.01),
    ]
    unpinned = assemble(candidates, budget=200, count=words)
    assert "doc:bread.md" in {o.id for o in unpinned.left_out}
    bundle = assemble(candidates, budget=200, count=words, choice=Choice(pin=("doc:bread.md",)))
    assert [(i.id, i.tier, i.pinned) for i in bundle.items][-1] == ("doc:bread.md", 4, True)
    assert bundle.items[-1].text == candidates[-1].text and bundle.items[-1].reason == "pinned by a person"
    assert [i.id for i in bundle.items] == ["index", "phase:A", "phase:B", "doc:bread.md"]
    assert bundle.used <= 200 and bundle.items[2].shortened == "extract"


def test_pins_too_large_together_share_what_is_left_and_the_last_gives_way_below_the_minimum() -> None:
    docs = [Candidate(f"doc:{n}.md", "document", f"{n}.md", text_of(size)) for n, size in ((1, 300), (2, 20), (3, 300))]
    choice = Choice(pin=("doc:3.md", "doc:1.md", "doc:2.md"))
    bundle = assemble(docs, budget=220, count=words, choice=choice)
    assert [(i.id, i.shortened) for i in bundle.items] == [
        ("doc:3.md", "extract"),
        ("doc:1.md", "extract"),
        ("doc:2.md", None),
    ]
    assert all(i.tokens <= 100 for i in bundle.items) and bundle.used <= 220

    bundle = assemble(docs, budget=80, count=words, choice=choice, min_item_tokens=32)
    assert [(i.id, i.tokens <= 40) for i in bundle.items] == [("doc:3.md", True), ("doc:1.md", True)]
    assert [(o.id, o.tier, o.reason) for o in bundle.left_out] == [
        ("doc:2.md", 4, "pinned, but 80 tokens are too few for 3 pins of at least 32 tokens; the last pin gives way"),
    ]


def test_excludes_and_unknown_ids_are_reported() -> None:
    candidates = [
        INDEX,
        Candidate("phase:A", "requires", "phase A", "fact"),
        Candidate("doc:a.md", "document", "a.md", "doc"),
    ]
    choice = Choice(pin=("doc:a.md", "doc:nope.md"), exclude=("doc:a.md", "phase:A", "phase:Nope"), note="why")
    bundle = assemble(candidates, budget=100, count=words, choice=choice)
    assert [i.id for i in bundle.items] == ["index"] and bundle.note == "why"
    assert [(o.id, o.kind, o.tier, o.reason) for o in bundle.left_out] == [
        ("doc:a.md", "document", 3, "excluded by a person, which overrides its pin"),
        ("phase:A", "requires", 1, "excluded by a person"),
        ("phase:Nope", "phase", 2, "excluded, but no candidate has this id"),
        ("doc:nope.md", "document", 4, "pinned, but no candidate has this id"),
    ]


def test_the_same_inputs_in_any_order_give_the_same_bundle() -> None:
    candidates = (
        [INDEX]
        + [
            Candidate(f"doc:{n}.md", "document", f"{n}.md", text_of(20 + 13 * n), score=(n % 3) / 3 or None)
            for n in range(12)
        ]
        + [
            Candidate(f"phase:{n}", kind, f"phase {n}", text_of(250))
            for n, kind in enumerate(("requires", "phase", "phase"))
        ]
    )
    choice = Choice(pin=("doc:7.md", "phase:2"), exclude=("doc:3.md",))
    first = assemble(candidates, budget=700, count=words, choice=choice)
    shuffled = candidates[:]
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        again = assemble(shuffled, budget=700, count=words, choice=choice)
        assert again == first and again.hash == first.hash


def test_each_text_is_counted_once() -> None:
    calls: Counter[str] = Counter()

    def counting(text: str) -> int:
        calls[text] += 1
        return words(text)

    candidates = [INDEX, Candidate("phase:A", "phase", "phase A", text_of(400))] + [
        Candidate(f"doc:{n}.md", "document", f"{n}.md", text_of(100 + n)) for n in range(10)
    ]
    assemble(candidates, budget=600, count=counting, choice=Choice(pin=("doc:9.md",), exclude=("doc:0.md",)))
    assert max(calls.values()) == 1
    assert {c.text for c in candidates} <= set(calls)
