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
  evaluator does (§6 step 2); :func:`arc_canvas_side` gives S from a sequence length.

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
    side = int(round(n**0.5))
    if n == 0 or side * side != n:
        raise ValueError(f"a maze string must have a square length, got {n} characters.")
    bad = sorted(set(maze) - set(MAZE_CHARSET))
    if bad:
        raise ValueError(f"a maze string may hold only {list(MAZE_CHARSET)}, found {bad}.")
    return _MAZE_LUT[np.frombuffer(maze.encode(), dtype=np.uint8)]


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


def arc_crop(tokens: np.ndarray, side: int = ARC_SIDE) -> np.ndarray:
    """The evaluator's crop (reference §6 step 2): tokens[side*side] -> grid of colours 0..9.

    Takes the largest top-left-anchored rectangle whose cells are all colour tokens: rows are
    scanned top to bottom with a column limit that shrinks to the first non-colour token of each
    row; the rectangle of largest area ``rows x limit`` (first one on ties) is returned minus 2.
    The result may be empty (shape (0, 0)) when the top-left cell is not a colour.
    """
    t = np.asarray(tokens)
    if t.size != side * side:
        raise ValueError(f"ARC tokens must have {side * side} entries, got {t.size}.")
    canvas = t.reshape(side, side)
    is_colour = (canvas >= ARC_COLOUR_OFFSET) & (canvas < ARC_VOCAB_SIZE)
    best_area, best = 0, (0, 0)
    limit = side
    for r in range(side):
        stops = np.flatnonzero(~is_colour[r, :limit])
        if stops.size:
            limit = int(stops[0])
        if limit == 0:
            break
        area = (r + 1) * limit
        if area > best_area:
            best_area, best = area, (r + 1, limit)
    return canvas[: best[0], : best[1]].astype(np.int64) - ARC_COLOUR_OFFSET


def arc_tokens_to_grid(tokens: np.ndarray, side: int = ARC_SIDE) -> np.ndarray:
    """Inverse of :func:`arc_grid_to_tokens` at offset (0, 0): the crop of the canvas."""
    return arc_crop(tokens, side)
