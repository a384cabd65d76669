"""The dataset builders on hostile input: --out is checked before any work, a directory that is
not one of our datasets is never touched, replacing ours needs --overwrite, Ctrl-C writes
nothing."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from data_gen import arc, maze, sudoku
from tests._cli_checks import one_sentence, snapshot
from tests.conftest import REPO
from trm_jax import guards

SMALL = {
    "sudoku": ["--num-train", "2", "--num-test", "1", "--givens", "50", "--workers", "1"],
    "maze": ["--num-train", "2", "--num-test", "1", "--min-path", "5", "--workers", "1"],
}
MAIN = {"sudoku": sudoku.main, "maze": maze.main}


@pytest.fixture
def foreign(tmp_path):
    d = tmp_path / "notes"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("keep me")
    (d / "sub" / "x").write_text("and me")
    return d


@pytest.mark.parametrize(
    "argv",
    [
        ["sudoku", "build", *SMALL["sudoku"]],
        ["maze", "build", *SMALL["maze"]],
        ["arc", "build"],
        ["arc", "build-generated"],
    ],
    ids=["sudoku", "maze", "arc", "arc-generated"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_that_is_not_a_dataset_is_never_replaced(foreign, capsys, argv, overwrite):
    before = snapshot(foreign)
    main = {"sudoku": sudoku.main, "maze": maze.main, "arc": arc.main}[argv[0]]
    args = [argv[1], "--out", str(foreign), *argv[2:]] + (["--overwrite"] if overwrite else [])
    assert main(args) == 2
    assert "not a trm_jax dataset" in one_sentence(capsys.readouterr().err)
    assert snapshot(foreign) == before


@pytest.mark.parametrize("builder", ["sudoku", "maze"])
def test_replacing_our_dataset_needs_overwrite(tmp_path, capsys, builder):
    out = tmp_path / "ds"
    assert MAIN[builder](["build", "--out", str(out), "--quiet", *SMALL[builder]]) == 0
    assert (out / guards.MARKER).is_file()
    before = snapshot(out)
    again = ["build", "--out", str(out), "--quiet", "--seed", "1", *SMALL[builder]]
    capsys.readouterr()
    assert MAIN[builder](again) == 2
    assert "--overwrite" in one_sentence(capsys.readouterr().err)
    assert snapshot(out) == before
    assert MAIN[builder](again + ["--overwrite"]) == 0
    assert snapshot(out) != before and (out / guards.MARKER).is_file()


def test_a_dataset_written_before_the_marker_counts_as_ours(tmp_path, capsys):
    out = tmp_path / "old"
    assert sudoku.main(["build", "--out", str(out), "--quiet", *SMALL["sudoku"]]) == 0
    (out / guards.MARKER).unlink()  # as builds before the marker left them
    assert guards.looks_like_dataset(out)
    capsys.readouterr()
    assert sudoku.main(["build", "--out", str(out), "--quiet", *SMALL["sudoku"]]) == 2
    assert "--overwrite" in one_sentence(capsys.readouterr().err)
    (out / "train" / "my_notes.txt").write_text("mine")  # no longer only our layout
    assert not guards.looks_like_dataset(out)
    argv = ["build", "--out", str(out), "--quiet", "--overwrite", *SMALL["sudoku"]]
    assert sudoku.main(argv) == 2
    assert (out / "train" / "my_notes.txt").read_text() == "mine"


def test_out_under_a_file_is_refused_before_generating(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    assert sudoku.main(["build", "--out", str(f / "ds"), *SMALL["sudoku"]]) == 2
    assert "is a file" in one_sentence(capsys.readouterr().err)
    assert f.read_text() == "x"


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# 1 s: the workers are searching; 0 s: the Ctrl-C reaches the build while its pool starts.
@pytest.mark.parametrize("wait", [1.0, 0.0])
def test_givens_17_says_what_it_does_and_stops_cleanly_on_ctrl_c(tmp_path, wait):
    out = tmp_path / "hard"
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_gen.sudoku", "build", "--out", str(out), "--givens", "17"]
        + ["--num-train", "2", "--num-test", "0", "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        preexec_fn=_default_sigint,  # as from a terminal, whatever earlier tests did to ours
    )
    watchdog = threading.Timer(120, proc.kill)  # a build that says nothing must not hang here
    watchdog.start()
    try:
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        assert "generating 2 unique puzzles (17 givens" in lines[0], lines
        assert "rare" in lines[1] and "--max-attempts" in lines[1], lines
        time.sleep(wait)
        os.killpg(proc.pid, signal.SIGINT)
        out_text, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted, nothing was written" in err
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temporary sibling left either
