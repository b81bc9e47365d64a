"""Test helper for the fuzz tests: their example counts, and how many cases a session ran.

Each fuzz test names its cases with count_case(); the totals are printed at the end of the pytest
session (and written as JSON to $SWAPLINE_FUZZ_REPORT when set). SWAPLINE_FUZZ=long multiplies
every fuzz test's examples by LONG_FACTOR, for a long hunt outside CI; SWAPLINE_FUZZ=<number> by that.
Used as: sys.path gets tests/ appended, then `from fuzzcount import examples, count_case, fuzz_cases`
(fuzz_cases is an autouse fixture; importing it into the test module is what enables it).
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

LONG_FACTOR = 10
_PROFILE = os.environ.get("SWAPLINE_FUZZ", "").strip()
FACTOR = LONG_FACTOR if _PROFILE == "long" else int(_PROFILE) if _PROFILE.isdigit() and int(_PROFILE) > 0 else 1
PROFILE = "default" if FACTOR == 1 else f"long (x{FACTOR})"
CASES: Counter[str] = Counter()
_PLUGIN = "swapline-fuzz-cases"


def examples(n: int) -> settings:
    """Hypothesis settings for a fuzz test of n examples (n * FACTOR in a long profile).

    No deadline: these machines are shared and a slow example is not a failure here."""
    return settings(max_examples=n * FACTOR, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def count_case(name: str) -> None:
    CASES[name] += 1


class _Summary:
    def pytest_terminal_summary(self, terminalreporter) -> None:
        total = sum(CASES.values())
        terminalreporter.write_sep("-", f"fuzz cases ({PROFILE} profile)")
        for name, n in sorted(CASES.items()):
            terminalreporter.write_line(f"{n:9d}  {name}")
        terminalreporter.write_line(f"{total:9d}  in all")
        report = os.environ.get("SWAPLINE_FUZZ_REPORT")
        if report:
            with open(report, "w") as f:
                json.dump({"profile": PROFILE, "total": total, "cases": dict(CASES)}, f,
                          indent=1)


@pytest.fixture(scope="module", autouse=True)
def fuzz_cases(request) -> Counter[str]:
    """Registers the end-of-session summary once; gives the shared counter."""
    manager = request.config.pluginmanager
    if not manager.has_plugin(_PLUGIN):
        manager.register(_Summary(), _PLUGIN)
    return CASES
