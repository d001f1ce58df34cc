"""irem/predictor.py: the budget check every predictor and the study share."""

from __future__ import annotations

import pytest

from irem.predictor import check_budgets


def test_budgets_are_sorted_and_distinct() -> None:
    assert check_budgets([10, 1, 2, 10]) == [1, 2, 10]
    assert check_budgets([0, 3]) == [0, 3]  # a predictor's start is budget 0


def test_the_minimum_is_a_parameter_and_the_message_names_the_owner() -> None:
    with pytest.raises(ValueError, match=r"PonderNet.predict: budgets must be step counts >= 1.*got \[0, 2\]"):
        check_budgets([0, 2], minimum=1, owner="PonderNet.predict")
    with pytest.raises(ValueError, match="budgets is empty"):
        check_budgets([])
