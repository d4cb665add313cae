"""Property-based: whatever the candidates, budget, pins and excludes, the budget holds."""

from __future__ import annotations

import random
from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from taskmark.context import Bundle, Candidate, Choice, Kind, assemble, shorten

KINDS: tuple[Kind, ...] = get_args(Kind)
IDS = [f"c{n}" for n in range(12)]
VOCABULARY = "tides moon sea rise fall bread chess wind rain sun storm harbour ship".split()


def words(text: str) -> int:
    return len(text.split())


def text_of(size: int, seed: int) -> str:
    """``size`` words in sentences of 1–12 words."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < size:
        out += [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 12))]
        out[-1] += "."
    return " ".join(out[:size])


candidates = st.lists(
    st.builds(
        lambda id_, kind, size, seed, score: Candidate(id_, kind, f"src {id_}", text_of(size, seed), score),
        st.sampled_from(IDS),
        st.sampled_from(KINDS),
        st.integers(0, 400),
        st.integers(0, 1000),
        st.one_of(st.none(), st.floats(0, 1)),
    ),
    max_size=10,
)
named = st.lists(st.sampled_from([*IDS, "index", "doc:unknown"]), max_size=4, unique=True)


def check(bundle: Bundle, offered: list[Candidate], choice: Choice) -> None:
    index_tokens = sum(i.tokens for i in bundle.items if i.kind == "index")
    assert sum(i.tokens for i in bundle.items if i.kind != "index") <= max(0, bundle.budget - index_tokens)
    assert bundle.used == sum(i.tokens for i in bundle.items)
    assert all(i.tokens == words(i.text) <= i.original_tokens for i in bundle.items)
    assert all(i.text in {c.text for c in offered} for i in bundle.items if i.kind == "index")
    assert [i.tier for i in bundle.items] == sorted(i.tier for i in bundle.items)
    assert all(i.pinned == (i.tier == 4) for i in bundle.items if i.kind != "index")
    assert not {i.id for i in bundle.items} & set(choice.exclude)
    assert len({i.id for i in bundle.items}) == len(bundle.items)
    assert {c.id for c in offered} <= {i.id for i in bundle.items} | {o.id for o in bundle.left_out}


@settings(max_examples=300, deadline=None)
@given(candidates, st.integers(0, 2000), named, named, st.integers(1, 64), st.randoms(use_true_random=False))
def test_the_budget_holds_and_order_does_not_matter(
    offered: list[Candidate], budget: int, pin: list[str], exclude: list[str], min_item_tokens: int, rng: random.Random
) -> None:
    choice = Choice(pin=tuple(pin), exclude=tuple(exclude))
    bundle = assemble(offered, budget=budget, count=words, choice=choice, min_item_tokens=min_item_tokens)
    check(bundle, offered, choice)
    shuffled = offered[:]
    rng.shuffle(shuffled)
    again = assemble(shuffled, budget=budget, count=words, choice=choice, min_item_tokens=min_item_tokens)
    assert again == bundle and again.hash == bundle.hash


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 600), st.integers(0, 1000), st.integers(0, 700), st.sampled_from([1, 2, 4]))
def test_shortening_never_exceeds_its_budget(size: int, seed: int, max_tokens: int, chars_per_token: int) -> None:
    def count(text: str) -> int:  # a tokenizer that is not a word counter
        return -(-len(text) // chars_per_token)

    text = text_of(size, seed)
    short = shorten(text, max_tokens, count)
    assert count(short) <= max_tokens
    assert short == text or len(short) < len(text)
