"""One record per task (Sudoku, maze, ARC): the only place a task's rules live.

Each record knows its token map (``vocab_size``, ``seq_len``), reads and validates a puzzle
(:meth:`parse`, one sentence on bad input, as :class:`PuzzleError`), turns tokens back into a grid
(:meth:`decode`), judges an answer (:meth:`check`: Sudoku valid and keeping the givens, maze a
shortest S-G path, ARC equal to the expected grid), formats grids as text (:meth:`format`,
:meth:`format_answer`, :meth:`format_step`, :meth:`verdict`) and marks the cells the pictures draw
as wrong (:meth:`conflicts`). :func:`of_shape` says which task a model's (vocabulary, sequence
length) pair is; :func:`named` builds the record of a task name for a sequence length.

The token maps themselves are in :mod:`trm_jax.data.tokens` (reference §1.2-§1.4). Pure numpy:
``data_gen``, the pictures and the command-line tools use this module without JAX.

Adding a task: write a fourth record with the same fields and methods, add its name to
``NAMES`` and return it from :func:`of_shape` and :func:`named`; then a data source
(``data_gen/<task>.py`` writing a dataset with ``trm_jax.data.dataset.write_split(...,
task="<name>")``) and a config (``configs/<task>_*.py`` setting ``data.path``). Training,
``evaluate`` (exact accuracy), ``trm_jax.load(...).solve`` and ``solve --file`` then work unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from trm_jax.data import tokens as tok

__all__ = ["ARC", "MAZE", "SUDOKU", "Arc", "Maze", "PuzzleError", "Sudoku", "named", "of_shape"]

NAMES = ("sudoku", "maze", "arc")


class PuzzleError(ValueError):
    """A puzzle that is malformed or does not fit the model (one sentence)."""


def _square_side(n: int) -> int | None:
    side = math.isqrt(n)
    return side if side > 1 and side * side == n else None


# --------------------------------------------------------------------------------------------
# Sudoku

# The 27 units, type-major (rows, then columns, then boxes), as flat cell indices [27, 9].
_ROWS = [[r * 9 + c for c in range(9)] for r in range(9)]
_COLS = [[r * 9 + c for r in range(9)] for c in range(9)]
_BOXES = [[(3 * (b // 3) + i // 3) * 9 + 3 * (b % 3) + i % 3 for i in range(9)] for b in range(9)]
SUDOKU_UNITS = np.array(_ROWS + _COLS + _BOXES, dtype=np.intp)
_UNIT_NAMES = [f"{kind} {i + 1}" for kind in ("row", "column", "box") for i in range(9)]
_CHUNK = 16384  # rows per pass, so a CSV of millions of puzzles stays in memory


def _clash_counts(grids_Nx81: np.ndarray) -> np.ndarray:
    """[N, 27, 9]: how often the digit of each cell of each unit occurs in that unit (0 blank).

    Each cell adds ``1 << 4(d-1)`` to its unit's sum, so the sum holds nine 4-bit digit counts.
    """
    g = np.asarray(grids_Nx81, np.int64).reshape(-1, 81)
    out = np.zeros((g.shape[0], 27, 9), np.int8)
    for lo in range(0, g.shape[0], _CHUNK):
        cells = g[lo : lo + _CHUNK][:, SUDOKU_UNITS]  # [n, 27, 9]
        shift = 4 * np.maximum(cells - 1, 0)
        sums = np.where(cells > 0, np.left_shift(1, shift), 0).sum(axis=2, keepdims=True)
        out[lo : lo + _CHUNK] = np.where(cells > 0, (sums >> shift) & 15, 0)
    return out


@dataclasses.dataclass(frozen=True)
class Sudoku:
    """9x9 Sudoku: grids of ints 0..9 (0 = blank); tokens blank 1, digit d -> d + 1."""

    name: str = "sudoku"
    title: str = "Sudoku"
    one_per_line: bool = True  # `solve --file` reads one puzzle per line
    vocab_size: int = tok.SUDOKU_VOCAB_SIZE
    seq_len: int = tok.SUDOKU_SEQ_LEN
    shape_text: str = f"vocabulary {tok.SUDOKU_VOCAB_SIZE} and sequence length {tok.SUDOKU_SEQ_LEN}"

    def matches(self, vocab_size: int, seq_len: int) -> bool:
        return vocab_size == self.vocab_size and seq_len == self.seq_len

    # ---- rules ---------------------------------------------------------------------------

    def conflicts(self, grid: Any) -> np.ndarray:
        """bool [..., 9, 9]: filled cells whose digit appears again in their row, column or box."""
        g = np.asarray(grid)
        clash = _clash_counts(g) >= 2  # [N, 27, 9]
        mask = np.zeros((clash.shape[0], 81), bool)
        for kind in range(3):
            units = SUDOKU_UNITS[9 * kind : 9 * kind + 9].reshape(-1)
            mask[:, units] |= clash[:, 9 * kind : 9 * kind + 9].reshape(-1, 81)
        return mask.reshape(g.shape)

    def first_conflict(self, grid: Any) -> str | None:
        """The first contradiction (row 1, column 1, box 1, row 2, ...) of one grid, or None."""
        g = np.asarray(grid).reshape(81)
        counts = _clash_counts(g[None])[0]
        for i in range(9):
            for u in (i, 9 + i, 18 + i):
                twice = g[SUDOKU_UNITS[u]][counts[u] >= 2]
                if twice.size:
                    return f"digit {int(twice.min())} appears twice in {_UNIT_NAMES[u]}"
        return None

    def valid(self, grids: Any) -> np.ndarray:
        """bool [N]: complete grids (every cell 1..9) that obey the Sudoku rules."""
        g = np.asarray(grids, np.int64).reshape(-1, 81)
        full = ((g >= 1) & (g <= 9)).all(axis=1)
        return full & ~(_clash_counts(g) >= 2).any(axis=(1, 2))

    def keeps_givens(self, puzzles: Any, answers: Any) -> np.ndarray:
        """bool [N]: each answer has the digits its puzzle gives."""
        p = np.asarray(puzzles, np.int64).reshape(-1, 81)
        a = np.asarray(answers, np.int64).reshape(-1, 81)
        return ((p == 0) | (p == a)).all(axis=1)

    def check(self, puzzle: Any, answer: Any, expected: Any = None) -> tuple[bool, str]:
        """(solved, why): a complete valid grid that keeps the givens of ``puzzle``."""
        a = np.asarray(answer)
        if a.shape != (9, 9):
            return False, f"the answer is not a 9x9 grid (shape {a.shape})"
        if not self.valid(a)[0]:
            problem = self.first_conflict(a)
            return False, problem or "the answer has blank cells"
        if not self.keeps_givens(puzzle, a)[0]:
            return False, "the answer changes a given"
        return True, "a valid solution that keeps the givens"

    # ---- tokens --------------------------------------------------------------------------

    def parse(self, puzzle: Any) -> np.ndarray:
        """An 81-character string ('.' or '0' blank) or 9x9 ints -> uint8 tokens [81].

        The givens must not contradict each other.
        """
        if isinstance(puzzle, str):
            puzzle = puzzle.strip()
        try:
            tokens = tok.sudoku_to_tokens(puzzle)
        except ValueError as e:
            raise PuzzleError(str(e)) from None
        conflict = self.first_conflict(tokens.astype(np.int64) - 1)
        if conflict:
            raise PuzzleError(f"the givens contradict each other: {conflict}.")
        return tokens

    def decode(self, tokens: Any) -> np.ndarray:
        """Tokens [81] -> int 9x9 grid (0 where the token is not a digit)."""
        d = np.asarray(tokens).reshape(-1).astype(np.int64) - 1
        return np.where((d >= 1) & (d <= 9), d, 0).reshape(9, 9)

    # ---- text ----------------------------------------------------------------------------

    def format(self, grid: Any) -> list[str]:
        g = np.asarray(grid)
        rows = []
        for r in range(9):
            cells = ["." if d == 0 else str(int(d)) for d in g[r]]
            rows.append(" | ".join(" ".join(cells[i : i + 3]) for i in (0, 3, 6)))
            if r in (2, 5):
                rows.append("------+-------+------")
        return rows

    def one_line(self, grid: Any) -> str:
        return "".join(str(int(d)) if d else "." for d in np.asarray(grid).reshape(-1))

    def format_answer(self, puzzle: Any, answer: Any) -> list[str]:
        body = _side_by_side(["puzzle"] + self.format(puzzle), ["answer"] + self.format(answer))
        return body + ["answer: " + self.one_line(answer)]

    def format_step(self, grid: Any) -> list[str]:
        return [self.one_line(grid)]

    def verdict(self, puzzle: Any, answer: Any, expected: Any = None) -> str:
        ok, _ = self.check(puzzle, answer)
        return f"valid solution that keeps the givens: {'yes' if ok else 'no'}"


# --------------------------------------------------------------------------------------------
# Maze


def bfs(open_: Sequence[bool], start: int, side: int) -> tuple[list[int], list[int]]:
    """Distances (-1 = unreachable) and numbers of shortest paths (capped at 2) from ``start``
    over the open cells of a ``side`` x ``side`` grid (flat, row-major); moves to 4 neighbours."""
    n = side * side
    dist = [-1] * n
    count = [0] * n
    dist[start] = 0
    count[start] = 1
    frontier = [start]
    d = 0
    while frontier:
        d += 1
        nxt = []
        for i in frontier:
            ci = count[i]
            r, c = divmod(i, side)
            for j, ok in (
                (i - side, r > 0),
                (i + side, r < side - 1),
                (i - 1, c > 0),
                (i + 1, c < side - 1),
            ):
                if not ok or not open_[j]:
                    continue
                dj = dist[j]
                if dj < 0:
                    dist[j] = d
                    count[j] = ci
                    nxt.append(j)
                elif dj == d:
                    count[j] = min(2, count[j] + ci)
        frontier = nxt
    return dist, count


def shortest_path(open_: Sequence[bool], start: int, goal: int, side: int) -> tuple[list[int], int]:
    """(cells of one shortest path from start to goal inclusive, number of shortest paths capped
    at 2); ([], 0) when the goal is unreachable."""
    dist, count = bfs(open_, start, side)
    if dist[goal] < 0:
        return [], 0
    path = [goal]
    i = goal
    while i != start:
        r, c = divmod(i, side)
        for j, ok in (
            (i - side, r > 0),
            (i + side, r < side - 1),
            (i - 1, c > 0),
            (i + 1, c < side - 1),
        ):
            if ok and dist[j] == dist[i] - 1:
                i = j
                break
        path.append(i)
    path.reverse()
    return path, count[goal]


@dataclasses.dataclass(frozen=True)
class Maze:
    """A ``side`` x ``side`` maze over '#', ' ', 'S', 'G'; the answer marks a shortest path 'o'."""

    side: int = 30
    name: str = "maze"
    title: str = "maze"
    one_per_line: bool = True
    vocab_size: int = tok.MAZE_VOCAB_SIZE
    shape_text: str = f"vocabulary {tok.MAZE_VOCAB_SIZE} and a square sequence length"

    @property
    def seq_len(self) -> int:
        return self.side * self.side

    def matches(self, vocab_size: int, seq_len: int) -> bool:
        return vocab_size == self.vocab_size and _square_side(seq_len) is not None

    # ---- reading -------------------------------------------------------------------------

    def rows(self, puzzle: Any) -> list[str]:
        """A maze as text (lines, or one line of side^2 characters) or a grid -> its rows."""
        if isinstance(puzzle, str):
            text = puzzle.replace("\r\n", "\n").replace("\r", "\n")
            rows = text.split("\n")
            while rows and rows[-1] == "":
                rows.pop()
            if len(rows) == 1:
                side = _square_side(len(rows[0]))
                if side:
                    rows = [rows[0][i : i + side] for i in range(0, len(rows[0]), side)]
            return rows
        a = np.asarray(puzzle)
        if a.ndim == 1:
            return [str(r) for r in a]
        if a.ndim == 2:
            return ["".join(str(ch) for ch in r) for r in a]
        raise PuzzleError(f"a maze must be text or a 2-D grid of characters, got shape {a.shape}.")

    def problem(self, rows: list[str]) -> str | None:
        """What is wrong with a maze question (without a final period), or None."""
        side = self.side
        if len(rows) != side or any(len(r) != side for r in rows):
            widths = sorted({len(r) for r in rows}) or [0]
            shown = widths[0] if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"
            return (
                f"the maze must be {side} lines of {side} characters, got {len(rows)} lines of "
                f"{shown} characters"
            )
        text = "".join(rows)
        bad = sorted(set(text) - set("# SG"))
        if bad:
            return f"the maze may hold only '#', ' ', 'S' and 'G', found {bad[0]!r}"
        for ch, what in (("S", "start"), ("G", "goal")):
            n = text.count(ch)
            if n != 1:
                return f"the maze has {'no' if n == 0 else n} '{ch}' ({what}); it needs exactly one"
        return None

    def line_problem(self, line: str) -> str | None:
        """What is wrong with a maze question written on one line (row-major), or None."""
        if len(line) != self.seq_len:
            side = self.side
            return f"expected {self.seq_len} characters (a {side}x{side} maze), got {len(line)}"
        return self.problem(self.rows(line))

    def parse(self, puzzle: Any) -> np.ndarray:
        """A maze question (text or grid) -> uint8 tokens [side^2]."""
        rows = self.rows(puzzle)
        problem = self.problem(rows)
        if problem:
            raise PuzzleError(problem + ".")
        return tok.maze_to_tokens("".join(rows))

    def decode(self, tokens: Any) -> np.ndarray:
        """Tokens -> grid of characters ('?' where the token is not a maze cell)."""
        t = np.asarray(tokens).reshape(-1)
        side = math.isqrt(t.size)
        chars = np.array(["?"] + list(tok.MAZE_CHARSET))
        return chars[np.where((t >= 1) & (t < tok.MAZE_VOCAB_SIZE), t, 0)].reshape(side, side)

    # ---- rules ---------------------------------------------------------------------------

    def solve(self, question: str) -> tuple[str | None, int, int]:
        """(answer or None, path length in steps, number of shortest paths capped at 2) of a
        valid question string (row-major)."""
        side = _square_side(len(question)) or self.side
        open_ = [ch != "#" for ch in question]
        path, n = shortest_path(open_, question.index("S"), question.index("G"), side)
        if not n:
            return None, -1, 0
        return self.mark_path(question, path), len(path) - 1, n

    def mark_path(self, question: str, path: Sequence[int]) -> str:
        """The question with the path cells strictly between S and G marked 'o'."""
        cells = list(question)
        for i in path[1:-1]:
            cells[i] = "o"
        return "".join(cells)

    def check(self, puzzle: Any, answer: Any, expected: Any = None) -> tuple[bool, str]:
        """(solved, why): ``answer`` marks a shortest S-G path with 'o' and changes nothing else."""
        q, a = np.asarray(puzzle), np.asarray(answer)
        if a.shape != q.shape:
            return False, f"the answer has shape {a.shape}, the maze {q.shape}"
        path = a == "o"
        if not np.array_equal(np.where(path, " ", a), q):
            return False, "the answer changes cells other than by marking the path"
        if (path & (q != " ")).any():
            return False, "the path crosses a wall"
        side = q.shape[0]
        flat = q.reshape(-1)
        start, goal = int(np.flatnonzero(flat == "S")[0]), int(np.flatnonzero(flat == "G")[0])
        shortest = bfs(flat != "#", start, side)[0][goal]
        marked = bfs(path.reshape(-1) | (flat == "G"), start, side)[0][goal]
        n = int(path.sum())
        if marked < 0:
            return False, f"the {n} marked cells do not connect S to G"
        if shortest >= 0 and n == shortest - 1 and marked == shortest:
            return True, f"a shortest S-G path of {shortest} steps"
        shown = f"{shortest} steps" if shortest >= 0 else "G unreachable"
        return False, f"the marked path ({n} cells) is not a shortest S-G path ({shown})"

    def conflicts(self, grid: Any) -> np.ndarray:
        """No cell of a maze is wrong on its own: all False."""
        return np.zeros(np.shape(grid), bool)

    # ---- text ----------------------------------------------------------------------------

    def format(self, grid: Any) -> list[str]:
        return ["".join(row) for row in np.asarray(grid)]

    def format_answer(self, puzzle: Any, answer: Any) -> list[str]:
        return self.format(answer)

    def format_step(self, grid: Any) -> list[str]:
        return self.format(grid)

    def verdict(self, puzzle: Any, answer: Any, expected: Any = None) -> str:
        ok, why = self.check(puzzle, answer)
        return f"shortest path: {'yes' if ok else 'no'} ({why})"


# --------------------------------------------------------------------------------------------
# ARC


@dataclasses.dataclass(frozen=True)
class Arc:
    """ARC: grids of colours 0..9 on a ``side`` x ``side`` canvas (PAD 0, EOS 1, colour + 2)."""

    side: int = tok.ARC_SIDE
    name: str = "arc"
    title: str = "ARC"
    one_per_line: bool = False  # tasks come as Kaggle JSON (`solve --arc-task`)
    vocab_size: int = tok.ARC_VOCAB_SIZE

    @property
    def seq_len(self) -> int:
        return self.side * self.side

    @property
    def shape_text(self) -> str:
        return f"vocabulary {self.vocab_size} and sequence length {self.seq_len}"

    def matches(self, vocab_size: int, seq_len: int) -> bool:
        return vocab_size == self.vocab_size and seq_len == self.seq_len

    def check_grid(self, grid: Any, what: str = "grid") -> np.ndarray:
        """A validated grid (uint8 [h, w]) that fits the canvas; ValueError (one sentence)."""
        return tok.check_arc_grid(grid, what, side=self.side)

    def parse(self, puzzle: Any) -> np.ndarray:
        """An ARC grid (ints 0..9, at most side x side) -> uint8 tokens [side^2]."""
        try:
            return tok.arc_grid_to_tokens(puzzle, side=self.side)
        except ValueError as e:
            raise PuzzleError(str(e)) from None

    def decode(self, tokens: Any) -> np.ndarray:
        """Tokens -> the evaluator's crop of the canvas (int grid, possibly 0x0)."""
        return tok.arc_crop(np.asarray(tokens).reshape(-1)).astype(np.int64)

    def check(self, puzzle: Any, answer: Any, expected: Any = None) -> tuple[bool, str]:
        """(solved, why): ``answer`` equals ``expected`` (shape and every colour)."""
        if expected is None:
            return False, "no expected output to compare with"
        a, e = np.asarray(answer), np.asarray(expected)
        if a.shape != e.shape:
            return False, f"the answer is {_dims(a)}, the expected output {_dims(e)}"
        wrong = int((a != e).sum())
        if wrong:
            return False, f"{wrong} of {e.size} cells differ from the expected output"
        return True, "equals the expected output"

    def conflicts(self, grid: Any) -> np.ndarray:
        """No cell of an ARC grid is wrong on its own: all False."""
        return np.zeros(np.shape(grid), bool)

    def format(self, grid: Any) -> list[str]:
        g = np.asarray(grid)
        if g.size == 0:
            return ["(empty grid)"]
        return [" ".join(str(int(v)) for v in row) for row in g]

    def format_answer(self, puzzle: Any, answer: Any) -> list[str]:
        return ["input"] + self.format(puzzle) + ["answer"] + self.format(answer)

    def format_step(self, grid: Any) -> list[str]:
        return self.format(grid)

    def verdict(self, puzzle: Any, answer: Any, expected: Any = None) -> str | None:
        if expected is None:
            return None
        ok, _ = self.check(puzzle, answer, expected)
        return f"matches the expected output: {'yes' if ok else 'no'}"


