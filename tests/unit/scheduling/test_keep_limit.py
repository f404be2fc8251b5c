from lib.scheduling.keep_limit import KeepLimiter


def test_the_budget_allows_per_minute_keeps_then_refuses_until_the_next_minute():
    now = [120.0]
    limiter = KeepLimiter(per_minute=2, monotonic=lambda: now[0])
    assert [limiter.take() for _ in range(3)] == [True, True, False]
    now[0] += 59.0
    assert limiter.take() is False
    now[0] += 1.0
    assert [limiter.take() for _ in range(3)] == [True, True, False]
