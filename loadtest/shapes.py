"""One LoadTestShape that reads -u/-r/-t plus --shape, so a single locustfile offers every shape.

- steady: ramp to --users at --spawn-rate, hold until --run-time;
- ramp:   --ramp-steps equal plateaus from users/steps up to users, each held run_time/steps
          (per-plateau latency tells where the SLO breaks: the node's capacity);
- spike:  a quarter of --users, a jump to all of them for the middle fifth of the run, back down.
"""

from __future__ import annotations

import math

from locust import LoadTestShape


class AffectlineShape(LoadTestShape):
    use_common_options = True  # -u, -r and -t keep their meaning

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        o = self.runner.environment.parsed_options
        users, rate, total = int(o.num_users or 1), float(o.spawn_rate or 1), float(o.run_time or 60)
        t = self.get_run_time()
        if t >= total:
            return None
        if o.shape == "ramp":
            steps = max(1, int(o.ramp_steps))
            level = min(steps, math.floor(t / (total / steps)) + 1)
            return max(1, round(users * level / steps)), max(rate, users / steps)  # jump to each plateau
        if o.shape == "spike":
            base = max(1, users // 4)
            return (users, max(rate, users)) if 0.4 * total <= t < 0.6 * total else (base, max(rate, users))
        return users, rate
