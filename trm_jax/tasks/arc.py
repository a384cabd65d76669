"""The ARC record: grids of colours 0..9 on a square canvas (side 30 by default)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from trm_jax.data import tokens as tok
from trm_jax.tasks.base import PuzzleError, square_side

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
        # Any square canvas: a dataset chooses its side (dataset.json's canvas_side).
        return vocab_size == self.vocab_size and square_side(seq_len) is not None

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


ARC = Arc()
