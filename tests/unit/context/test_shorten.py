"""Extractive shortening: central sentences, in their order, within the budget."""

from __future__ import annotations

from taskmark.context import shorten

DOC = """# Tides

Tides are the rise and fall of the sea, caused by the moon.
The moon pulls the sea toward it, and the sea bulges.
My aunt bakes sourdough bread on Sundays.
Twice a day the sea rises with the moon; twice a day the tides fall.
Chess openings are a matter of taste.
Spring tides come when the sun and the moon pull the sea together."""


def words(text: str) -> int:
    return len(text.split())


def test_a_text_that_fits_is_returned_as_is() -> None:
    assert shorten(DOC, words(DOC), words) == DOC


def test_the_central_sentences_are_kept_in_order_with_the_first_and_its_heading() -> None:
    short = shorten(DOC, 50, words)
    assert words(short) <= 50 and len(short) < len(DOC)
    assert short.startswith("# Tides\n\nTides are the rise and fall of the sea, caused by the moon.")
    assert "sourdough" not in short and "Chess" not in short
    kept = [line for line in DOC.splitlines() if line and line.rstrip(".") in short]
    assert [short.index(line.rstrip(".")) for line in kept] == sorted(short.index(line.rstrip(".")) for line in kept)
    assert " …" in short


def test_a_gap_within_a_line_and_at_the_end_is_marked() -> None:
    assert (
        shorten("Tides rise. Cats purr loudly at night. Tides fall. Cats sleep all day long.", 6, words)
        == "Tides rise. … Tides fall. …"
    )


def test_a_first_sentence_too_long_is_cut_at_a_word() -> None:
    text = " ".join(f"w{n}" for n in range(100)) + ". Short one."
    short = shorten(text, 10, words)
    assert short == " ".join(f"w{n}" for n in range(9)) + " …"


def test_one_enormous_word_is_cut_at_a_character() -> None:
    def count(text: str) -> int:
        return -(-len(text) // 4)

    short = shorten("x" * 1000, 10, count)
    assert count(short) <= 10 and short.startswith("xxxx") and short.endswith("…")


def test_nothing_fits_in_no_tokens() -> None:
    assert shorten(DOC, 0, words) == ""
    assert shorten("Tides rise. Tides fall.", 1, words) == ""  # not even one word and the gap mark
