"""Each benchmark still runs against the code it measures, at a size too small to time.

The benches call ucf's service, store and handler APIs directly, and nothing else
exercises them between two ``make bench`` runs: a refactor that removed
``ConnectorService.update`` left ``bench/poll.py`` failing at start for a round,
unnoticed. These runs check only what each bench checks of itself (every item
stored, the engine's signals equal to the hand-written function's, the handlers'
responses); their figures and targets are not asserted, a loaded machine misses
targets at this size. The peers (dlt, duckdb, wrk) are the bench group's, which
``make test`` does not install, so only ucf's own contenders run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout: float = 600) -> str:
    """The bench's output; fails the test with its output when it exits non-zero."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 0, (
        f"bench/{script} exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def test_the_poll_bench_polls_and_stores_every_item() -> None:
    output = run_bench("poll.py", "--only", "ucf", "--items", "200", "--repeat", "1")
    assert "(200 items, 200 stored," in output


def test_the_mapping_bench_engine_agrees_with_the_hand_written_function() -> None:
    output = run_bench("mapping.py", "--items", "200", "--repeat", "1")
    assert "signals identical: 200 of 200" in output


def test_the_store_bench_writes_through_both_stores() -> None:
    output = run_bench("store.py", "--signals", "200", "--rounds", "1")
    assert "  sqlite store " in output
    assert "  dynamodb store (dynalite) " in output


def test_the_coldstart_bench_runs_the_webhook_and_poll_handlers() -> None:
    output = run_bench("coldstart.py", "--repeat", "1", "--only", "api,poll_worker")
    rows = {line.split()[0] for line in output.splitlines() if line.startswith("  ")}
    assert {"api", "poll_worker"} <= rows
