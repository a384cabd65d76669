"""Augmentations: pure functions of (example, seed or parameters), with their inverses.

- Dihedral transforms (reference §1.1), numpy semantics: 0 identity, 1 ``rot90``
  (counter-clockwise), 2 ``rot90(k=2)``, 3 ``rot90(k=3)``, 4 ``fliplr``, 5 ``flipud``, 6 transpose,
  7 ``fliplr(rot90)`` (anti-diagonal reflection). ``DIHEDRAL_INVERSE[t]`` undoes ``t``.
- Sudoku shuffle (§1.2): digit permutation with the blank fixed; transpose with probability 0.5
  applied first; bands and the rows inside each band shuffled, likewise stacks and columns; new cell
  (r, c) takes old cell (row_perm[r], col_perm[c]) of the (possibly transposed) grid. Batched
  versions act on token arrays by index gathers.
- ARC (§1.4): colour permutations keeping 0 (black) fixed; augmented grid =
  ``dihedral(perm[grid])``; inverse = ``inv_perm[inverse_dihedral(grid)]``.
  :func:`arc_augment_batch` applies colour map, dihedral and translation to whole batches of
  S x S token canvases at once (S from the sequence length: 30 in the reference layout).
"""

from __future__ import annotations

import numpy as np

from trm_jax.data import tokens as tok

DIHEDRAL_INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]
NUM_DIHEDRAL = 8


def _rng(seed_or_rng) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


# --------------------------------------------------------------------------------------------
# Dihedral group


def dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Applies dihedral transform ``tid`` (0..7, numpy semantics, reference §1.1) to a 2-D grid."""
    grid = np.asarray(grid)
    if tid == 0:
        return grid
    if tid == 1:
        return np.rot90(grid, k=1)
    if tid == 2:
        return np.rot90(grid, k=2)
    if tid == 3:
        return np.rot90(grid, k=3)
    if tid == 4:
        return np.fliplr(grid)
    if tid == 5:
        return np.flipud(grid)
    if tid == 6:
        return grid.T
    if tid == 7:
        return np.fliplr(np.rot90(grid, k=1))
    raise ValueError(f"dihedral id must be in 0..7, got {tid!r}.")


def inverse_dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Undoes :func:`dihedral_transform` with the same ``tid``."""
    if not 0 <= int(tid) < NUM_DIHEDRAL:
        raise ValueError(f"dihedral id must be in 0..7, got {tid!r}.")
    return dihedral_transform(grid, DIHEDRAL_INVERSE[int(tid)])


# Source coordinates of output cell (u, v) of a transformed h x w grid, per transform id:
# src_row = a*u + b*v + c*(h-1), src_col = d*u + e*v + f*(w-1); the output shape is (h, w) for
# ids 0, 2, 4, 5 and (w, h) for the others.
_DIHEDRAL_SRC = np.array(
    [
        [1, 0, 0, 0, 1, 0],
        [0, 1, 0, -1, 0, 1],
        [-1, 0, 1, 0, -1, 1],
        [0, -1, 1, 1, 0, 0],
        [1, 0, 0, 0, -1, 1],
        [-1, 0, 1, 0, 1, 0],
        [0, 1, 0, 1, 0, 0],
        [0, -1, 1, -1, 0, 1],
    ],
    dtype=np.int32,
)
_DIHEDRAL_SWAPS = np.array([0, 1, 0, 1, 0, 0, 1, 1], dtype=bool)


def dihedral_gather_index(side: int) -> np.ndarray:
    """int32[8, side*side]: ``flat[..., idx[t]]`` is dihedral transform t of a square flat grid."""
    u = np.arange(side)[:, None]
    v = np.arange(side)[None, :]
    out = np.empty((NUM_DIHEDRAL, side * side), dtype=np.int32)
    for t, (a, b, c, d, e, f) in enumerate(_DIHEDRAL_SRC):
        r = a * u + b * v + c * (side - 1)
        q = d * u + e * v + f * (side - 1)
        out[t] = (r * side + q).reshape(-1)
    return out


