"""The one progress display and the one atomic writer."""

import io
import json
import os

import numpy as np
import pytest

from trm_jax import fileio
from trm_jax.progress import Progress, format_seconds


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_eta_from_rate_and_capped_by_budget():
    clock = _Clock()
    p = Progress("train", 1000, unit=" step", clock=clock, stream=io.StringIO())
    clock.t = 10.0
    assert p.eta(100) == pytest.approx(90.0)  # 10 steps/s, 900 left
    b = Progress("train", 1000, budget_s=30.0, clock=clock, t0=0.0, stream=io.StringIO())
    assert b.eta(100) == pytest.approx(20.0)  # the budget ends first
    clock.t = 40.0
    assert b.eta(100) == 0.0


def test_rate_counts_only_this_process_work():
    clock = _Clock()
    p = Progress("train", 1000, unit=" step", start=500, clock=clock, stream=io.StringIO())
    clock.t = 10.0
    assert "5.00 step/s" in p.line(550)
    assert p.eta(550) == pytest.approx(90.0)


def test_lines_off_terminal_are_throttled_and_forced_lines_always_show():
    clock = _Clock()
    out = io.StringIO()
    p = Progress("gen", 10, every=5.0, clock=clock, stream=out)
    p.update(1)
    clock.t = 1.0
    p.update(2)  # within 5 s: not shown
    p.update(3, force=True)
    lines = out.getvalue().splitlines()
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["1/10", "3/10"]


def test_format_seconds():
    assert format_seconds(42) == "42s"
    assert format_seconds(210) == "3.5m"
    assert format_seconds(float("inf")) == "?"


def test_atomic_writers_leave_no_temporary_and_replace_whole(tmp_path):
    path = tmp_path / "sub" / "m.json"
    fileio.write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    fileio.write_npz(tmp_path / "x.npz", {"a": np.arange(3)})
    assert np.load(tmp_path / "x.npz")["a"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["sub", "x.npz"]
    assert os.listdir(tmp_path / "sub") == ["m.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    fileio.write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        fileio.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_train_bar_total_and_eta_come_from_the_time_budget():
    """The bar `make train-cpu` shows: configs/sudoku_cpu.py's 780 s budget, 1,875 steps of work
    (120 epochs of 1,000 puzzles in batches of 64), 100 steps done after 120 s."""
    from configs import sudoku_cpu
    from trm_jax import train

    c = sudoku_cpu.get_config()
    total = int(c.train.epochs * 1000 / c.data.global_batch_size)
    clock = _Clock()
    bar = train.train_progress(total, 0, c.train.time_budget_s, True, clock, 0.0)
    clock.t = 120.0
    line = bar.line(100)
    # 100 steps / 120 s leave room for 550 more in the 660 s left: 650 in all, 11 minutes.
    assert total == 1875 and "100/650 steps (15%)" in line and "eta 11.0m" in line, line
    clock.t = 780.0
    assert "100/100 steps (100%)" in bar.line(100) and "eta 0s" in bar.line(100)
    # Without a budget: the work, at the measured rate.
    free = train.train_progress(total, 0, 0.0, True, clock, 0.0)
    clock.t = 120.0
    assert "100/1875 steps (5%)" in free.line(100) and "eta 35.5m" in free.line(100)
    # Fast enough to finish the work inside the budget: the total stays the work.
    assert "1800/1875 steps" in bar.line(1800) and "eta 5s" in bar.line(1800)
