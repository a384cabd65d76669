"""scripts/device_check.sh: the prepared GPU check runs end to end in its CPU dry-run mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "device_check.sh"


def test_device_check_needs_an_output_folder():
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 2 and "output folder" in r.stderr
    r = subprocess.run(["bash", str(SCRIPT), "x", "--fast"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option" in r.stderr


@pytest.mark.slow
def test_device_check_dry_run_writes_json_and_table(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    out = tmp_path / "out"
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((out / "device_check.json").read_text())
    assert result["dry_run"] and result["backend"] == "cpu"
    assert set(result["steps"]) == {"parity", "bench", "data", "train"}
    assert all(s["status"] == "ok" for s in result["steps"].values())
    assert result["parity"].get("passed", 0) >= 1 and not result["parity"].get("failed")
    assert result["bf16_matmul_peak_flop_per_s"] > 0
    (row,) = result["bench"]
    assert row["config"] == "paper-mlp" and row["dtype"] == "bfloat16"
    assert 0 < row["mfu"] < 1.5
    assert result["train"]["steps"] >= 1 and result["train"]["examples_per_s_median"] > 0
    table = (out / "device_check.md").read_text()
    assert "| paper-mlp | bfloat16 |" in table and "examples/s" in table
