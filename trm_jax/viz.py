"""Refinement strips: the puzzle and the decoded answer after each supervision step, as a PNG.

One frame per supervision step (the input first), the cells that changed since the previous frame
highlighted, and ``q_halt`` with its sigmoid (the model's belief that the answer is right) under
each frame; the frame whose prediction is the answer is marked. Frames wrap into rows of at most
``max_cols``. Sudoku frames show digits (givens black, filled-in digits blue, a changed given or
a digit that clashes with its row, column or box red; a frame that is not a valid solution says
"invalid" and, as the answer, is framed red instead of green); maze and ARC frames are coloured
cells. Uses matplotlib's object API with the Agg canvas, so
it never touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import math
import os

import numpy as np

from trm_jax import tasks

CHANGED = "#ffd43b"  # highlight of cells that changed since the previous frame
# The usual ARC palette, colours 0..9.
ARC_COLOURS = (
    "#000000",
    "#0074d9",
    "#ff4136",
    "#2ecc40",
    "#ffdc00",
    "#aaaaaa",
    "#f012be",
    "#ff851b",
    "#7fdbff",
    "#870c25",
)
MAZE_COLOURS = {"#": "#343a40", " ": "#ffffff", "S": "#2f9e44", "G": "#e03131", "o": "#1c7ed6"}
UNKNOWN = "#cc5de8"  # a token that is not a valid cell of the task


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4))


def _image(grid: np.ndarray, task: str) -> np.ndarray:
    """An RGB image [h, w, 3] of a maze (characters) or ARC (ints) grid."""
    g = np.asarray(grid)
    img = np.zeros(g.shape + (3,), np.float32)
    if task == "maze":
        img[:] = _rgb(UNKNOWN)
        for ch, colour in MAZE_COLOURS.items():
            img[g == ch] = _rgb(colour)
    else:
        img[:] = _rgb(UNKNOWN)
        for c, colour in enumerate(ARC_COLOURS):
            img[g == c] = _rgb(colour)
    return img


def changed_cells(prev: np.ndarray | None, cur: np.ndarray) -> np.ndarray | None:
    """bool mask of cells that differ from the previous frame; None if the shapes differ."""
    if prev is None:
        return np.zeros(np.shape(cur), bool)
    prev, cur = np.asarray(prev), np.asarray(cur)
    if prev.shape != cur.shape:
        return None
    return prev != cur


def _draw_sudoku(ax, puzzle, grid, changed) -> None:
    from matplotlib.patches import Rectangle

    givens = np.asarray(puzzle) > 0
    conflicts = tasks.SUDOKU.conflicts(grid)
    for r in range(9):
        for c in range(9):
            if changed is not None and changed[r, c]:
                ax.add_patch(Rectangle((c, r), 1, 1, color=CHANGED, lw=0))
            d = int(grid[r, c])
            if d == 0:
                continue
            given = bool(givens[r, c])
            if given and d == puzzle[r, c]:
                colour, weight = "black", "bold"
            elif given:
                colour, weight = "#e03131", "bold"  # a given the model overwrote
            elif conflicts[r, c]:
                colour, weight = "#e03131", "normal"  # clashes with its row, column or box
            else:
                colour, weight = "#1c7ed6", "normal"
            ax.text(
                c + 0.5,
                r + 0.52,
                str(d),
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
                fontweight=weight,
            )
    for i in range(10):
        lw = 1.2 if i % 3 == 0 else 0.3
        ax.plot([0, 9], [i, i], color="black", lw=lw)
        ax.plot([i, i], [0, 9], color="black", lw=lw)
    ax.set_xlim(0, 9)
    ax.set_ylim(9, 0)


def _draw_cells(ax, grid, changed, task) -> None:
    from matplotlib.patches import Rectangle

    g = np.asarray(grid)
    if g.size == 0:
        ax.text(0.5, 0.5, "(empty)", ha="center", va="center", transform=ax.transAxes, fontsize=7)
        return
    h, w = g.shape
    ax.imshow(_image(g, task), interpolation="nearest", extent=(0, w, h, 0))
    if changed is None:  # the shape changed: the whole grid is new
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, ec=CHANGED, lw=3))
        return
    lw = 1.0 if max(h, w) > 12 else 2.0
    for r, c in np.argwhere(changed):
        ax.add_patch(Rectangle((c + 0.08, r + 0.08), 0.84, 0.84, fill=False, ec=CHANGED, lw=lw))
    if task == "arc" and max(h, w) <= 12:
        for i in range(h + 1):
            ax.plot([0, w], [i, i], color="#555555", lw=0.3)
        for j in range(w + 1):
            ax.plot([j, j], [0, h], color="#555555", lw=0.3)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def refinement_figure(
    puzzle: np.ndarray,
    predictions: list,
    q_halt: np.ndarray,
    task: str,
    halt_step: int | None = None,
    title: str | None = None,
    max_cols: int = 9,
):
    """A matplotlib Figure: the input, then one frame per supervision step.

    ``puzzle`` and ``predictions`` are decoded grids (Sudoku 9x9 ints with 0 blank, maze
    character grids, ARC int grids of any size); ``q_halt`` [N] the halting logits;
    ``halt_step`` (1-based) the step whose prediction is the answer.
    """
    from matplotlib.figure import Figure

    if task not in tasks.NAMES:
        raise ValueError(f"task must be sudoku, maze or arc, got {task!r}.")
    q_halt = np.asarray(q_halt, np.float64).reshape(-1)
    if len(predictions) != q_halt.size:
        raise ValueError(
            f"got {len(predictions)} predictions but {q_halt.size} q_halt values; expected one per "
            "supervision step."
        )
    frames = [np.asarray(puzzle)] + [np.asarray(p) for p in predictions]
    ncols = max(1, min(len(frames), max_cols))
    nrows = math.ceil(len(frames) / ncols)
    fig = Figure(figsize=(max(1.75 * ncols, 6.0), 2.3 * nrows + 0.6), dpi=110)
    prob = 1.0 / (1.0 + np.exp(-q_halt))
    for i, frame in enumerate(frames):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        changed = changed_cells(frames[i - 1] if i > 0 else None, frame)
        if task == "sudoku":
            _draw_sudoku(ax, frames[0], frame, changed)
        else:
            _draw_cells(ax, frame, changed, task)
        if i == 0:
            ax.set_title("input", fontsize=8)
            continue
        n = "new shape" if changed is None else f"{int(changed.sum())} changed"
        bad = task == "sudoku" and not tasks.SUDOKU.valid(frame)[0]
        if task == "sudoku" and bad:
            n += ", invalid"
        is_answer = halt_step is not None and i == halt_step
        mark = "#e03131" if bad else "#2b8a3e"
        ax.set_title(
            f"step {i}" + (" (answer)" if is_answer else ""),
            fontsize=8,
            fontweight="bold" if is_answer else "normal",
            color=mark if is_answer else "black",
        )
        ax.set_xlabel(f"q_halt {q_halt[i - 1]:+.2f}\nsigmoid {prob[i - 1]:.3f}, {n}", fontsize=7)
        if is_answer:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(mark)
                spine.set_linewidth(2)
    heading = title or f"{task} refinement"
    if len(heading) > 90:
        heading = "..." + heading[-87:]
    fig.suptitle(
        f"{heading}\ndecoded z_H after each supervision step; highlighted: changed since the "
        "previous frame",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def save_refinement(
    path: str | os.PathLike, trace, task: str, title: str | None = None, max_cols: int = 9
) -> str:
    """Draw a :class:`trm_jax.inference.Trace` to ``path`` (PNG); returns the path."""
    fig = refinement_figure(
        trace.puzzle, trace.predictions, trace.q_halt, task, trace.halt_step, title, max_cols
    )
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)
    return path
