from lib.scheduling.keep_limit import KeepLimiter


def test_the_budget_allows_per_minute_keeps_then_refuses_until_the_next_minute():
    now = [120.0]
    limiter = KeepLimiter(per_minute=2, monotonic=lambda: now[0])
    assert [limiter.take() for _ in range(3)] == [True, True, False]
    now[0] += 59.0
    assert limiter.take() is False
    now[0] += 1.0
    assert [limiter.take() for _ in range(3)] == [True, True, False]


def test_one_address_cannot_spend_the_budget_of_the_others():
    now = [120.0]
    limiter = KeepLimiter(per_minute=10, monotonic=lambda: now[0], per_address=3)
    assert [limiter.take("198.51.100.7") for _ in range(5)] == [True, True, True, False, False]
    assert [limiter.take("203.0.113.80") for _ in range(3)] == [True, True, True]
    now[0] += 60.0
    assert limiter.take("198.51.100.7") is True  # a new minute, a new budget