def _dims(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape)) if a.ndim == 2 else f"of shape {a.shape}"


def _side_by_side(left: list[str], right: list[str], gap: str = "    ") -> list[str]:
    w = max(len(s) for s in left)
    n = max(len(left), len(right))
    left = left + [""] * (n - len(left))
    right = right + [""] * (n - len(right))
    return [f"{a.ljust(w)}{gap}{b}".rstrip() for a, b in zip(left, right)]


SUDOKU = Sudoku()
MAZE = Maze()
ARC = Arc()
Task = Sudoku | Maze | Arc


def of_shape(vocab_size: int, seq_len: int) -> Task | None:
    """The task of a model with this vocabulary and sequence length, or None.

    Sudoku 11/81, maze 6/side^2 (any square), ARC 12/900.
    """
    if SUDOKU.matches(vocab_size, seq_len):
        return SUDOKU
    if MAZE.matches(vocab_size, seq_len):
        return Maze(side=math.isqrt(seq_len))
    if ARC.matches(vocab_size, seq_len):
        return ARC
    return None


def named(name: str, seq_len: int | None = None) -> Task:
    """The record of task ``name`` (sudoku, maze, arc), sized for ``seq_len`` where it varies."""
    side = _square_side(seq_len) if seq_len else None
    if name == "sudoku":
        return SUDOKU
    if name == "maze":
        return Maze(side=side) if side else MAZE
    if name == "arc":
        return Arc(side=side) if side else ARC
    raise PuzzleError(f"task must be one of {NAMES}, got {name!r}.")
