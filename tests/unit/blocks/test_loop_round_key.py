"""A refine loop's round is part of the response cache key; nothing else in the labels is."""

from __future__ import annotations

from taskmark.blocks import CallLabels, LLMProvider, request_cache_key

MESSAGES = [{"role": "user", "content": "Revise the number."}]
PROVIDER = LLMProvider(model="m")


def _key(labels: CallLabels | None) -> str:
    return request_cache_key(PROVIDER, MESSAGES, None, None, None, labels)  # type: ignore[arg-type]


def test_each_round_of_a_loop_has_its_own_key() -> None:
    rounds = {_key(CallLabels(phase="Loop", stage="refine", round=n)) for n in (1, 2, 3)}
    assert len(rounds) == 3


def test_critique_and_refine_of_one_round_differ() -> None:
    assert _key(CallLabels(stage="critique", round=1)) != _key(CallLabels(stage="refine", round=1))


def test_calls_outside_a_loop_keep_the_key_they_had() -> None:
    outside = CallLabels(definition="d", phase="P", stage="inference", agent="a")
    assert _key(outside) == _key(None) == request_cache_key(PROVIDER, MESSAGES)  # type: ignore[arg-type]


def test_the_round_is_an_event_label() -> None:
    assert CallLabels(stage="refine", round=2).as_event_labels() == {"taskmark.stage": "refine", "taskmark.round": "2"}
