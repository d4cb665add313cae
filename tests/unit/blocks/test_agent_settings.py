"""Agent settings merge in the order step → phase → definition → agent → block."""

from __future__ import annotations

from taskmark.blocks import agent_messages, merge_llm_settings
from taskmark.definition import Agent, LLMSettings


def test_first_set_value_wins_field_by_field() -> None:
    step = LLMSettings(temperature=0.0)
    phase = LLMSettings(model="phase-model", max_tokens=50)
    definition = LLMSettings(provider="default", model="def-model", temperature=0.9)
    agent = LLMSettings(provider="team", model="agent-model", temperature=1.5, max_tokens=999)
    merged = merge_llm_settings(step, phase, definition, agent)
    assert merged == LLMSettings(provider="default", model="phase-model", temperature=0.0, max_tokens=50)


def test_unset_everywhere_stays_unset_for_the_block_defaults() -> None:
    assert merge_llm_settings(None, LLMSettings(), None) == LLMSettings()


def test_zero_is_a_value_not_a_gap() -> None:
    assert merge_llm_settings(LLMSettings(temperature=0.0), LLMSettings(temperature=1.0)).temperature == 0.0


def test_agent_messages() -> None:
    where = {"path": "agents/classifier.md", "line": 1}
    agent = Agent(id="classifier", system_prompt="  You classify questions.\n", llm=LLMSettings(), location=where)
    assert agent_messages(agent, "What moved BTC?") == [
        {"role": "system", "content": "You classify questions."},
        {"role": "user", "content": "What moved BTC?"},
    ]
    bare = Agent(id="bare", system_prompt="", llm=LLMSettings(), location=where)
    assert agent_messages(bare, "hi") == [{"role": "user", "content": "hi"}]
