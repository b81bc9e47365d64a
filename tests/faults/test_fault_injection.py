"""The fault-injection script with one kill per job kind (extract, train, merge): every kill survived,
no invariant broken. The full run (more kills) is `python tests/faults/fault_injection.py --kills 5`."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("fault_injection.py")


def test_one_kill_per_job_kind_loses_nothing(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "1", "--seed", "7", "--iterations", "24", "--seconds", "6",
         "--merge-seconds", "4", "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=900)
    summary = re.search(r"kills survived: (\d+)/(\d+) \(extract (\d+), train (\d+), merge (\d+)\), "
                        r"invariant failures: (\d+)", run.stdout)
    assert summary, run.stdout[-3000:] + run.stderr[-3000:]
    survived, total, extract, train, merge, failures = map(int, summary.groups())
    assert failures == 0, run.stdout[-3000:]
    assert (survived, total, extract, train, merge) == (3, 3, 1, 1, 1), run.stdout[-3000:]
    assert run.returncode == 0
