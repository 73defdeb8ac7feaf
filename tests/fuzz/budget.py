"""How long the fuzzers run: a cheap, deterministic budget in ``./dev test``, a long random one
behind ``./dev fuzz``.

The profile is picked per fuzz test (never loaded globally), so the other hypothesis tests of the
suite keep their own settings. ``HYPOTHESIS_PROFILE=long`` (what ``./dev fuzz`` sets) draws fresh
random inputs on every run, ``KIOSK_FUZZ_BUDGET`` examples per property (default 5000); the
default profile replays the same inputs on every run (``derandomize``), so a red ``./dev test``
is a real regression and never a lucky draw.
"""

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
LONG_BUDGET = int(os.environ.get("KIOSK_FUZZ_BUDGET", "5000"))

# Function-scoped fixtures (caplog, tmp_path) are shared by the examples of a test; each
# property resets what it reads of them (caplog.clear()) or works in its own folders.
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
          HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("fuzz", derandomize=True, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("long", derandomize=False, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)


def budget(examples):
    """Settings for one property: ``examples`` inputs in ``./dev test`` (chosen so that all the
    fuzzers together stay near 40 s on a loaded 2-core machine), the long budget otherwise."""
    parent = settings.get_profile(PROFILE if PROFILE in ("fuzz", "long") else "fuzz")
    return settings(parent, max_examples=LONG_BUDGET if PROFILE == "long" else examples)
