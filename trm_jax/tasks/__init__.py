"""One record per task (Sudoku, maze, ARC), one module each: the only place a task's rules live.

Each record knows its token map (``vocab_size``, ``seq_len``), reads and validates a puzzle
(:meth:`parse`, one sentence on bad input, as :class:`PuzzleError`), turns tokens back into a grid
(:meth:`decode`), judges an answer (:meth:`check`: Sudoku valid and keeping the givens, maze a
shortest S-G path, ARC equal to the expected grid), formats grids as text (:meth:`format`,
:meth:`format_answer`, :meth:`format_step`, :meth:`verdict`) and marks the cells the pictures draw
as wrong (:meth:`conflicts`). :func:`of_shape` says which task a model's (vocabulary, sequence
length) pair is; :func:`named` builds the record of a task name for a sequence length.

The token maps themselves are in :mod:`trm_jax.data.tokens` (reference §1.2-§1.4). Pure numpy:
``data_gen``, the pictures and the command-line tools use this module without JAX.

Adding a task: a module ``tasks/<name>.py`` with a record of the same fields and methods as
the other three, its name in ``NAMES`` and a case in :func:`of_shape` and :func:`named`; then a
data source (``data_gen/<name>.py`` writing a dataset with ``trm_jax.data.dataset.write_split(...,
task="<name>")``) and a config (``configs/<name>_*.py`` setting ``data.path``). Training,
``evaluate`` (exact accuracy), ``trm_jax.load(...).solve`` and ``solve --file`` then work
unchanged.
"""

from __future__ import annotations

import math

from trm_jax.tasks.arc import ARC, Arc
from trm_jax.tasks.base import PuzzleError, square_side
from trm_jax.tasks.maze import MAZE, Maze, bfs, shortest_path
from trm_jax.tasks.sudoku import SUDOKU, Sudoku

__all__ = [
    "ARC",
    "MAZE",
    "NAMES",
    "SUDOKU",
    "Arc",
    "Maze",
    "PuzzleError",
    "Sudoku",
    "Task",
    "bfs",
    "named",
    "of_shape",
    "shortest_path",
]

NAMES = ("sudoku", "maze", "arc")

Task = Sudoku | Maze | Arc


def of_shape(vocab_size: int, seq_len: int) -> Task | None:
    """The task of a model with this vocabulary and sequence length, or None.

    Sudoku 11/81, maze 6/side^2 and ARC 12/side^2 (any square canvas).
    """
    if SUDOKU.matches(vocab_size, seq_len):
        return SUDOKU
    if MAZE.matches(vocab_size, seq_len):
        return Maze(side=math.isqrt(seq_len))
    if ARC.matches(vocab_size, seq_len):
        return Arc(side=math.isqrt(seq_len))
    return None


def named(name: str, seq_len: int | None = None) -> Task:
    """The record of task ``name`` (sudoku, maze, arc), sized for ``seq_len`` where it varies."""
    side = square_side(seq_len) if seq_len else None
    if name == "sudoku":
        return SUDOKU
    if name == "maze":
        return Maze(side=side) if side else MAZE
    if name == "arc":
        return Arc(side=side) if side else ARC
    raise PuzzleError(f"task must be one of {NAMES}, got {name!r}.")
