"""The per-token token bucket."""

from __future__ import annotations

from app.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("t") for _ in range(3)] == [None, None, None]
    wait = limiter.take("t")
    assert wait is not None
    assert abs(wait - 0.5) < 1e-9
    clock.now += 0.5
    assert limiter.take("t") is None
    assert limiter.take("t") is not None


def test_tokens_have_separate_buckets_and_refill_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    limiter.take("a")
    limiter.take("a")
    assert limiter.take("a") is not None
    assert limiter.take("b") is None
    clock.now += 1000
    assert [limiter.take("a") for _ in range(3)][2] is not None


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert RateLimiter.retry_after_header(0.01) == "1"
    assert RateLimiter.retry_after_header(1.2) == "2"