def dihedral_batch(seqs: np.ndarray, tids: np.ndarray) -> np.ndarray:
    """Row b of ``seqs`` (flattened square grids, [B, L]) transformed by ``tids[b]``."""
    seqs = np.asarray(seqs)
    side = int(round(seqs.shape[1] ** 0.5))
    if side * side != seqs.shape[1]:
        raise ValueError(f"dihedral_batch needs square grids, got length {seqs.shape[1]}.")
    idx = dihedral_gather_index(side)[np.asarray(tids)]
    return np.take_along_axis(seqs, idx, axis=1)


# --------------------------------------------------------------------------------------------
# Sudoku


def sudoku_shuffle_params(seed_or_rng, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draws Sudoku shuffles: (cell index int32[..., 81], digit map uint8[..., 10]).

    The shuffled grid is ``digit_map[grid.reshape(-1)[index]]`` for a grid of digits 0..9 (0 =
    blank, always mapped to 0). With ``batch`` set, the leading dimension is the batch.
    """
    rng = _rng(seed_or_rng)
    b = 1 if batch is None else batch
    digits = np.argsort(rng.random((b, 9)), axis=1) + 1
    digit_map = np.concatenate([np.zeros((b, 1), dtype=np.int64), digits], axis=1)
    transpose = rng.random(b) < 0.5
    perms = []
    for _ in range(2):  # rows, then columns
        bands = np.argsort(rng.random((b, 3)), axis=1)
        inner = np.argsort(rng.random((b, 3, 3)), axis=2)
        perms.append((bands[:, :, None] * 3 + inner).reshape(b, 9))
    row_perm, col_perm = perms
    r = row_perm[:, :, None]
    c = col_perm[:, None, :]
    index = np.where(transpose[:, None, None], c * 9 + r, r * 9 + c).reshape(b, 81)
    index, digit_map = index.astype(np.int32), digit_map.astype(np.uint8)
    if batch is None:
        return index[0], digit_map[0]
    return index, digit_map


def apply_sudoku_shuffle(grid: np.ndarray, index: np.ndarray, digit_map: np.ndarray) -> np.ndarray:
    """Shuffles a 9x9 grid of digits 0..9 (0 = blank) with parameters from the sampler above."""
    grid = np.asarray(grid)
    return np.asarray(digit_map)[grid.reshape(-1)[np.asarray(index)]].reshape(grid.shape)


def invert_sudoku_shuffle(grid: np.ndarray, index: np.ndarray, digit_map: np.ndarray) -> np.ndarray:
    """Undoes :func:`apply_sudoku_shuffle` with the same parameters."""
    grid = np.asarray(grid)
    inv_map = np.argsort(np.asarray(digit_map))
    flat = inv_map[grid.reshape(-1)]
    out = np.empty_like(flat)
    out[np.asarray(index)] = flat
    return out.reshape(grid.shape)


def sudoku_shuffle(puzzle: np.ndarray, solution: np.ndarray, seed) -> tuple[np.ndarray, np.ndarray]:
    """One random Sudoku shuffle of (puzzle, solution) 9x9 digit grids; the same for both."""
    index, digit_map = sudoku_shuffle_params(seed)
    return apply_sudoku_shuffle(puzzle, index, digit_map), apply_sudoku_shuffle(
        solution, index, digit_map
    )


def sudoku_token_map(digit_map: np.ndarray) -> np.ndarray:
    """Digit maps uint8[..., 10] -> token maps uint8[..., 11] (PAD 0 and blank 1 fixed)."""
    digit_map = np.asarray(digit_map)
    pad = np.zeros(digit_map.shape[:-1] + (1,), dtype=np.uint8)
    return np.concatenate([pad, digit_map.astype(np.uint8) + 1], axis=-1)


def sudoku_shuffle_tokens(seqs: np.ndarray, index: np.ndarray, digit_map: np.ndarray) -> np.ndarray:
    """Batched shuffle of Sudoku token rows [B, 81] with per-row parameters ([B, 81], [B, 10])."""
    seqs = np.asarray(seqs)
    gathered = np.take_along_axis(seqs, np.asarray(index, dtype=np.intp), axis=1)
    lut = sudoku_token_map(digit_map)
    return np.take_along_axis(lut, gathered.astype(np.intp), axis=1)


# --------------------------------------------------------------------------------------------
# ARC


def arc_colour_perm(seed_or_rng) -> np.ndarray:
    """A random colour map uint8[10] that keeps 0 (black) fixed and permutes 1..9."""
    rng = _rng(seed_or_rng)
    return np.concatenate([[0], rng.permutation(9) + 1]).astype(np.uint8)


def apply_arc_augmentation(grid: np.ndarray, tid: int, perm: np.ndarray) -> np.ndarray:
    """Reference ARC augmentation: ``dihedral(perm[grid])``."""
    return dihedral_transform(np.asarray(perm)[np.asarray(grid)], tid)


def invert_arc_augmentation(grid: np.ndarray, tid: int, perm: np.ndarray) -> np.ndarray:
    """The evaluator's inverse: ``inv_perm[inverse_dihedral(grid)]`` with ``inv_perm = argsort``."""
    inv_perm = np.argsort(np.asarray(perm)).astype(np.uint8)
    return inv_perm[inverse_dihedral_transform(np.asarray(grid), tid)]


def arc_perm_digits(perm: np.ndarray) -> str:
    """The 10-digit string of a colour map used in augmented puzzle names."""
    return "".join(str(int(x)) for x in perm)


def arc_grid_dims(canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights and widths of the grids in canvases [B, S*S] placed at offset (0, 0)."""
    canvases = np.asarray(canvases)
    side = tok.arc_canvas_side(canvases.shape[-1])
    c = canvases.reshape(-1, side, side)
    colour = c >= tok.ARC_COLOUR_OFFSET
    return colour[:, :, 0].sum(1).astype(np.int32), colour[:, 0, :].sum(1).astype(np.int32)


def arc_augment_batch(
    canvases: np.ndarray,
    tids: np.ndarray,
    perms: np.ndarray,
    offsets: np.ndarray,
    dims: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Augments a batch of ARC canvases at offset (0, 0) in one vectorised pass.

    Row b becomes the canvas of ``dihedral(perms[b][grid_b], tids[b])`` placed at
    ``offsets[b] = (row, col)`` with EOS row/column, exactly as
    ``tokens.arc_grid_to_tokens(apply_arc_augmentation(grid, tid, perm), row, col, side)``, the
    canvas side S coming from the sequence length S*S (the dataset's ``seq_len``).
    ``dims`` (heights, widths) may be passed when known; they are measured otherwise.
    """
    canvases = np.asarray(canvases)
    b = canvases.shape[0]
    s = tok.arc_canvas_side(canvases.shape[1])
    h, w = arc_grid_dims(canvases) if dims is None else (np.asarray(dims[0]), np.asarray(dims[1]))
    tids = np.asarray(tids, dtype=np.intp)
    swap = _DIHEDRAL_SWAPS[tids]
    h2 = np.where(swap, w, h)[:, None, None]
    w2 = np.where(swap, h, w)[:, None, None]
    offsets = np.asarray(offsets, dtype=np.int32)
    u = np.arange(s, dtype=np.int32)[None, :, None] - offsets[:, 0, None, None]
    v = np.arange(s, dtype=np.int32)[None, None, :] - offsets[:, 1, None, None]
    coef = _DIHEDRAL_SRC[tids][:, :, None, None]
    hm1 = (h - 1)[:, None, None]
    wm1 = (w - 1)[:, None, None]
    src_r = coef[:, 0] * u + coef[:, 1] * v + coef[:, 2] * hm1
    src_c = coef[:, 3] * u + coef[:, 4] * v + coef[:, 5] * wm1
    inside_r = (u >= 0) & (u < h2)
    inside_c = (v >= 0) & (v < w2)
    inside = inside_r & inside_c
    src = (
        np.where(inside, src_r * s + src_c, 0)
        + (np.arange(b, dtype=np.int64) * (s * s))[:, None, None]
    )
    vals = canvases.reshape(-1)[src]
    lut = np.zeros((b, tok.ARC_VOCAB_SIZE), dtype=np.uint8)
    lut[:, tok.ARC_EOS] = tok.ARC_EOS
    lut[:, tok.ARC_COLOUR_OFFSET :] = np.asarray(perms, dtype=np.uint8) + tok.ARC_COLOUR_OFFSET
    vals = np.take_along_axis(lut, vals.reshape(b, -1).astype(np.intp), axis=1).reshape(b, s, s)
    eos = ((u == h2) & inside_c) | ((v == w2) & inside_r)
    out = np.where(inside, vals, np.where(eos, tok.ARC_EOS, tok.ARC_PAD)).astype(np.uint8)
    return out.reshape(b, s * s)
