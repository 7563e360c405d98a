"""The retry schedule of failed deliveries: exponential backoff with jitter, up to a bound."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_s: float = 2.0
    max_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s <= 0 or self.max_s < self.base_s:
            raise ValueError("need max_attempts >= 1 and 0 < base_s <= max_s")

    def delay_s(self, failed_attempts: int, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before the next attempt after `failed_attempts` failures; None: give up.

        Attempt n waits a random time in [b/2, b] with b = min(max_s, base_s * 2^(n-1)): half of
        the backoff is kept so retries never bunch up at zero, the random half spreads the
        retries of many deliveries that failed together (an endpoint that was down).
        """
        if failed_attempts >= self.max_attempts:
            return None
        backoff = min(self.max_s, self.base_s * 2.0 ** (failed_attempts - 1))
        return backoff * (0.5 + 0.5 * rand())
