"""Augmentations: reference semantics, and every inverse undoes its augmentation."""

import numpy as np
import pytest

from trm_jax.data import augment as aug
from trm_jax.data import tokens as tok

NUMPY_DIHEDRAL = [
    lambda g: g,
    lambda g: np.rot90(g, 1),
    lambda g: np.rot90(g, 2),
    lambda g: np.rot90(g, 3),
    np.fliplr,
    np.flipud,
    lambda g: g.T,
    lambda g: np.fliplr(np.rot90(g, 1)),
]


def _solved_sudoku(rng) -> np.ndarray:
    r, c = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    base = (r * 3 + r // 3 + c) % 9 + 1
    # Randomise the base pattern with a shuffle so the property tests see many solved grids.
    return aug.apply_sudoku_shuffle(base, *aug.sudoku_shuffle_params(rng))


def _is_solved(g: np.ndarray) -> bool:
    want = set(range(1, 10))
    boxes = g.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    return all(set(x) == want for m in (g, g.T, boxes) for x in m.tolist())


@pytest.mark.parametrize("tid", range(8))
def test_dihedral_ids_follow_numpy_semantics_and_invert(tid):
    rng = np.random.default_rng(tid)
    for shape in [(1, 1), (3, 5), (6, 2), (4, 4)]:
        g = rng.integers(0, 10, shape)
        out = aug.dihedral_transform(g, tid)
        np.testing.assert_array_equal(out, NUMPY_DIHEDRAL[tid](g))
        np.testing.assert_array_equal(aug.inverse_dihedral_transform(out, tid), g)
        np.testing.assert_array_equal(aug.dihedral_transform(out, aug.DIHEDRAL_INVERSE[tid]), g)


def test_dihedral_inverse_table():
    assert aug.DIHEDRAL_INVERSE == [0, 3, 2, 1, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="0..7"):
        aug.dihedral_transform(np.zeros((2, 2)), 8)


def test_dihedral_batch_matches_single():
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 6, (16, 25))
    tids = rng.integers(0, 8, 16)
    out = aug.dihedral_batch(seqs, tids)
    for i in range(16):
        want = aug.dihedral_transform(seqs[i].reshape(5, 5), tids[i]).reshape(-1)
        np.testing.assert_array_equal(out[i], want)


def test_sudoku_shuffle_keeps_solved_grids_solved_and_puzzle_consistent():
    rng = np.random.default_rng(0)
    for _ in range(100):
        sol = _solved_sudoku(rng)
        puzzle = np.where(rng.random((9, 9)) < 0.6, 0, sol)
        p2, s2 = aug.sudoku_shuffle(puzzle, sol, rng)
        assert _is_solved(s2)
        givens = p2 != 0
        np.testing.assert_array_equal(p2[givens], s2[givens])  # givens agree with the solution
        assert givens.sum() == (puzzle != 0).sum()  # blanks stay blanks


def test_sudoku_shuffle_inverse_and_blank_fixed():
    rng = np.random.default_rng(1)
    for _ in range(100):
        g = rng.integers(0, 10, (9, 9))
        index, digit_map = aug.sudoku_shuffle_params(rng)
        assert digit_map[0] == 0 and sorted(digit_map.tolist()) == list(range(10))
        out = aug.apply_sudoku_shuffle(g, index, digit_map)
        assert (out == 0).sum() == (g == 0).sum()
        np.testing.assert_array_equal(aug.invert_sudoku_shuffle(out, index, digit_map), g)


def test_sudoku_shuffle_structure_bands_and_transpose():
    # New cell (r, c) takes old cell (row_perm[r], col_perm[c]) of the grid, transposed or not;
    # row_perm keeps the rows of a band together (likewise col_perm), and both orientations occur.
    rng = np.random.default_rng(2)
    n = 400
    index, _ = aug.sudoku_shuffle_params(rng, batch=n)
    src_r, src_c = index.reshape(n, 9, 9) // 9, index.reshape(n, 9, 9) % 9
    n_transposed = 0
    for b in range(n):
        transposed = not (src_r[b] == src_r[b][:, :1]).all()
        n_transposed += transposed
        if transposed:  # T[a, b] = G[b, a]: source (col_perm[c], row_perm[r])
            row_perm, col_perm = src_c[b][:, 0], src_r[b][0, :]
            np.testing.assert_array_equal(
                index[b].reshape(9, 9), col_perm[None] * 9 + row_perm[:, None]
            )
        else:
            row_perm, col_perm = src_r[b][:, 0], src_c[b][0, :]
            np.testing.assert_array_equal(
                index[b].reshape(9, 9), row_perm[:, None] * 9 + col_perm[None]
            )
        for perm in (row_perm, col_perm):
            assert sorted(perm.tolist()) == list(range(9))
            assert all(len(set((perm[k * 3 : k * 3 + 3] // 3).tolist())) == 1 for k in range(3))
    assert 140 < n_transposed < 260


def test_sudoku_tokens_batch_matches_grids():
    rng = np.random.default_rng(3)
    grids = rng.integers(0, 10, (32, 9, 9))
    seqs = np.stack([tok.sudoku_to_tokens(g) for g in grids])
    index, digit_map = aug.sudoku_shuffle_params(rng, batch=32)
    out = aug.sudoku_shuffle_tokens(seqs, index, digit_map)
    for i in range(32):
        want = aug.apply_sudoku_shuffle(grids[i], index[i], digit_map[i])
        np.testing.assert_array_equal(out[i], tok.sudoku_to_tokens(want))


def test_arc_colour_perm_and_inverse():
    rng = np.random.default_rng(4)
    for _ in range(100):
        perm = aug.arc_colour_perm(rng)
        assert perm[0] == 0 and sorted(perm.tolist()) == list(range(10))
        g = rng.integers(0, 10, tuple(rng.integers(1, 31, 2)))
        tid = int(rng.integers(8))
        out = aug.apply_arc_augmentation(g, tid, perm)
        np.testing.assert_array_equal(out, aug.dihedral_transform(perm[g], tid))
        np.testing.assert_array_equal(aug.invert_arc_augmentation(out, tid, perm), g)


def test_arc_augment_batch_matches_reference_tokenisation():
    rng = np.random.default_rng(5)
    b = 200
    grids = [rng.integers(0, 10, tuple(rng.integers(1, 31, 2))) for _ in range(b)]
    canvases = np.stack([tok.arc_grid_to_tokens(g) for g in grids])
    tids = rng.integers(0, 8, b)
    perms = np.stack([aug.arc_colour_perm(rng) for _ in range(b)])
    offsets = []
    for g, t in zip(grids, tids):
        h, w = aug.dihedral_transform(g, t).shape
        # Half the rows touch the bottom/right edge, where the EOS row/column falls off.
        if rng.random() < 0.5:
            offsets.append((30 - h, 30 - w))
        else:
            offsets.append((rng.integers(0, 31 - h), rng.integers(0, 31 - w)))
    out = aug.arc_augment_batch(canvases, tids, perms, np.array(offsets))
    for i in range(b):
        aug_grid = aug.apply_arc_augmentation(grids[i], tids[i], perms[i])
        np.testing.assert_array_equal(out[i], tok.arc_grid_to_tokens(aug_grid, *offsets[i]))
    # Undo at offset 0: crop, then the evaluator's inverse.
    zero = aug.arc_augment_batch(canvases, tids, perms, np.zeros((b, 2), int))
    for i in range(b):
        back = aug.invert_arc_augmentation(tok.arc_crop(zero[i]), tids[i], perms[i])
        np.testing.assert_array_equal(back, grids[i])
