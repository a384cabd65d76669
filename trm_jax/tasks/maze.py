"""The maze record: a square grid of walls, S and G; the answer marks a shortest path."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from trm_jax.data import tokens as tok
from trm_jax.tasks.base import PuzzleError, square_side

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
        # The neighbour one step closer to the start, tried in the order bfs steps (up, down,
        # left, right); a step of -1 / +1 must stay in the row.
        i = next(
            j
            for j in (i - side, i + side, i - 1, i + 1)
            if 0 <= j < side * side and (j % side == c or j // side == r) and dist[j] == dist[i] - 1
        )
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
        return vocab_size == self.vocab_size and square_side(seq_len) is not None

    # ---- reading -------------------------------------------------------------------------

    def rows(self, puzzle: Any) -> list[str]:
        """A maze as text (lines, or one line of side^2 characters) or a grid -> its rows."""
        if isinstance(puzzle, str):
            text = puzzle.replace("\r\n", "\n").replace("\r", "\n")
            rows = text.split("\n")
            while rows and rows[-1] == "":
                rows.pop()
            if len(rows) == 1:
                side = square_side(len(rows[0]))
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
        side = square_side(len(question)) or self.side
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


MAZE = Maze()
