"""Training on several devices through Lightning DDP (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "scripts" / "train_ddp.py"


def test_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    # DDP keeps the replicas identical ...
    assert abs(ranks[0]["weights"] - ranks[1]["weights"]) < 1e-6 * max(1.0, abs(ranks[0]["weights"]))
    # ... while each rank draws its own training sets.
    assert ranks[0]["first_set"] != ranks[1]["first_set"]
    assert all(r["finite"] for r in ranks)
    assert ranks[0]["epochs"] == 3
