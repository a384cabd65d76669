"""python -m trm_jax.solve on hostile input: one sentence, exit 2, checked before any answer."""

import numpy as np
import pytest

from tests import _tiny_run
from tests._cli_checks import one_sentence
from trm_jax import inference, solve


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture(scope="session")
def puzzle(tiny) -> str:
    row = np.load(tiny["data"] / "test" / "all__inputs.npy")[0]
    return "".join("." if t == 1 else str(int(t) - 1) for t in row)


@pytest.fixture
def no_work(monkeypatch):
    def load(*a, **k):
        raise AssertionError("the bad input was not refused before the work")

    monkeypatch.setattr(inference, "load", load)


@pytest.mark.parametrize("where", ["dir", "under_file", "proc"])
def test_png_that_cannot_be_written_fails_before_the_answer(
    tiny, puzzle, tmp_path, capsys, no_work, where
):
    f = tmp_path / "f"
    f.write_text("keep")
    png = {"dir": tmp_path, "under_file": f / "x.png", "proc": "/proc/x.png"}[where]
    argv = ["--workdir", str(tiny["workdir"]), "--sudoku", puzzle, "--png", str(png)]
    assert solve.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no answer printed before the refusal
    assert "--png" in one_sentence(captured.err)
    assert f.read_text() == "keep"


def test_huge_batch_size_says_how_much_memory(tiny, puzzle, capsys, no_work):
    argv = ["--workdir", str(tiny["workdir"]), "--sudoku", puzzle, "--batch-size", "100000000"]
    assert solve.main(argv) == 2
    err = one_sentence(capsys.readouterr().err)
    assert "of memory" in err and "smaller batch" in err


def test_a_line_starting_with_a_byte_order_mark_is_81_characters(tiny, puzzle, tmp_path, capsys):
    f = tmp_path / "puzzles.txt"
    f.write_bytes(b"\xef\xbb\xbf" + puzzle.encode() + b"\n")
    assert solve.main(["--workdir", str(tiny["workdir"]), "--file", str(f)]) == 0
    assert "answer" in capsys.readouterr().out
    # A line that really is too long still names its length.
    f.write_bytes(b"\xef\xbb\xbf" + puzzle.encode() + b"1\n")
    assert solve.main(["--workdir", str(tiny["workdir"]), "--file", str(f)]) == 2
    assert "82" in one_sentence(capsys.readouterr().err)
