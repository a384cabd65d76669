"""Token maps of reference §1.2-§1.4 and the evaluator's crop (§6 step 2)."""

import numpy as np
import pytest

from trm_jax.data import tokens as tok


def test_sudoku_string_tokens_match_reference_map():
    s = ".1234567890" + "." * 70
    t = tok.sudoku_to_tokens(s)
    assert t.dtype == np.uint8 and t.shape == (81,)
    # '.' and '0' are blank (1); digit d is d + 1; PAD (0) never appears.
    assert t[:11].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1]
    assert tok.tokens_to_sudoku(t) == s.replace("0", ".")


def test_sudoku_grid_roundtrip():
    grid = np.random.default_rng(0).integers(0, 10, (9, 9))
    t = tok.sudoku_to_tokens(grid)
    np.testing.assert_array_equal(tok.tokens_to_sudoku_grid(t), grid)


@pytest.mark.parametrize(
    "bad, match",
    [("1" * 80, "81 characters"), ("x" + "1" * 80, "only '.' and '0'-'9'")],
)
def test_sudoku_bad_strings(bad, match):
    with pytest.raises(ValueError, match=match):
        tok.sudoku_to_tokens(bad)


def test_maze_tokens_match_reference_map():
    s = "# SGo" + "#" * 11
    t = tok.maze_to_tokens(s)
    assert t[:5].tolist() == [1, 2, 3, 4, 5]
    assert tok.tokens_to_maze(t) == s
    with pytest.raises(ValueError, match="square length"):
        tok.maze_to_tokens("#" * 15)
    with pytest.raises(ValueError, match="found"):
        tok.maze_to_tokens("#X" + "#" * 14)


def test_arc_canvas_layout_with_offset():
    grid = np.array([[0, 1, 2], [3, 4, 9]])
    t = tok.arc_grid_to_tokens(grid, pad_r=2, pad_c=5).reshape(30, 30)
    assert t.dtype == np.uint8
    np.testing.assert_array_equal(t[2:4, 5:8], grid + 2)
    assert (t[4, 5:8] == tok.ARC_EOS).all()  # row below the grid
    assert (t[2:4, 8] == tok.ARC_EOS).all()  # column right of the grid
    assert t[4, 8] == tok.ARC_PAD  # the corner is not set
    assert (t != 0).sum() == 6 + 3 + 2


def test_arc_canvas_eos_only_inside():
    t = tok.arc_grid_to_tokens(np.ones((30, 28), int)).reshape(30, 30)
    assert (t[:, 28] == tok.ARC_EOS).all() and (t[:, 29] == 0).all()
    t = tok.arc_grid_to_tokens(np.ones((2, 3), int), pad_r=28, pad_c=27).reshape(30, 30)
    assert (t[28:, 27:] == 3).all() and (t == tok.ARC_EOS).sum() == 0


def test_arc_crop_inverts_tokenisation():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(1, 31, 2)
        g = rng.integers(0, 10, (h, w))
        np.testing.assert_array_equal(tok.arc_tokens_to_grid(tok.arc_grid_to_tokens(g)), g)


def test_arc_crop_largest_rectangle_first_on_ties():
    c = np.zeros((30, 30), np.uint8)
    c[0, :5] = 2  # row 1: limit 5, area 5
    c[1, :3] = 3  # row 2: limit 3, area 6
    c[2, :2] = 4  # row 3: limit 2, area 6 (tie: keep the first)
    c[3, :1] = 5  # row 4: limit 1, area 4
    out = tok.arc_crop(c.reshape(-1))
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[0, 0, 0], [1, 1, 1]])
    assert tok.arc_crop(np.zeros(900, np.uint8)).shape == (0, 0)


@pytest.mark.parametrize(
    "grid, match",
    [
        (np.zeros((31, 2), int), "larger than the 30x30"),
        ([[0, 10]], "outside 0-9"),
        ([[0, -1]], "outside 0-9"),
        ([[0, 1], [2]], "rectangular|rectangle"),
        ([], "non-empty"),
        ([[0.5]], "integer"),
    ],
)
def test_arc_bad_grids(grid, match):
    with pytest.raises(ValueError, match=match):
        tok.arc_grid_to_tokens(grid)


def test_arc_offset_must_fit():
    with pytest.raises(ValueError, match="does not fit"):
        tok.arc_grid_to_tokens(np.zeros((3, 3), int), pad_r=28)
