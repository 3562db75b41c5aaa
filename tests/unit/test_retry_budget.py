"""The retry budget and backoff of `GroupClient`: a tier that fails every request gets at most a fixed fraction
more requests (plus a small reserve), and pauses grow with every retry but stay jittered and capped."""

from __future__ import annotations

import pytest

from pygmy.replica.client import BACKOFF_BASE, BACKOFF_CAP, RetryBudget, backoff


def test_retries_stay_within_the_ratio_of_requests_plus_the_reserve_when_every_request_fails() -> None:
    budget = RetryBudget(0.2, reserve=10, per_second=0)
    retries = 0
    for _ in range(1000):
        budget.deposit()
        while budget.withdraw():  # every request would retry for ever if allowed
            retries += 1
    assert retries <= 10 + 0.2 * 1000
    assert retries >= 0.2 * 1000 - 1, "the budget must still allow the retries the requests paid for"


def test_a_quiet_caller_may_retry_at_once_from_the_reserve() -> None:
    budget = RetryBudget(0.2, reserve=3, per_second=0)
    assert [budget.withdraw() for _ in range(4)] == [True, True, True, False]
    assert budget.refused == 1


def test_a_budget_of_zero_with_no_reserve_allows_no_retry() -> None:
    budget = RetryBudget(0.0, reserve=0, per_second=0)
    budget.deposit()
    assert not budget.withdraw()


def test_saved_tokens_are_capped_so_a_long_calm_spell_banks_no_storm() -> None:
    budget = RetryBudget(0.5, reserve=2, per_second=0, window=10)
    for _ in range(10_000):
        budget.deposit()
    granted = 0
    while budget.withdraw():
        granted += 1
    assert granted == 2 + 5


@pytest.mark.parametrize("retry", [1, 2, 3, 8, 30])
def test_backoff_is_jittered_below_a_doubling_bound_and_the_cap(retry: int) -> None:
    bound = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (retry - 1))
    pauses = [backoff(retry) for _ in range(200)]
    assert all(0 <= p <= bound for p in pauses)
    assert len(set(pauses)) > 100, "callers that failed together must not come back together"
