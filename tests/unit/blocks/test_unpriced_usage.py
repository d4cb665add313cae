"""A cost nobody knows is not $0: costs as people read them."""

from __future__ import annotations

import pytest

from taskmark.blocks import describe_cost


@pytest.mark.parametrize(
    ("cost", "unpriced", "calls", "text"),
    [
        (0.0012, 0, 2, "$0.0012"),
        (0.0, 3, 3, "unpriced"),
        (0.0012, 1, 3, "$0.0012 (+1 unpriced)"),
        (0.0, 0, 0, "$0.0000"),
    ],
)
def test_describe_cost(cost: float, unpriced: int, calls: int, text: str) -> None:
    assert describe_cost(cost, unpriced, calls) == text


def test_describe_cost_without_sign_for_a_dollar_column() -> None:
    assert describe_cost(0.5, 0, 1, sign="") == "0.5000"
