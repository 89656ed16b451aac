"""Every example in examples/ is exercised (the seed example in test_seed_example.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLES


def test_hello_example_runs_to_completed() -> None:
    """examples/hello.yaml, the README's quickstart, runs to Completed on any machine."""
    result = subprocess.run(
        [sys.executable, "-m", "dagflow", "run", str(EXAMPLES / "hello.yaml"), "--json",
         "--var", "greeting=bonjour"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DAGFLOW_STORE": "memory://"}, check=False)
    assert result.returncode == 0, result.stderr
    instance = json.loads(result.stdout)
    assert instance["state"] == "Completed"
    regions = instance["task_states"]["per-region"]["output"]["data"]
    assert [r["stdout"].split(", ")[1].strip() for r in regions] == [
        "eu-west-1!", "us-east-1!", "ap-south-1!"]
    assert instance["task_states"]["report"]["output"]["stdout"].startswith("bonjour from ")
