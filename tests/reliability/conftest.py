"""Hypothesis profiles for the reliability suite.

The default run (CI, `python -m pytest`) draws a bounded number of examples per property
(`ATTNYOLO_FUZZ_EXAMPLES`, default 60); `HYPOTHESIS_PROFILE=long python -m pytest tests/reliability`
draws 2,000 each. No deadline: the 2 shared cores make single examples slow now and then, and a
hang is caught by the tests' own timeouts, not by Hypothesis' per-example clock.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    "derandomize": False,
    "print_blob": True,
}
settings.register_profile(
    "ci", max_examples=int(os.environ.get("ATTNYOLO_FUZZ_EXAMPLES", "60")), **_COMMON
)
settings.register_profile("long", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
