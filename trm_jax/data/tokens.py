"""Token maps: puzzles (strings, grids) <-> token sequences, as the reference builders define them.

- Sudoku (reference §1.2): 81 cells row-major; ``'.'`` or ``'0'`` (blank) -> 1, digit d -> d + 1;
  0 is PAD and never appears. Vocabulary 11.
- Maze (§1.3): a square grid row-major over the charset ``"# SGo"``: ``'#'`` = 1 (wall),
  ``' '`` = 2 (open), ``'S'`` = 3, ``'G'`` = 4, ``'o'`` = 5 (path); 0 is PAD. Vocabulary 6.
- ARC (§1.4): a square canvas of side S (30 in the reference, length 900; a dataset may choose a
  smaller one, e.g. 10 for grids of at most 10x10, length 100); PAD = 0, EOS = 1, colour c -> c + 2.
  The grid sits at a translation offset (row, col); EOS marks the row just below the grid and the
  column just right of it where these fall inside the canvas (the corner cell below-right is not
  set). Vocabulary 12, length S*S. :func:`arc_crop` recovers a grid from a canvas the way the ARC
  evaluator does (§6 step 2; :func:`arc_crop_batch` for many rows); :func:`arc_canvas_side`
  gives S from a sequence length.

Bad input raises ``ValueError`` with one sentence naming what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Sudoku
SUDOKU_SIDE = 9
SUDOKU_SEQ_LEN = 81
SUDOKU_VOCAB_SIZE = 11
SUDOKU_BLANK = 1  # token of an empty cell; digit d is token d + 1

# Maze
MAZE_CHARSET = "# SGo"
MAZE_VOCAB_SIZE = 6

# ARC
ARC_SIDE = 30
ARC_SEQ_LEN = ARC_SIDE * ARC_SIDE
ARC_PAD = 0
ARC_EOS = 1
ARC_COLOUR_OFFSET = 2
ARC_NUM_COLOURS = 10
ARC_VOCAB_SIZE = ARC_COLOUR_OFFSET + ARC_NUM_COLOURS

PAD_ID = 0


# --------------------------------------------------------------------------------------------
# Sudoku


def sudoku_to_tokens(puzzle: str | Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """An 81-character string ('.' or '0' blank, '1'-'9') or a 9x9 grid of 0..9 -> uint8[81]."""
    if isinstance(puzzle, str):
        if len(puzzle) != SUDOKU_SEQ_LEN:
            raise ValueError(
                f"a Sudoku string must have {SUDOKU_SEQ_LEN} characters, got {len(puzzle)}."
            )
        bad = sorted(set(puzzle) - set(".0123456789"))
        if bad:
            raise ValueError(f"a Sudoku string may hold only '.' and '0'-'9', found {bad}.")
        digits = np.frombuffer(puzzle.replace(".", "0").encode(), dtype=np.uint8) - ord("0")
        return (digits + 1).astype(np.uint8)
    grid = np.asarray(puzzle)
    if grid.shape != (SUDOKU_SIDE, SUDOKU_SIDE) or not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"a Sudoku grid must be 9x9 integers, got shape {grid.shape}.")
    if grid.min() < 0 or grid.max() > 9:
        raise ValueError("a Sudoku grid may hold only 0 (blank) to 9.")
    return (grid.reshape(-1) + 1).astype(np.uint8)


def tokens_to_sudoku_grid(tokens: np.ndarray) -> np.ndarray:
    """uint8[81] tokens -> int 9x9 grid with 0 for blank."""
    t = np.asarray(tokens)
    if t.shape != (SUDOKU_SEQ_LEN,):
        raise ValueError(f"Sudoku tokens must have shape (81,), got {t.shape}.")
    if t.min() < 1 or t.max() >= SUDOKU_VOCAB_SIZE:
        raise ValueError("Sudoku tokens must be in 1..10 (blank or digit).")
    return (t.astype(np.int64) - 1).reshape(SUDOKU_SIDE, SUDOKU_SIDE)


def tokens_to_sudoku(tokens: np.ndarray) -> str:
    """uint8[81] tokens -> 81-character string with '.' for blank."""
    grid = tokens_to_sudoku_grid(tokens).reshape(-1)
    return "".join("." if d == 0 else str(d) for d in grid)


# --------------------------------------------------------------------------------------------
# Maze

_MAZE_LUT = np.zeros(256, dtype=np.uint8)
for _i, _ch in enumerate(MAZE_CHARSET):
    _MAZE_LUT[ord(_ch)] = _i + 1


def maze_to_tokens(maze: str) -> np.ndarray:
    """A square maze string over ``"# SGo"`` (row-major) -> uint8[side*side]."""
    n = len(maze)
    side = math.isqrt(n)
    if n == 0 or side * side != n:
        raise ValueError(f"a maze string must have a square length, got {n} characters.")
    return mazes_to_tokens([maze], n)[0]


def mazes_to_tokens(mazes: Sequence[str], seq_len: int) -> np.ndarray:
    """Maze strings of ``seq_len`` characters over ``"# SGo"`` -> uint8 [N, seq_len]."""
    if not mazes:
        return np.zeros((0, seq_len), dtype=np.uint8)
    wrong = [len(m) for m in mazes if len(m) != seq_len]
    if wrong:
        raise ValueError(f"a maze string must have {seq_len} characters, got {wrong[0]}.")
    text = "".join(mazes)
    bad = sorted(set(text) - set(MAZE_CHARSET))
    if bad:
        raise ValueError(f"a maze string may hold only {list(MAZE_CHARSET)}, found {bad}.")
    return _MAZE_LUT[np.frombuffer(text.encode(), dtype=np.uint8)].reshape(-1, seq_len)


def tokens_to_maze(tokens: np.ndarray) -> str:
    """uint8[side*side] tokens -> maze string."""
    t = np.asarray(tokens).reshape(-1)
    if t.size == 0 or t.min() < 1 or t.max() >= MAZE_VOCAB_SIZE:
        raise ValueError("maze tokens must be in 1..5.")
    return "".join(MAZE_CHARSET[int(i) - 1] for i in t)


# --------------------------------------------------------------------------------------------
# ARC


def arc_canvas_side(seq_len: int) -> int:
    """The side S of an ARC canvas of ``seq_len = S*S`` tokens."""
    side = math.isqrt(max(int(seq_len), 0))
    if side < 1 or side * side != seq_len:
        raise ValueError(f"ARC sequences are square canvases, but length {seq_len} is not S*S.")
    return side


def check_arc_grid(grid, what: str = "grid", side: int = ARC_SIDE) -> np.ndarray:
    """Validates an ARC grid (list of lists or array) that must fit a ``side`` x ``side`` canvas
    and returns it as uint8[h, w]."""
    try:
        a = np.asarray(grid)
    except ValueError:
        raise ValueError(f"the {what} must be a rectangular list of rows.") from None
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"the {what} must be a non-empty rectangle of rows, got shape {a.shape}.")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"the {what} must hold integer colours, got dtype {a.dtype}.")
    h, w = a.shape
    if h > side or w > side:
        raise ValueError(f"the {what} is {h}x{w}, larger than the {side}x{side} canvas.")
    if a.min() < 0 or a.max() > 9:
        raise ValueError(f"the {what} holds colours outside 0-9 ({int(a.min())}..{int(a.max())}).")
    return a.astype(np.uint8)


def arc_grid_to_tokens(grid, pad_r: int = 0, pad_c: int = 0, side: int = ARC_SIDE) -> np.ndarray:
    """An ARC grid placed at (pad_r, pad_c) in the ``side`` x ``side`` canvas (30: the
    reference's) -> uint8[side*side] (reference §1.4)."""
    a = check_arc_grid(grid, side=side)
    h, w = a.shape
    if pad_r < 0 or pad_c < 0 or pad_r + h > side or pad_c + w > side:
        raise ValueError(f"a {h}x{w} grid at offset ({pad_r}, {pad_c}) does not fit the canvas.")
    canvas = np.full((side, side), ARC_PAD, dtype=np.uint8)
    canvas[pad_r : pad_r + h, pad_c : pad_c + w] = a + ARC_COLOUR_OFFSET
    if pad_r + h < side:
        canvas[pad_r + h, pad_c : pad_c + w] = ARC_EOS
    if pad_c + w < side:
        canvas[pad_r : pad_r + h, pad_c + w] = ARC_EOS
    return canvas.reshape(-1)


def arc_crop_batch(tokens) -> list[np.ndarray]:
    """The evaluator's crop (reference §6 step 2) of every row of ``tokens [B, S*S]`` (or
    ``[B, S, S]``): uint8 grids of colours 0..9.

    Each row is an S x S canvas. The crop is the largest top-left-anchored rectangle whose cells
    are all colour tokens: scanning rows r = 1..S with a column limit starting at S, the limit
    shrinks to the first non-colour token of row r within the current limit, and the rectangle
    r x limit of largest area wins (the first on ties; no colour at the top-left gives 0 x 0).
    """
    tokens = np.asarray(tokens)
    if tokens.ndim == 2:
        side = math.isqrt(tokens.shape[1])
        if side * side != tokens.shape[1]:
            raise ValueError(f"cannot view sequences of length {tokens.shape[1]} as square grids.")
        tokens = tokens.reshape(tokens.shape[0], side, side)
    if tokens.ndim != 3 or tokens.shape[1] != tokens.shape[2]:
        raise ValueError(f"expected tokens [B, S*S] or [B, S, S], got shape {tokens.shape}.")
    batch, side, _ = tokens.shape
    if batch == 0:
        return []
    is_colour = (tokens >= ARC_COLOUR_OFFSET) & (tokens < ARC_VOCAB_SIZE)
    # First non-colour column of each row (S if the whole row is colours) ...
    first_bad = np.where(is_colour.all(axis=2), side, np.argmin(is_colour, axis=2))
    # ... and the running column limit, which can only shrink down the rows.
    limit = np.minimum.accumulate(first_bad, axis=1)
    area = limit * np.arange(1, side + 1)[None, :]
    best_row = np.argmax(area, axis=1)  # first maximum, as a strict '>' scan keeps
    best_area = area[np.arange(batch), best_row]
    num_rows = np.where(best_area > 0, best_row + 1, 0)
    num_cols = np.where(best_area > 0, limit[np.arange(batch), best_row], 0)
    return [
        (tokens[b, : num_rows[b], : num_cols[b]] - ARC_COLOUR_OFFSET).astype(np.uint8)
        for b in range(batch)
    ]


def arc_crop(tokens, side: int | None = None) -> np.ndarray:
    """The crop of one canvas ``[S*S]`` (or ``[S, S]``); see :func:`arc_crop_batch`. ``side``,
    when given, is checked against the number of tokens."""
    t = np.asarray(tokens)
    if side is not None and t.size != side * side:
        raise ValueError(f"ARC tokens must have {side * side} entries, got {t.size}.")
    return arc_crop_batch(t.reshape(1, -1))[0]


def arc_tokens_to_grid(tokens: np.ndarray, side: int = ARC_SIDE) -> np.ndarray:
    """Inverse of :func:`arc_grid_to_tokens` at offset (0, 0): the crop of the canvas."""
    return arc_crop(tokens, side)
