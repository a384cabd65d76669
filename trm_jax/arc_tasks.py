"""Reading ARC task files (Kaggle JSON) for test-time adaptation: :func:`read_tasks`.

Every grid is checked against the run's canvas; bad input raises :class:`AdaptError` with one
sentence naming the task and the grid.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from trm_jax.data import tokens as tok

SUBSET = "adapt"  # the subset name the adaptation dataset's puzzles carry


class AdaptError(ValueError):
    """Bad adaptation input (one sentence naming the input)."""


@dataclasses.dataclass
class Tasks:
    """Validated tasks: ``puzzles`` for the builder (unknown test outputs are a 1x1 placeholder)
    and, per task, the test pairs for scoring (``output`` only where it is known)."""

    puzzles: dict  # {task_id: data_gen.arc.ArcPuzzle}
    test_puzzles: dict  # {task_id: {"train": [...], "test": [{"input", "output"?}, ...]}}

    @property
    def scored(self) -> bool:
        return any("output" in p for t in self.test_puzzles.values() for p in t["test"])


# --------------------------------------------------------------------------------------------
# Reading tasks


def _load_json(path: str, what: str):
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise AdaptError(f"{what} {path} does not exist.") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise AdaptError(f"{what} {path} is not a UTF-8 text file.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AdaptError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None


def _grid(value, where: str, side: int) -> np.ndarray:
    try:
        return tok.check_arc_grid(value, what="grid", side=side)
    except ValueError as e:
        raise AdaptError(f"{where}: {e}") from None


def read_tasks(path: str, canvas: int, solutions: str | None = None) -> Tasks:
    """Validated tasks of a Kaggle file (or one task) whose grids must fit ``canvas``."""
    from data_gen import arc  # lazy: the builder is only needed here

    data = _load_json(path, "task file")
    if isinstance(data, dict) and "test" in data and "train" in data:
        data = {Path(path).stem: data}
    tasks_ok = isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values())
    if not tasks_ok:
        raise AdaptError(
            f'{path} is not a Kaggle ARC task file: expected {{task_id: {{"train": [...], '
            '"test": [...]}}}} or one task {"train": [...], "test": [...]}.'
        )
    sols = _load_json(solutions, "solutions file") if solutions else {}
    if not isinstance(sols, dict):
        raise AdaptError(f"{solutions} is not a Kaggle solutions file ({{task_id: [grid, ...]}}).")
    puzzles, test_puzzles = {}, {}
    for tid, t in data.items():
        where = f"{path}, task {tid}"
        demos, tests = t.get("train"), t.get("test")
        if not isinstance(demos, list) or not demos:
            raise AdaptError(f"{where} has no demonstration pairs to adapt on.")
        if not isinstance(tests, list) or not tests:
            raise AdaptError(f"{where} has no test inputs.")
        train = []
        for i, pair in enumerate(demos, 1):
            if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
                raise AdaptError(f"{where}, train pair {i} needs an 'input' and an 'output' grid.")
            train.append(
                (
                    _grid(pair["input"], f"{where}, train pair {i} input", canvas),
                    _grid(pair["output"], f"{where}, train pair {i} output", canvas),
                )
            )
        expected = sols.get(tid)
        if expected is not None and (not isinstance(expected, list) or len(expected) != len(tests)):
            raise AdaptError(
                f"{solutions}, task {tid}: expected a list of {len(tests)} output grids."
            )
        test, scored = [], []
        for i, pair in enumerate(tests, 1):
            if not isinstance(pair, dict) or "input" not in pair:
                raise AdaptError(f"{where}, test {i} has no 'input' grid.")
            x = _grid(pair["input"], f"{where}, test {i} input", canvas)
            y = pair.get("output") if expected is None else expected[i - 1]
            entry = {"input": x.tolist()}
            if y is not None:
                # An expected output may be larger than the canvas (the model cannot produce it;
                # it is only compared with the answer).
                y = _grid(y, f"{where}, test {i} expected output", tok.ARC_SIDE)
                entry["output"] = y.tolist()
            fits = y is not None and max(y.shape) <= canvas
            test.append((x, y if fits else np.zeros((1, 1), np.uint8)))
            scored.append(entry)
        puzzles[tid] = arc.ArcPuzzle(str(tid), SUBSET, train, test)
        test_puzzles[tid] = {
            "train": [{"input": x.tolist(), "output": y.tolist()} for x, y in train],
            "test": scored,
        }
    return Tasks(puzzles, test_puzzles)


# --------------------------------------------------------------------------------------------
# The run being adapted
