"""The Sudoku record: 9x9 grids, the rules of rows, columns and boxes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from trm_jax.data import tokens as tok
from trm_jax.tasks.base import PuzzleError, side_by_side

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
        body = side_by_side(["puzzle"] + self.format(puzzle), ["answer"] + self.format(answer))
        return body + ["answer: " + self.one_line(answer)]

    def format_step(self, grid: Any) -> list[str]:
        return [self.one_line(grid)]

    def verdict(self, puzzle: Any, answer: Any, expected: Any = None) -> str:
        ok, _ = self.check(puzzle, answer)
        return f"valid solution that keeps the givens: {'yes' if ok else 'no'}"


SUDOKU = Sudoku()


# --------------------------------------------------------------------------------------------
# Held-out accuracy by difficulty: the one place the buckets are defined (used by
# ``python -m trm_jax.evaluate`` and by the final evaluation of ``python -m trm_jax.train``).

# Givens-count buckets (inclusive): classic hard lists sit below 28, newspaper puzzles in 22-36.
GIVENS_BUCKETS = ((22, 27), (28, 33), (34, 39), (40, 45))
RATING_ARRAY = "rating"  # the dataset's per-example rating (data_gen.sudoku writes it)
SEARCH_BUCKETS = ("rating 0 (singles)", "rating > 0 (search)")


def givens_bucket(givens: int) -> str:
    """The bucket name of a givens count: "22-27", ..., "40-45", or "other"."""
    for lo, hi in GIVENS_BUCKETS:
        if lo <= givens <= hi:
            return f"{lo}-{hi}"
    return "other"


def _row(name: str, exact: np.ndarray) -> dict:
    n = int(exact.size)
    k = int(exact.sum())
    return {"bucket": name, "examples": n, "exact": k, "exact_accuracy": k / n if n else None}


def difficulty_breakdown(
    inputs: Any, labels: Any, preds: Any, ratings: Any = None, ignore_label_id: int | None = 0
) -> dict:
    """Exact accuracy per givens bucket and by whether the puzzle needs search.

    ``inputs``, ``labels``, ``preds``: token rows [N, 81] (blank 1, digit d -> d + 1); a row is
    exact when every label cell other than ``ignore_label_id`` is predicted. ``ratings`` [N]:
    the generator's rating (guesses of data_gen.sudoku's solver; 0 = singles solve it), or None
    when the dataset does not record it. Returns ``{"examples", "exact_accuracy", "givens":
    [row per bucket], "search": [rows of SEARCH_BUCKETS: rating 0, rating > 0] or None}``, each
    row ``{"bucket", "examples", "exact", "exact_accuracy"}`` (None without examples); the four
    givens buckets are always listed, "other" only when some puzzle falls outside them.
    """
    x = np.asarray(inputs).reshape(-1, 81)
    y = np.asarray(labels).reshape(-1, 81)
    p = np.asarray(preds).reshape(-1, 81)
    if not x.shape == y.shape == p.shape:
        raise ValueError(f"inputs {x.shape}, labels {y.shape} and preds {p.shape} differ")
    mask = np.ones(y.shape, bool) if ignore_label_id is None else y != ignore_label_id
    exact = ((p == y) | ~mask).all(axis=1)
    givens = ((x >= 2) & (x <= 10)).sum(axis=1)
    names = np.array([givens_bucket(int(g)) for g in givens], dtype=object)
    rows = [_row(f"{lo}-{hi}", exact[names == f"{lo}-{hi}"]) for lo, hi in GIVENS_BUCKETS]
    if (names == "other").any():
        rows.append(_row("other", exact[names == "other"]))
    search = None
    if ratings is not None:
        r = np.asarray(ratings).reshape(-1)
        if r.shape[0] != x.shape[0]:
            raise ValueError(f"{r.shape[0]} ratings for {x.shape[0]} puzzles")
        search = [_row(SEARCH_BUCKETS[0], exact[r == 0]), _row(SEARCH_BUCKETS[1], exact[r > 0])]
    out = _row("all", exact)
    return {
        "examples": out["examples"],
        "exact_accuracy": out["exact_accuracy"],
        "givens": rows,
        "search": search,
    }


def is_sudoku_split(meta: Any) -> bool:
    """Whether a split's metadata (``task``, ``vocab_size``, ``seq_len`` attributes, as
    ``trm_jax.data.pipeline.Metadata``) is a Sudoku split: task "sudoku", or a reference split
    (no task) of Sudoku shape."""
    return meta.task in ("sudoku", None) and SUDOKU.matches(meta.vocab_size, meta.seq_len)


def split_breakdown(data_dir: str, split: str, predictions: dict) -> dict | None:
    """:func:`difficulty_breakdown` of the scored rows of a dataset split, from the
    ``predictions`` of ``trm_jax.evaluate.score(..., keep_predictions=True)``; None when the
    split is not a Sudoku split (task "sudoku", or a reference split of Sudoku shape)."""
    from trm_jax.data import dataset  # lazy: the task records import nothing of the data layer

    s = dataset.load_split(data_dir, split)
    m = s.metadata
    if s.task not in ("sudoku", None) or not SUDOKU.matches(m["vocab_size"], m["seq_len"]):
        return None  # the same test as is_sudoku_split, on the split's own metadata
    index = np.asarray(predictions["example_index"], np.int64)
    ratings = s.extra.get(RATING_ARRAY)
    return difficulty_breakdown(
        np.asarray(s.inputs)[index],
        np.asarray(s.labels)[index],
        predictions["preds"],
        None if ratings is None else np.asarray(ratings)[index],
        m["ignore_label_id"],
    )


def format_breakdown(b: dict) -> str:
    """The breakdown as a few aligned lines (buckets without puzzles show "-")."""
    lines = [f"Exact accuracy by difficulty ({b['examples']} puzzles):"]
    groups = [("givens ", b["givens"])]
    if b.get("search"):
        groups.append(("", b["search"]))
    for what, rows in groups:
        for r in rows:
            acc = "-" if r["exact_accuracy"] is None else f"{r['exact_accuracy']:.4f}"
            label = f"{what}{r['bucket']}"
            lines.append(f"  {label:<24} {acc:>7}  ({r['exact']}/{r['examples']})")
    return "\n".join(lines)
